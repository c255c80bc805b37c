import ArgumentParser
import Foundation
import TMFData
import TMFGraph
import TMFTrainer

/// `tmf eval`: HitRate@1 and ValidRatio on a split (DESIGN.md §2, §4), of a trained model or of a
/// baseline, on the same seeded candidate sets.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a model or a baseline on the valid or test split (HitRate@1, ValidRatio)."
    )

    @Argument(help: "Model folder (default ./tmf-model).")
    var model: String?

    @Option(help: "Dataset folder (default: the model's dataset).")
    var data: String?

    @Option(help: "Split to score: valid or test.")
    var split: String = "test"

    @Option(help: "Baseline instead of the model's LLM: popular, random (need only --data) or mbht (the model's MBHT).")
    var baseline: String?

    @Flag(help: "Decode only token paths that spell a candidate title (ValidRatio 1).")
    var constrained = false

    @Option(help: "Score only the first N examples.")
    var limit: Int?

    @Option(help: "Seed of the candidate sets (default: the model's, else 42).")
    var seed: UInt64?

    @Option(help: "Target behavior (default: dataset.json's target).")
    var target: String?

    @Option(help: "Prompts generated together.")
    var batchSize: Int = 8

    @Flag(help: "Drop invalid dataset rows (counted on stderr) instead of failing.")
    var skipInvalid = false

    @Flag(help: "Print one JSON object instead of lines.")
    var json = false

    @Option(help: "Write every example's answer to this JSON Lines file (user, target, candidates, output, chosen, correct).")
    var predictions: String?

    @Flag(help: "Print no progress.")
    var quiet = false

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if Split(rawValue: split) == nil || split == "train" { throw ValidationError("--split must be valid or test") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let baseline, !["popular", "random", "mbht"].contains(baseline) {
            throw ValidationError("unknown --baseline '\(baseline)'; use popular, random or mbht")
        }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    }

    func emit(_ metrics: EvalMetrics) {
        if json { print(metrics.json) } else { for line in metrics.lines { print(line) } }
    }

    func run() throws {
        compute.apply()
        try reportingErrors {
            let splitValue = Split(rawValue: split)!
            if let name = baseline, let kind = Baseline(rawValue: name) {
                let dataPath: URL
                if let data { dataPath = URL(fileURLWithPath: data) }
                else if let model { dataPath = URL(fileURLWithPath: try ModelSpec.load(folder: URL(fileURLWithPath: model)).dataset) }
                else { throw DataError.invalidArgument("--baseline \(name) needs --data DATASET (a dataset folder, e.g. Fixtures/shop)") }
                let dataset = try Dataset.load(from: dataPath, options: LoadOptions(skipInvalid: skipInvalid, target: target))
                if let summary = dataset.skipped.summary { printError("tmf: \(dataPath.path): \(summary)") }
                emit(try dataset.evaluate(baseline: kind, split: splitValue, seed: seed ?? 42, limit: limit))
                return
            }
            let folder = URL(fileURLWithPath: model ?? "tmf-model")
            let progress = Progress(quiet: quiet)
            if baseline == "mbht" {
                // Only the MBHT stage is needed (`tmf train --stage graph` suffices).
                let spec = try? ModelSpec.load(folder: folder)
                guard let dataPath = data.map({ URL(fileURLWithPath: $0) }) ?? spec.map({ URL(fileURLWithPath: $0.dataset) }) else {
                    throw DataError.invalidArgument("--baseline mbht on a graph-only model folder needs --data DATASET")
                }
                let dataset = try Dataset.load(from: dataPath, options: LoadOptions(skipInvalid: skipInvalid, target: target))
                let graphURL = folder.appendingPathComponent(Pipeline.graphFile)
                guard FileManager.default.fileExists(atPath: graphURL.path) else {
                    throw DataError.invalidArgument("\(folder.path) has no \(Pipeline.graphFile); run `tmf train --stage graph --out \(folder.path)` first")
                }
                let graph = try MBHTModel.load(from: graphURL)
                guard graph.configuration.numItems == dataset.items.count else {
                    throw DataError.invalidArgument("\(graphURL.path) was trained on another item set than \(dataPath.path)")
                }
                var examples = SplitExamples(dataset)[splitValue]
                if let limit { examples = Array(examples.prefix(limit)) }
                let ranking = try Pipeline.graphExamples(dataset, examples: examples, seed: seed ?? spec?.training.seed ?? 42,
                                                         length: graph.configuration.maxSequenceLength)
                let scores = try graph.scores(histories: ranking.map(\.history), candidates: ranking.map(\.candidates))
                var metrics = EvalMetrics()
                for (r, s) in zip(ranking, scores) {
                    let best = s.indices.max { s[$0] < s[$1] || (s[$0] == s[$1] && $0 > $1) }!
                    metrics.add(AnswerScore(chosen: best, correct: r.candidates[best] == r.groundTruth))
                }
                emit(metrics)
                return
            }
            if let predictions {
                // Fail before the (long) evaluation when the file cannot be written.
                let parent = URL(fileURLWithPath: predictions).deletingLastPathComponent().path
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder), isFolder.boolValue else {
                    throw DataError.io(path: predictions, reason: "its folder \(parent) does not exist")
                }
            }
            let trained = try TrainedModel.load(folder: folder, data: data.map { URL(fileURLWithPath: $0) })
            let dataset = trained.dataset
            let seedValue = seed ?? trained.spec.training.seed
            var examples = SplitExamples(dataset)[splitValue]
            if let limit { examples = Array(examples.prefix(limit)) }
            var lines = Data()
            let record: ((Example, [Int], String, AnswerScore) throws -> Void)? = predictions == nil ? nil : { ex, candidates, text, score in
                let object: [String: Any] = [
                    "user": dataset.userIDs[ex.user],
                    "target": dataset.items[ex.target].id,
                    "candidates": candidates.map { dataset.items[$0].id },
                    "output": text,
                    "chosen": score.chosen.map { dataset.items[candidates[$0]].id as Any } ?? NSNull(),
                    "correct": score.correct,
                ]
                lines.append(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
                lines.append(0x0A)
            }
            let metrics = try trained.recommender.evaluate(
                dataset: dataset, examples: examples, seed: seedValue, historyLength: trained.spec.training.historyLength,
                constrained: constrained, batchSize: batchSize, answer: record) { done, total in
                    progress.update("evaluating", done, total)
                    return true
                }
            progress.finish()
            if let predictions {
                do { try lines.write(to: URL(fileURLWithPath: predictions), options: .atomic) }
                catch { throw DataError.io(path: predictions, reason: "cannot write (\(error.localizedDescription))") }
            }
            emit(metrics)
        }
    }
}
