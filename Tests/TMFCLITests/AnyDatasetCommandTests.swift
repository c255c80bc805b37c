import Foundation
import XCTest
import TMFTestSupport

/// A dataset the bundled models never saw, through the real binary: RecBole atomic files of a
/// small MovieLens-like catalogue → `tmf import recbole` → `tmf train` with no `--llm` (the
/// `[pretrain]` stage makes the dataset's own Llama) → `tmf eval` (generative and `--rank`) →
/// `tmf recommend --top 3`.
final class AnyDatasetCommandTests: XCTestCase {
    /// Writes `NAME.inter` and `NAME.item` of a MovieLens-like catalogue: 40 films whose titles
    /// are word pairs no fixture uses, with a year and genres; 60 users who rate films of their
    /// two favourite genres highly (4-5) and others poorly, in time order.
    static func writeRecBole(to folder: URL) throws {
        let first = ["Crimson", "Silent", "Paper", "Iron", "Velvet", "Hollow", "Golden", "Midnight", "Broken", "Frozen"]
        let second = ["Harbor", "Kingdom", "Lantern", "Orchard"]
        let genres = ["Drama", "Comedy", "Western", "Horror", "Musical"]
        var item = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        var itemGenres: [Int] = []
        for i in 0..<40 {
            let g = (i * 7) % genres.count
            itemGenres.append(g)
            item += "\(i + 1)\t\(first[i % 10]) \(second[i / 10])\t\(1950 + i)\t\(genres[g]) \(genres[(g + 1) % genres.count])\n"
        }
        var inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        var state: UInt64 = 12345
        func next(_ n: Int) -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % UInt64(n))
        }
        for u in 0..<60 {
            let liked: Set<Int> = [u % genres.count, (u / genres.count) % genres.count]
            var films = Array(0..<40)
            for k in films.indices.reversed() where k > 0 { films.swapAt(k, next(k + 1)) }
            for (t, f) in films.prefix(14).enumerated() {
                let rating = liked.contains(itemGenres[f]) ? 4 + next(2) : 1 + next(3)
                inter += "\(u + 1)\t\(f + 1)\t\(rating)\t\(880_000_000 + u * 1000 + t)\n"
            }
        }
        try item.write(to: folder.appendingPathComponent("films.item"), atomically: true, encoding: .utf8)
        try inter.write(to: folder.appendingPathComponent("films.inter"), atomically: true, encoding: .utf8)
    }

    func testNewDatasetEndToEnd() throws {
        let root = try temporaryFolder(self)
        let source = root.appendingPathComponent("recbole"), data = root.appendingPathComponent("films")
        let model = root.appendingPathComponent("model")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try Self.writeRecBole(to: source)
        let imported = try runTMF(["import", "recbole", source.path, data.path, "--quiet"])
        XCTAssertEqual(imported.status, 0, imported.stderr)

        let train = try runTMF(["train", data.path, "--out", model.path, "--pretrain-steps", "150", "--pretrain-vocab", "400",
                                "--steps", "40", "--batch-size", "4", "--graph-epochs", "2", "--eval-limit", "10",
                                "--threads", "2"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stderr.contains("[pretrain]") && train.stderr.contains("pretraining the dataset's own Llama"), train.stderr)
        // The graph prior's weight is chosen on validation and reported with the figures it was chosen by.
        XCTAssertTrue(train.stderr.contains(" (chosen on validation): ranking HitRate@1 ") && train.stderr.contains("MBHT alone"), train.stderr)
        for file in ["llm/config.json", "llm/model.safetensors", "llm/tokenizer.model", "llm/stage.json", "tmf.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: model.appendingPathComponent(file).path), file)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: model.appendingPathComponent("llm.tmp").path))
        let spec = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("tmf.json"))) as? [String: Any])
        XCTAssertEqual(spec["llmSource"] as? String, "pretrained")
        // Its titles are one token each: the recipe adds the listwise ranking term.
        XCTAssertEqual((spec["training"] as? [String: Any])?["rankLossWeight"] as? Double, 1)
        XCTAssertEqual(spec["historyEligible"] as? Bool, false, "no user rates a film twice")
        XCTAssertEqual(spec["trainingRepeatRate"] as? Double, 0)

        // The stage is cached while the data and options are unchanged.
        let again = try runTMF(["train", data.path, "--out", model.path, "--pretrain-steps", "150", "--pretrain-vocab", "400",
                                "--stage", "pretrain", "--threads", "2"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("[pretrain] reused the cached result"), again.stderr)

        // Generation names candidates: the dataset's own Llama knows the titles.
        let eval = try runTMF(["eval", model.path, "--json", "--quiet", "--threads", "2"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        let figures = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as? [String: Any])
        let validRatio = try XCTUnwrap(figures["ValidRatio"] as? Double)
        XCTAssertGreaterThan(validRatio, 0.2, eval.stdout)
        print("new dataset, test split: \(eval.stdout)")
        let examples = try XCTUnwrap(figures["Examples"] as? Int)
        XCTAssertGreaterThan(examples, 50, "nearly every user has a test example")

        // Ranking: exactly DESIGN.md §2's lines, a full ranking per example in --predictions.
        let predictions = root.appendingPathComponent("ranked.jsonl")
        let rank = try runTMF(["eval", model.path, "--rank", "--quiet", "--threads", "2", "--predictions", predictions.path])
        XCTAssertEqual(rank.status, 0, rank.stderr)
        let lines = rank.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.map { String($0.split(separator: ":")[0]) }, ["HitRate@1", "HitRate@3", "NDCG@10", "MRR", "ValidRatio", "Examples"])
        XCTAssertEqual(lines[4], "ValidRatio: 1.0000")
        let records = try String(contentsOf: predictions, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(records.count, examples)
        let first = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(records[0].utf8)) as? [String: Any])
        XCTAssertEqual((first["ranking"] as? [String]).map { Set($0) }, (first["candidates"] as? [String]).map { Set($0) })
        XCTAssertEqual((first["ranking"] as? [String])?.firstIndex(of: first["target"] as! String).map { $0 + 1 }, first["rank"] as? Int)

        // Every baseline ranks on the same candidate sets, with the model's seed.
        for baseline in ["popular", "random", "mbht"] {
            let r = try runTMF(["eval", model.path, "--baseline", baseline, "--rank", "--json", "--quiet"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            XCTAssertEqual(o["Examples"] as? Int, examples)
            XCTAssertNotNil(o["MRR"] as? Double)
        }

        // recommend: three ranked items for a dataset user, none from the history (the data
        // never repeats one); --batch answers several requests with one load.
        let rec = try runTMF(["recommend", model.path, "--user", "7", "--top", "3", "--threads", "2"])
        XCTAssertEqual(rec.status, 0, rec.stderr)
        let rows = rec.stdout.split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        XCTAssertEqual(rows.map(\.count), [3, 3, 3], rec.stdout)
        let csv = try String(contentsOf: data.appendingPathComponent("interactions.csv"), encoding: .utf8)
        let fields: [[Substring]] = csv.split(separator: "\n").dropFirst().map { $0.split(separator: ",") }
        let history: [String] = fields.filter { $0[0] == "7" }.map { String($0[1]) }
        XCTAssertEqual(history.count, 14)
        for row in rows { XCTAssertFalse(history.contains(String(row[0])), "a history item was recommended: \(rec.stdout)") }
        let scores = rows.map { Double($0[2])! }
        XCTAssertEqual(scores, scores.sorted(by: >))
        let requests = root.appendingPathComponent("requests.jsonl")
        try """
            {"user": "3"}
            {"history": "rate_high:1,rate_low:2", "candidates": ["5", "6", "7"], "top": 2}
            """.write(to: requests, atomically: true, encoding: .utf8)
        let batch = try runTMF(["recommend", model.path, "--batch", requests.path, "--threads", "2"])
        XCTAssertEqual(batch.status, 0, batch.stderr)
        let answers = try batch.stdout.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(answers.count, 2)
        XCTAssertEqual(answers[0]["user"] as? String, "3")
        XCTAssertEqual((answers[1]["items"] as? [[String: Any]])?.count, 2)
        XCTAssertEqual(answers[1]["candidates"] as? [String], ["5", "6", "7"])

        // Bad input: one line, non-zero, nothing on stdout.
        assertFailure(try runTMF(["recommend", model.path, "--history", "rate_high:999"]), mentions: "999")
        assertFailure(try runTMF(["recommend", model.path, "--history", "rate_high:1", "--top", "0"]), argumentError: true)
        assertFailure(try runTMF(["recommend", model.path, "--history", "rate_high:1", "--candidates", "5,6,5"]), mentions: "twice")
        assertFailure(try runTMF(["recommend", model.path, "--user", "nobody"]), mentions: "nobody")
        assertFailure(try runTMF(["recommend", model.path, "--history", "rate_high:1", "--user", "3"]), argumentError: true)
        try "{\"history\": \"rate_high:1\"}\nnot json\n".write(to: requests, atomically: true, encoding: .utf8)
        assertFailure(try runTMF(["recommend", model.path, "--batch", requests.path]), mentions: "requests.jsonl:2")
        assertFailure(try runTMF(["eval", model.path, "--rank", "--constrained"]), argumentError: true)
        assertFailure(try runTMF(["train", data.path, "--out", model.path, "--llm", model.appendingPathComponent("llm").path,
                                  "--pretrain-steps", "5"]), argumentError: true)
    }
}
