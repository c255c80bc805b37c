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

    @Option(help: "Baseline instead of the model's LLM: popular, random (need only --data), mbht (the model's MBHT) or oracle (a `tmf synth` shop's own process: its ceiling).")
    var baseline: String?

    @Option(help: "With --baseline oracle: the --seed the shop was made with by `tmf synth`.")
    var synthSeed: UInt64 = 1

    @Flag(help: "Decode only token paths that spell a candidate title (ValidRatio 1).")
    var constrained = false

    @Flag(help: "Rank the whole candidate set (HitRate@1, HitRate@3, NDCG@10, MRR); no generation.")
    var rank = false

    @Option(help: "With --rank on a model: sum or mean (per token) of the answer's log-likelihood (default: the model's).")
    var normalization: String?

    @Option(help: "With --rank on a model: weight of MBHT's scores in the ranking (0: the LLM alone; default: the model's, chosen on validation).")
    var graphWeight: Double?

    @Option(help: "Score only the first N examples.")
    var limit: Int?

    @Option(help: "Seed of the candidate sets (default: the model's, else 42).")
    var seed: UInt64?

    @Option(help: "Target behavior (default: dataset.json's target).")
    var target: String?

    @Option(help: "Prompts generated together (at most 1024).")
    var batchSize: Int = 8

    @Flag(help: "Drop invalid dataset rows (counted on stderr) instead of failing (default: as the model was trained).")
    var skipInvalid = false

    @Flag(help: "Print one JSON object instead of lines.")
    var json = false

    @Option(help: "Write every example's answer to this JSON Lines file (user, target, candidates, then output, chosen, correct; or scores, ranking, rank with --rank).")
    var predictions: String?

    @Flag(help: "Print no progress.")
    var quiet = false

    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if Split(rawValue: split) == nil || split == "train" { throw ValidationError("--split must be valid or test") }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
        if let baseline, !["popular", "random", "mbht", "oracle"].contains(baseline) {
            throw ValidationError("unknown --baseline '\(baseline)'; use popular, random, mbht or oracle")
        }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if batchSize > CommandLimits.batchSize { throw refuseLimit(batchSizeMessage(batchSize)) }
        if rank && constrained { throw ValidationError("give --rank or --constrained, not both") }
        if constrained && baseline != nil { throw ValidationError("--constrained decodes the LLM; baselines take --rank or nothing") }
        if let normalization, LengthNormalization(rawValue: normalization) == nil {
            throw ValidationError("--normalization must be sum or mean")
        }
        if let graphWeight {
            if !(graphWeight >= 0 && graphWeight.isFinite) { throw ValidationError("--graph-weight must be a finite number ≥ 0") }
            if !rank || baseline != nil { throw ValidationError("--graph-weight applies to a model's --rank") }
        }
    }

    /// Prints generative figures, or ranking figures with --rank.
    func emit(lines: [String], json object: String) {
        guard ProcessGroup.world.isRoot else { return }  // under mpirun, rank 0 prints the job's figures
        if json { print(object) } else { for line in lines { print(line) } }
    }

    func run() throws {
        compute.apply()
        try reportingErrors {
            // Under mpirun the model's examples are shared out in whole batches and the counts summed.
            let group = try ProcessGroup.start()
            if group.isDistributed && predictions != nil {
                throw DataError.invalidArgument("--predictions is not available under mpirun (each rank sees its share of the examples); run tmf eval in one process for the predictions file")
            }
            let splitValue = Split(rawValue: split)!
            let folder = URL(fileURLWithPath: model ?? "tmf-model")
            // The model folder's record (seed, dataset, --skip-invalid), when there is one to use:
            // always for a model row, and for a baseline unless only --data was given.
            let spec: ModelSpec? = (baseline == nil || baseline == "mbht" || model != nil || data == nil)
                ? try? ModelSpec.load(folder: folder) : nil
            let dropInvalid = skipInvalid || (spec?.skipInvalid ?? false)
            let writer = try PredictionWriter(path: predictions)
            let progress = Progress(quiet: quiet || !group.isRoot)

            if let name = baseline {
                guard let dataPath = data.map({ URL(fileURLWithPath: $0) }) ?? spec.map({ URL(fileURLWithPath: $0.dataset) }) else {
                    throw DataError.invalidArgument(name == "mbht"
                        ? "--baseline mbht needs a model folder from `tmf train` (at least --stage graph), or --data DATASET"
                        : "--baseline \(name) needs --data DATASET (a dataset folder, e.g. Fixtures/shop) or a model folder")
                }
                let dataset = try Dataset.load(from: dataPath, options: LoadOptions(skipInvalid: dropInvalid, target: target ?? spec?.target))
                if let summary = dataset.skipped.summary { printError("tmf: \(dataPath.path): \(summary)") }
                let seedValue = seed ?? spec?.training.seed ?? 42
                var examples = SplitExamples(dataset)[splitValue]
                if let limit { examples = Array(examples.prefix(limit)) }
                // Scores of every example's candidates (higher is better), then one row of figures.
                var scored: [(Example, [Int], [Double])] = []
                if let kind = Baseline(rawValue: name) {
                    _ = try dataset.rank(baseline: kind, split: splitValue, seed: seedValue, limit: limit) { scored.append(($0, $1, $2)) }
                } else if name == "oracle" {
                    let oracle = try SynthOracle(options: SynthOracle.options(for: dataset, seed: synthSeed))
                    guard oracle.matches(dataset) else {
                        throw DataError.invalidArgument("\(dataPath.path) is not what `tmf synth --seed \(synthSeed)` writes for \(dataset.userIDs.count) users and \(dataset.items.count) items; --baseline oracle needs a synthetic shop and its --synth-seed")
                    }
                    for x in examples {
                        let candidates = try dataset.candidates(for: x, seed: seedValue)
                        scored.append((x, candidates, try oracle.scores(example: x, candidates: candidates, dataset: dataset)))
                    }
                } else {
                    let graphURL = folder.appendingPathComponent(Pipeline.graphFile)
                    guard FileManager.default.fileExists(atPath: graphURL.path) else {
                        throw DataError.invalidArgument("\(folder.path) has no \(Pipeline.graphFile); run `tmf train --stage graph --out \(folder.path)` first")
                    }
                    let graph = try MBHTModel.load(from: graphURL)
                    guard graph.configuration.numItems == dataset.items.count else {
                        throw DataError.invalidArgument("\(graphURL.path) was trained on another item set than \(dataPath.path)")
                    }
                    let ranking = try Pipeline.graphExamples(dataset, examples: examples, seed: seedValue,
                                                             length: graph.configuration.maxSequenceLength)
                    let scores = try graph.scores(histories: ranking.map(\.history), candidates: ranking.map(\.candidates))
                    scored = zip(zip(examples, ranking), scores).map { ($0.0, $0.1.candidates, $1.map(Double.init)) }
                }
                if rank {
                    var metrics = RankMetrics()
                    for (ex, candidates, scores) in scored {
                        let r = rankOf(truth: candidates.firstIndex(of: ex.target)!, scores: scores)
                        metrics.add(rank: r)
                        try writer?.ranked(ex, candidates, scores: scores, rank: r, dataset: dataset)
                    }
                    try writer?.finish()
                    emit(lines: metrics.lines, json: metrics.json)
                } else {
                    // The top-scored candidate is the baseline's answer.
                    var metrics = EvalMetrics()
                    for (ex, candidates, scores) in scored {
                        let pick = rankedCandidates(scores)[0]
                        let score = AnswerScore(chosen: pick, correct: candidates[pick] == ex.target)
                        metrics.add(score)
                        try writer?.answered(ex, candidates, output: dataset.items[candidates[pick]].title, score: score, dataset: dataset)
                    }
                    try writer?.finish()
                    emit(lines: metrics.lines, json: metrics.json)
                }
                return
            }

            let trained = try TrainedModel.load(folder: folder, data: data.map { URL(fileURLWithPath: $0) }, skipInvalid: dropInvalid,
                                                dtype: weights.storageType)
            let dataset = trained.dataset
            let seedValue = seed ?? trained.spec.training.seed
            var examples = SplitExamples(dataset)[splitValue]
            if let limit { examples = Array(examples.prefix(limit)) }
            let onProgress: (Int, Int) -> Bool = { done, total in
                progress.update(rank ? "ranking" : "evaluating", done, total)
                return true
            }
            if rank {
                let norm = normalization.flatMap(LengthNormalization.init(rawValue:)) ?? trained.spec.normalization ?? Pipeline.defaultNormalization
                let weights = trained.spec.rankingWeights(override: graphWeight)
                let metrics = try trained.recommender.rank(
                    dataset: dataset, examples: examples, seed: seedValue, historyLength: trained.spec.training.historyLength,
                    normalization: norm, graph: weights.usesGraph ? trained.graph : nil, graphWeights: weights, batchSize: batchSize,
                    group: group, answer: { ex, candidates, scores in
                        let s = scores.scores(norm, graphWeight: weights(touched: dataset.touchedBefore(ex, anyOf: candidates)))
                        try writer?.ranked(ex, candidates, scores: s, rank: rankOf(truth: candidates.firstIndex(of: ex.target)!, scores: s),
                                           dataset: dataset)
                    }, progress: onProgress)
                progress.finish()
                try writer?.finish()
                emit(lines: metrics.lines, json: metrics.json)
                return
            }
            let metrics = try trained.recommender.evaluate(
                dataset: dataset, examples: examples, seed: seedValue, historyLength: trained.spec.training.historyLength,
                constrained: constrained, batchSize: batchSize, group: group, answer: { ex, candidates, text, score in
                    try writer?.answered(ex, candidates, output: text, score: score, dataset: dataset)
                }, progress: onProgress)
            progress.finish()
            try writer?.finish()
            emit(lines: metrics.lines, json: metrics.json)
        }
    }
}

/// `--predictions FILE`: one JSON object per example, written atomically at the end.
final class PredictionWriter {
    let path: String
    var lines = Data()

    /// nil without a path; fails before the (long) evaluation when the file cannot be written.
    init?(path: String?) throws {
        guard let path else { return nil }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &isFolder), isFolder.boolValue else {
            throw DataError.io(path: path, reason: "its folder \(parent) does not exist")
        }
        self.path = path
    }

    func append(_ ex: Example, _ candidates: [Int], dataset: Dataset, _ extra: [String: Any]) throws {
        var object: [String: Any] = [
            "user": dataset.userIDs[ex.user],
            "target": dataset.items[ex.target].id,
            "candidates": candidates.map { dataset.items[$0].id },
        ]
        object.merge(extra) { $1 }
        lines.append(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        lines.append(0x0A)
    }

    /// A generative answer: the text, the candidate it names (or null) and whether it is right.
    func answered(_ ex: Example, _ candidates: [Int], output: String, score: AnswerScore, dataset: Dataset) throws {
        try append(ex, candidates, dataset: dataset, [
            "output": output,
            "chosen": score.chosen.map { dataset.items[candidates[$0]].id as Any } ?? NSNull(),
            "correct": score.correct,
        ])
    }

    /// A ranking: every candidate's score, the ids best first, and the ground truth's rank.
    func ranked(_ ex: Example, _ candidates: [Int], scores: [Double], rank: Int, dataset: Dataset) throws {
        try append(ex, candidates, dataset: dataset, [
            "scores": scores,
            "ranking": rankedCandidates(scores).map { dataset.items[candidates[$0]].id },
            "rank": rank,
        ])
    }

    func finish() throws {
        do { try lines.write(to: URL(fileURLWithPath: path), options: .atomic) }
        catch { throw DataError.io(path: path, reason: "cannot write (\(error.localizedDescription))") }
    }
}
