import Foundation
import XCTest
import TMFCheckpoint
import TMFImage
import TMFLlama
import TMFTensor
import TMFTestSupport
import TMFTokenizer
import TMFTrainer

/// `tmf train`, `tmf eval`, `tmf recommend` and `--resume` through the built binary on a tiny
/// synthetic shop, the tiny bundled CLIP and a tiny random Llama over the fixture tokenizer.
final class PipelineCommandTests: XCTestCase {
    /// What the model folder remembers: `--skip-invalid` (evaluation and serving load the data the
    /// same way), the dataset and seed of a `--stage graph` folder (for `--baseline mbht` and the
    /// data-only baselines, whose candidate sets then match the model's).
    func testModelFolderRemembersDataSeedAndSkipInvalid() throws {
        let s = try makeSetup()
        let csv = s.shop.appendingPathComponent("interactions.csv")
        let handle = try FileHandle(forWritingTo: csv)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("U01,NO_SUCH_ITEM,view,1700000000\n".utf8))
        try handle.close()
        let model = s.root.appendingPathComponent("remembering")
        var arguments = trainArguments(s, out: model, steps: 2) + ["--skip-invalid", "--seed", "7"]
        let train = try runTMF(arguments)
        XCTAssertEqual(train.status, 0, train.stderr)
        // Without --skip-invalid the row is an error; the model folder applies it by itself.
        assertFailure(try runTMF(["eval", "--baseline", "popular", "--data", s.shop.path]), mentions: "NO_SUCH_ITEM")
        let eval = try runTMF(["eval", model.path, "--limit", "2", "--quiet", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let rank = try runTMF(["eval", model.path, "--limit", "2", "--rank", "--quiet", "--threads", "1"])
        XCTAssertEqual(rank.status, 0, rank.stderr)

        // A graph-only folder: tmf.json is there, --baseline mbht needs no --data.
        let graphOnly = s.root.appendingPathComponent("graph-only")
        arguments = trainArguments(s, out: graphOnly, steps: 2) + ["--skip-invalid", "--seed", "7", "--stage", "graph"]
        XCTAssertEqual(try runTMF(arguments).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: graphOnly.appendingPathComponent("tmf.json").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: graphOnly.appendingPathComponent("adapter_model.safetensors").path))
        let mbht = try runTMF(["eval", graphOnly.path, "--baseline", "mbht", "--rank"])
        XCTAssertEqual(mbht.status, 0, mbht.stderr)
        XCTAssertTrue(mbht.stdout.contains("NDCG@10: "), mbht.stdout)

        // The data-only baselines on a model folder use its seed: the same candidate sets as
        // --seed 7 on the data, other sets than the default 42; --predictions for every row.
        func candidates(_ arguments: [String]) throws -> [String] {
            let file = s.root.appendingPathComponent("p-\(UUID().uuidString).jsonl")
            let r = try runTMF(arguments + ["--predictions", file.path])
            XCTAssertEqual(r.status, 0, r.stderr)
            return try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map { line in
                let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
                XCTAssertNotNil(o["chosen"] ?? o["ranking"], "\(o)")
                return "\(o["candidates"]!)"
            }
        }
        let fromModel = try candidates(["eval", graphOnly.path, "--baseline", "random"])
        XCTAssertEqual(fromModel, try candidates(["eval", "--baseline", "random", "--data", s.shop.path, "--seed", "7", "--skip-invalid"]))
        XCTAssertNotEqual(fromModel, try candidates(["eval", "--baseline", "random", "--data", s.shop.path, "--skip-invalid"]))
        XCTAssertEqual(fromModel, try candidates(["eval", graphOnly.path, "--baseline", "mbht"]))
        XCTAssertEqual(fromModel, try candidates(["eval", graphOnly.path, "--baseline", "popular", "--rank"]))
    }

    func testTrainEvalRecommendResume() throws {
        let s = try makeSetup()
        let model = s.root.appendingPathComponent("model")
        let train = try runTMF(trainArguments(s, out: model, steps: 3))
        XCTAssertEqual(train.status, 0, train.stderr)
        for file in ["tmf.json", "adapter_config.json", "adapter_model.safetensors", "fusion.safetensors", "graph.safetensors",
                     "item_features.safetensors", "metrics.jsonl", "training.png", "checkpoint/state.json",
                     "checkpoint/optimizer.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: model.appendingPathComponent(file).path), file)
        }
        // metrics.jsonl: the MBHT epoch, the three steps, the validation at the end; training.png draws them.
        let metrics = try String(contentsOf: model.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(metrics.map { $0["stage"] as? String }, ["graph", "llm", "llm", "llm", "llm"])
        XCTAssertEqual(metrics[0]["epoch"] as? Int, 1)
        XCTAssertNotNil(metrics[0]["loss"] as? Double)
        XCTAssertEqual(metrics[1...3].map { $0["step"] as? Int }, [1, 2, 3])
        for key in ["level", "loss", "lr", "tokens_per_s"] { XCTAssertNotNil(metrics[1][key], key) }
        XCTAssertEqual(metrics[4]["kind"] as? String, "validation")
        XCTAssertEqual(metrics[4]["step"] as? Int, 3)
        for key in ["HitRate@1", "ValidRatio", "HitRate@1(all)"] { XCTAssertNotNil(metrics[4][key] as? Double, key) }
        let picture = try RGBImage(contentsOfPNG: model.appendingPathComponent("training.png"))
        XCTAssertEqual([picture.width, picture.height], [1000, 700])

        // The graph prior's weight, chosen on validation after training, is kept.
        let spec = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("tmf.json"))) as? [String: Any])
        let weight = try XCTUnwrap(spec["graphWeight"] as? Double)
        XCTAssertTrue(GraphPrior.weights.contains(weight), "\(weight)")
        // And one weight per kind of example (the user touched a candidate before, or not).
        let byHistory = try XCTUnwrap(spec["graphWeights"] as? [String: Double])
        XCTAssertEqual(Set(byHistory.keys), ["touched", "untouched"])
        XCTAssertTrue(byHistory.values.allSatisfy { GraphPrior.weights.contains($0) }, "\(byHistory)")
        // --graph-weight 0 ranks by the LLM alone; bad weights are refused.
        for w in ["0", "16"] {
            let ranked = try runTMF(["eval", model.path, "--rank", "--graph-weight", w, "--limit", "4", "--quiet", "--threads", "1"])
            XCTAssertEqual(ranked.status, 0, ranked.stderr)
            XCTAssertTrue(ranked.stdout.contains("MRR: "), ranked.stdout)
        }
        assertFailure(try runTMF(["eval", model.path, "--rank", "--graph-weight=-1"]), argumentError: true, mentions: "--graph-weight")
        assertFailure(try runTMF(["eval", model.path, "--graph-weight", "1"]), argumentError: true, mentions: "--rank")
        assertFailure(try runTMF(["recommend", model.path, "--user", "nobody", "--graph-weight", "nan"]), argumentError: true,
                      mentions: "--graph-weight")

        let eval = try runTMF(["eval", model.path, "--limit", "4", "--json", "--quiet", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["Examples"] as? Int, 4)
        for key in ["HitRate@1", "ValidRatio", "HitRate@1(all)"] { XCTAssertNotNil(object?[key], key) }

        let predictionsURL = s.root.appendingPathComponent("predictions.jsonl")
        let constrained = try runTMF(["eval", model.path, "--limit", "4", "--constrained", "--quiet", "--threads", "1",
                                      "--predictions", predictionsURL.path])
        XCTAssertEqual(constrained.status, 0, constrained.stderr)
        XCTAssertTrue(constrained.stdout.contains("ValidRatio: 1.0000"), constrained.stdout)
        let lines = constrained.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.map { String($0.split(separator: ":")[0]) }, ["HitRate@1", "ValidRatio", "HitRate@1(all)", "Examples"])
        // --predictions: one line per example; constrained answers are candidates, correct ones the target.
        let records = try String(contentsOf: predictionsURL, encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        XCTAssertEqual(records.count, 4)
        var correct = 0
        for r in records {
            let candidates = try XCTUnwrap(r["candidates"] as? [String])
            let chosen = try XCTUnwrap(r["chosen"] as? String)
            let target = try XCTUnwrap(r["target"] as? String)
            XCTAssertEqual(candidates.count, 11)
            XCTAssertTrue(candidates.contains(chosen) && candidates.contains(target), "\(r)")
            XCTAssertEqual(r["correct"] as? Bool, chosen == target)
            XCTAssertFalse((try XCTUnwrap(r["output"] as? String)).isEmpty)
            if chosen == target { correct += 1 }
        }
        let allLine = try XCTUnwrap(lines.first { $0.hasPrefix("HitRate@1(all)") })
        XCTAssertEqual(allLine, "HitRate@1(all): " + String(format: "%.4f", Double(correct) / 4))
        assertFailure(try runTMF(["eval", model.path, "--limit", "1", "--quiet", "--threads", "1",
                                  "--predictions", s.root.appendingPathComponent("no/such/folder/p.jsonl").path]),
                      mentions: "p.jsonl")

        let mbht = try runTMF(["eval", model.path, "--baseline", "mbht", "--json"])
        XCTAssertEqual(mbht.status, 0, mbht.stderr)
        XCTAssertTrue(mbht.stdout.contains("\"ValidRatio\": 1.0000"), mbht.stdout)

        // A history from the shop's own items, and candidates from MBHT's top 10.
        let interactions = try String(contentsOf: s.shop.appendingPathComponent("interactions.csv"), encoding: .utf8)
            .split(separator: "\n").dropFirst().prefix(3).map { $0.split(separator: ",") }
        let history = interactions.map { "\($0[2]):\($0[1])" }.joined(separator: ",")
        let rec = try runTMF(["recommend", model.path, "--history", history, "--top", "3", "--json", "--threads", "1"])
        XCTAssertEqual(rec.status, 0, rec.stderr)
        let ranked = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(rec.stdout.utf8)) as? [String: Any])
        let items = try XCTUnwrap(ranked["items"] as? [[String: Any]], rec.stdout)
        let candidateIDs = try XCTUnwrap(ranked["candidates"] as? [String])
        XCTAssertEqual(candidateIDs.count, 10)
        XCTAssertEqual(items.count, 3)
        let scores = items.compactMap { $0["score"] as? Double }
        XCTAssertEqual(scores.count, 3)
        XCTAssertEqual(scores, scores.sorted(by: >), "best first")
        for item in items { XCTAssertTrue(candidateIDs.contains(try XCTUnwrap(item["item_id"] as? String))) }
        // Plain lines: ID<TAB>TITLE<TAB>SCORE, the same order; --generate --constrained names a candidate.
        let plain = try runTMF(["recommend", model.path, "--history", history, "--top", "3", "--threads", "1"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let rows = plain.stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        XCTAssertEqual(rows.map(\.count), [3, 3, 3], plain.stdout)
        XCTAssertEqual(rows.map { String($0[0]) }, items.map { $0["item_id"] as! String })
        let generated = try runTMF(["recommend", model.path, "--history", history, "--generate", "--constrained", "--json",
                                    "--threads", "1"])
        XCTAssertEqual(generated.status, 0, generated.stderr)
        let answer = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(generated.stdout.utf8)) as? [String: Any])
        XCTAssertNotNil(answer["output"] as? String)
        XCTAssertEqual((answer["items"] as? [[String: Any]])?.count, 1)

        // Bad input: unknown item, unknown behavior, a target the model was not trained for.
        assertFailure(try runTMF(["recommend", model.path, "--history", "view:NOPE"]), mentions: "NOPE")
        assertFailure(try runTMF(["recommend", model.path, "--history", "teleport:\(interactions[0][1])"]), mentions: "teleport")
        assertFailure(try runTMF(["recommend", model.path, "--history", history, "--target", "view"]), mentions: "view")
        assertFailure(try runTMF(["eval", s.root.appendingPathComponent("nothing").path]), mentions: "tmf.json")

        // Resume: a 5-step run stopped by Ctrl-C (SIGINT) and resumed logs the same records as an
        // uninterrupted 5-step run.
        let straight = s.root.appendingPathComponent("straight")
        XCTAssertEqual(try runTMF(trainArguments(s, out: straight, steps: 5) + ["--graph-weight", "0.5"]).status, 0)
        let straightSpec = try JSONSerialization.jsonObject(with: Data(contentsOf: straight.appendingPathComponent("tmf.json"))) as? [String: Any]
        XCTAssertEqual(straightSpec?["graphWeight"] as? Double, 0.5, "a given --graph-weight is kept as is")
        XCTAssertNil(straightSpec?["graphWeights"], "and holds for both kinds of example")
        let straightRecords = try loggedRecords(straight)
        XCTAssertEqual(straightRecords.count, 1 + 5 + 1)
        try assertStopsAndResumes(s, signal: SIGINT, out: s.root.appendingPathComponent("split"), matching: straightRecords)
    }
}

/// The tiny setup and the train / stop / resume steps, shared with `HardeningCommandTests`.
extension XCTestCase {
    struct Setup {
        var shop: URL
        var llm: URL
        var root: URL
    }

    func makeSetup() throws -> Setup {
        let root = try temporaryFolder(self)
        let shop = root.appendingPathComponent("shop"), llm = root.appendingPathComponent("llm")
        let synth = try runTMF(["synth", shop.path, "--users", "40", "--items", "40", "--seed", "3"])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        try FileManager.default.createDirectory(at: llm, withIntermediateDirectories: true)
        let tokenizerURL = fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model")
        let vocab = try SentencePieceTokenizer(modelURL: tokenizerURL).vocabularySize
        let config = try LlamaConfiguration(hiddenSize: 32, intermediateSize: 64, hiddenLayers: 1, attentionHeads: 2, kvHeads: 1,
                                            vocabularySize: vocab, tieWordEmbeddings: true, maxPositionEmbeddings: 1024)
        let model = LlamaModel(configuration: config)
        model.randomize(seed: 5, std: 0.1)
        try JSONEncoder().encode(config).write(to: llm.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(model.weightTensors, to: llm.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: tokenizerURL, to: llm.appendingPathComponent("tokenizer.model"))
        return Setup(shop: shop, llm: llm, root: root)
    }

    func trainArguments(_ s: Setup, out: URL, steps: Int) -> [String] {
        ["train", s.shop.path, "--llm", s.llm.path, "--out", out.path, "--steps", "\(steps)", "--batch-size", "2",
         "--history", "4", "--graph-epochs", "1", "--eval-limit", "2", "--threads", "1", "--quiet"]
    }

    /// Stops a 5-step `tmf train` (`trainArguments` + `extra`) into `out` with `signal` after
    /// its third step (the fourth metrics line: the MBHT epoch comes first), checks that it
    /// exits non-zero with a checkpoint and its curves so far, resumes it with `--resume`, and
    /// checks that the two runs logged `records`: an uninterrupted 5-step run's (the epoch once,
    /// every step's loss, the final validation; `loggedRecords`).
    func assertStopsAndResumes(_ s: Setup, signal: Int32, out: URL, extra: [String] = [], matching records: [String],
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let stopped = try runInterrupted(trainArguments(s, out: out, steps: 5) + extra, afterLines: 4,
                                         metrics: out.appendingPathComponent("metrics.jsonl"), signal: signal)
        XCTAssertFalse(stopped.signaled, "signal \(signal) must stop the run, not kill it", file: file, line: line)
        XCTAssertNotEqual(stopped.status, 0, "a stopped run exits non-zero", file: file, line: line)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("checkpoint/state.json").path),
                      "a stopped run leaves a loadable checkpoint", file: file, line: line)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("training.png").path),
                      "a stopped run draws its curves so far", file: file, line: line)
        let resumed = try runTMF(trainArguments(s, out: out, steps: 5) + extra + ["--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr, file: file, line: line)
        XCTAssertEqual(try loggedRecords(out), records, "signal \(signal): the stopped and resumed run's metrics", file: file, line: line)
    }

    /// `folder/metrics.jsonl`'s records as sorted-key JSON, without the timing field.
    func loggedRecords(_ folder: URL) throws -> [String] {
        try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            var o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            o["tokens_per_s"] = nil  // timing
            return String(decoding: try JSONSerialization.data(withJSONObject: o, options: .sortedKeys), as: UTF8.self)
        }
    }

    /// Starts `tmf`, sends it `signal` once `metrics` has `afterLines` lines, and collects what it did.
    func runInterrupted(_ arguments: [String], afterLines: Int, metrics: URL, signal: Int32 = SIGINT) throws -> CLIResult {
        let run = try BackgroundTMF(arguments)
        if run.waitForLines(afterLines, in: metrics) { run.send(signal) }
        return try run.finish()
    }
}
