import ArgumentParser
import Foundation
import TMFData

/// `tmf eval`: HitRate@1 and ValidRatio on a split (DESIGN.md §2, §4). For now only the
/// data-only baselines (`--baseline popular|random`) exist.
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

    @Option(help: "Baseline instead of a model: popular or random (mbht needs a model).")
    var baseline: String?

    @Option(help: "Score only the first N examples.")
    var limit: Int?

    @Option(help: "Seed of the candidate sets (and of the random baseline).")
    var seed: UInt64 = 42

    @Option(help: "Target behavior (default: dataset.json's target).")
    var target: String?

    @Flag(help: "Drop invalid dataset rows (counted on stderr) instead of failing.")
    var skipInvalid = false

    @Flag(help: "Print one JSON object instead of lines.")
    var json = false

    @Flag(help: "Print no progress.")
    var quiet = false

    func validate() throws {
        if Split(rawValue: split) == nil || split == "train" { throw ValidationError("--split must be valid or test") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() throws {
        do {
            guard let name = baseline else {
                throw DataError.invalidArgument(
                    "eval of a trained model is not built yet; score a baseline with `tmf eval --baseline popular|random --data DIR`")
            }
            guard let kind = Baseline(rawValue: name) else {
                throw DataError.invalidArgument(
                    "unknown --baseline '\(name)'; use popular or random (mbht needs a trained model, not built yet)")
            }
            guard let data else {
                throw DataError.invalidArgument("--baseline \(name) needs --data DATASET (a dataset folder, e.g. Fixtures/shop)")
            }
            let dataset = try Dataset.load(
                from: URL(fileURLWithPath: data),
                options: LoadOptions(skipInvalid: skipInvalid, target: target))
            if let summary = dataset.skipped.summary { printError("tmf: \(data): \(summary)") }
            let metrics = try dataset.evaluate(baseline: kind, split: Split(rawValue: split)!, seed: seed, limit: limit)
            if json {
                print(metrics.json)
            } else {
                for line in metrics.lines { print(line) }
            }
        } catch let error as DataError {
            printError("tmf: \(error.localizedDescription)")
            throw ExitCode(1)
        }
    }
}
