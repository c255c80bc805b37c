import ArgumentParser
import Foundation
import TMFData
import TMFGraph
import TMFTrainer

/// `tmf recommend`: the next items for a history, ranked by the trained TMF model among given
/// candidates or MBHT's top max(10, K) (TMF as a re-ranker over a candidate generator).
struct RecommendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recommend",
        abstract: "Recommend the next items for a history of behavior:item_id events.",
        discussion: """
            Ranks the candidates by the LLM's log-likelihood of each title after the hybrid prompt and prints the top K \
            as ITEM_ID<TAB>TITLE<TAB>SCORE (a softmax over the candidates). --batch FILE.jsonl takes one request a line: \
            {"history": "view:I1,cart:I2"} or {"user": "U7"}, optionally with "candidates": ["I3", …] and "top": K; it \
            prints one JSON object a line. --history-file FILE takes a history too long for the command line: one \
            behavior:item_id event a line (or comma-separated), oldest first; prompts and MBHT use only its last events, \
            and its items count for --exclude-history. At most 1000 candidates and --top 1000; a request line may hold \
            64 MiB.
            """
    )

    @Argument(help: "Model folder.")
    var model: String = "tmf-model"

    @Option(help: "Comma-separated behavior:item_id events, oldest first, e.g. \"view:I1,cart:I2\".")
    var history: String?

    @Option(help: "A file of behavior:item_id events, one a line or comma-separated, oldest first (any length).")
    var historyFile: String?

    @Option(help: "A user of the dataset: the history is the user's events.")
    var user: String?

    @Option(help: "A JSON Lines file of requests; answers are JSON Lines on stdout.")
    var batch: String?

    @Option(help: "Behavior to predict (must be the model's target behavior).")
    var target: String?

    @Option(help: "Comma-separated candidate item ids (default: MBHT's top max(10, K)).")
    var candidates: String?

    @Option(help: "How many ranked items to print (at most 1000; all candidates when there are fewer).")
    var top: Int = 1

    @Flag(help: "Answer by free generation (the paper's way); an answer naming no candidate falls back to the top-ranked item.")
    var generate = false

    @Flag(help: "With --generate: decode only candidate titles.")
    var constrained = false

    @Flag(help: "Let items of the history be recommended (default: as the training data does).")
    var includeHistory = false

    @Flag(help: "Never recommend items of the history.")
    var excludeHistory = false

    @Option(help: "sum or mean (per token) of a title's log-likelihood (default: the model's).")
    var normalization: String?

    @Option(help: "Weight of MBHT's scores in the ranking (0: the LLM alone; default: the model's, chosen on validation).")
    var graphWeight: Double?

    @Option(help: "Dataset folder (default: the model's dataset).")
    var data: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if [history != nil, historyFile != nil, user != nil, batch != nil].filter({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --history, --history-file, --user or --batch")
        }
        if top < 1 { throw ValidationError("--top must be at least 1") }
        if top > CommandLimits.candidates {
            throw refuseLimit("--top \(top) is more than the \(CommandLimits.candidates) allowed: every candidate is scored in one batch; give at most \(CommandLimits.candidates)")
        }
        if includeHistory && excludeHistory { throw ValidationError("give --include-history or --exclude-history, not both") }
        if constrained && !generate { throw ValidationError("--constrained applies to --generate") }
        if let normalization, LengthNormalization(rawValue: normalization) == nil {
            throw ValidationError("--normalization must be sum or mean")
        }
        if let graphWeight, !(graphWeight >= 0 && graphWeight.isFinite) {
            throw ValidationError("--graph-weight must be a finite number ≥ 0")
        }
    }

    /// One request: a history and optionally its own candidates and K.
    struct Request {
        var user: String?
        /// The last events of the history (as many as prompts and MBHT use), oldest first.
        var events: [HistoryEvent]
        /// Every item of the whole history (for --exclude-history).
        var items: Set<Int>
        var candidates: [Int]?
        var top: Int
    }

    /// Collects a history of any length, keeping its last `keep` events and the set of its items,
    /// so memory is bounded by `keep` and the item count, not by the history's length.
    struct HistoryCollector {
        let dataset: Dataset
        let keep: Int
        private(set) var recent: [HistoryEvent] = []
        private(set) var items: Set<Int> = []
        private(set) var count = 0

        init(dataset: Dataset, keep: Int) {
            self.dataset = dataset
            self.keep = max(1, keep)
        }

        /// Adds one event.
        mutating func add(_ event: HistoryEvent) {
            count += 1
            items.insert(event.item)
            recent.append(event)
            if recent.count >= 2 * keep { recent.removeFirst(recent.count - keep) }
        }

        /// Adds the comma-separated behavior:item_id events of `text`; `what` names it in errors.
        mutating func add(parsing text: Substring, what: String) throws {
            for raw in text.split(separator: ",") {
                let part = trimmedBlanks(raw)
                if part.isEmpty { continue }
                guard let colon = part.firstIndex(of: ":") else {
                    throw DataError.invalidArgument("\(what): '\(part.prefix(200))' is not behavior:item_id")
                }
                let b = String(part[..<colon]), id = String(part[part.index(after: colon)...])
                guard let behavior = dataset.behaviors.firstIndex(where: { $0.name == b }) else {
                    throw DataError.invalidArgument("\(what): unknown behavior '\(b.prefix(200))'; known: \(dataset.behaviors.map(\.name).joined(separator: ", "))")
                }
                guard let item = dataset.itemIndex[id] else {
                    throw DataError.invalidArgument("\(what): unknown item id '\(id.prefix(200))' (not in \(dataset.url.path)/items.jsonl)")
                }
                add(HistoryEvent(behavior: behavior, item: item))
            }
        }

        /// The last `keep` events, oldest first.
        var events: [HistoryEvent] { Array(recent.suffix(keep)) }
    }

    func run() throws {
        compute.apply()
        try reportingErrors {
            let trained = try TrainedModel.load(folder: URL(fileURLWithPath: model), data: data.map { URL(fileURLWithPath: $0) },
                                                dtype: weights.storageType)
            let dataset = trained.dataset
            if let target, target != trained.spec.target {
                throw DataError.invalidArgument("--target \(target): this model was trained to predict '\(trained.spec.target)'; train one with that target")
            }
            // Prompts and MBHT see only the last events: keep that many of any history.
            let keep = max(trained.spec.training.historyLength, trained.spec.graph.maxSequenceLength)
            let requests: [Request]
            if let batch {
                requests = try Self.readBatch(batch, dataset: dataset, keep: keep, top: top)
            } else {
                var collector = HistoryCollector(dataset: dataset, keep: keep)
                if let history {
                    try collector.add(parsing: Substring(history), what: "--history")
                    if collector.count == 0 { throw Self.emptyHistory("--history") }
                } else if let historyFile {
                    try forEachLine(of: historyFile, maxLineBytes: CommandLimits.requestLineBytes) { bytes, n in
                        guard let line = String(validating: bytes, as: UTF8.self) else {
                            throw DataError.invalidArgument("\(historyFile):\(n): not valid UTF-8; write the history as UTF-8 text")
                        }
                        try collector.add(parsing: Substring(line), what: "\(historyFile):\(n)")
                    }
                    if collector.count == 0 { throw Self.emptyHistory(historyFile) }
                } else {
                    try Self.collectUserHistory(user!, into: &collector, what: "--user")
                }
                let listed = try candidates.map { text in
                    try Self.parseCandidates(text.split(separator: ",", omittingEmptySubsequences: false).map(String.init),
                                        dataset: dataset, what: "--candidates")
                }
                requests = [Request(user: user, events: collector.events, items: collector.items, candidates: listed, top: top)]
            }
            let eligible = includeHistory || (!excludeHistory && (trained.spec.historyEligible ?? false))
            let norm = normalization.flatMap(LengthNormalization.init(rawValue:)) ?? trained.spec.normalization ?? Pipeline.defaultNormalization
            let weights = trained.spec.rankingWeights(override: graphWeight)
            let r = trained.recommender
            let level = r.modalities.hardestLevel
            let builder = PromptBuilder(dataset: dataset)
            // Prompts in batches of 8: encode, rank, answer, print.
            for start in stride(from: 0, to: requests.count, by: 8) {
                let chunk = Array(requests[start..<min(start + 8, requests.count)])
                var encoded: [EncodedPrompt] = [], sets: [[Int]] = []
                // MBHT's view of each history: candidate generation and the graph prior.
                let graphHistories = chunk.map { q in
                    q.events.suffix(trained.spec.graph.maxSequenceLength).map { GraphEvent(item: $0.item, behavior: $0.behavior) }
                }
                for (q, graphHistory) in zip(chunk, graphHistories) {
                    var list = q.candidates ?? []
                    if q.candidates == nil {
                        let seen = eligible ? [] : q.items
                        list = try trained.graph.topK(history: graphHistory, k: max(10, q.top), excluding: seen).map(\.item)
                        if list.isEmpty {  // the history holds every item: answer among them rather than not at all
                            list = try trained.graph.topK(history: graphHistory, k: max(10, q.top)).map(\.item)
                        }
                    }
                    let prompt = builder.build(history: Array(q.events.suffix(trained.spec.training.historyLength)), target: dataset.target,
                                               candidates: list, answer: nil, level: level, template: PromptBuilder.evalTemplate)
                    encoded.append(try r.encoder.encode(prompt, withAnswer: false))
                    sets.append(list)
                }
                var scored = r.scoreCandidates(encoded, answers: try sets.map { try r.answerTokens($0, dataset: dataset) }, level: level)
                if weights.usesGraph {
                    let g = try trained.graph.scores(histories: graphHistories, candidates: sets)
                    for i in scored.indices { scored[i].graphScores = g[i].map(Double.init) }
                }
                var generated: [String?] = Array(repeating: nil, count: chunk.count)
                if generate {
                    let tries = constrained
                        ? try sets.map { TokenTrie(try r.answerTokens($0, dataset: dataset)) } : nil
                    generated = r.generate(encoded, level: level, constraints: tries).map { r.encoder.tokenizer.decode($0) }
                }
                for (i, q) in chunk.enumerated() {
                    let weight = weights(candidates: sets[i], history: q.items)
                    let probabilities = scored[i].probabilities(norm, graphWeight: weight)
                    var order = rankedCandidates(scored[i].scores(norm, graphWeight: weight))
                    if let text = generated[i] {
                        let titles = sets[i].map { dataset.items[$0].title }
                        if let c = scoreAnswer(text, candidateTitles: titles, truth: -1).chosen {
                            order.removeAll { $0 == c }
                            order.insert(c, at: 0)
                        } else {
                            printError("tmf: note: the generated answer \"\(text)\" names none of the candidates; answering with the top-ranked item")
                        }
                    }
                    let shown = order.prefix(q.top).map { k in
                        (id: dataset.items[sets[i][k]].id, title: dataset.items[sets[i][k]].title, score: probabilities[k])
                    }
                    if json || batch != nil {
                        var object: [String: Any] = [
                            "items": shown.map { ["item_id": $0.id, "title": $0.title, "score": (($0.score * 1e4).rounded() / 1e4)] },
                            "candidates": sets[i].map { dataset.items[$0].id },
                        ]
                        if let user = q.user { object["user"] = user }
                        if let text = generated[i] { object["output"] = text }
                        let line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
                        print(String(decoding: line, as: UTF8.self))
                    } else {
                        for s in shown { print("\(s.id)\t\(s.title)\t\(String(format: "%.4f", s.score))") }
                    }
                }
            }
        }
    }

    /// The error for a history with no event.
    static func emptyHistory(_ what: String) -> DataError {
        DataError.invalidArgument("\(what) is empty; give behavior:item_id events, e.g. \"view:I1,cart:I2\"")
    }

    /// Every event of a dataset user, oldest first, into `collector`.
    static func collectUserHistory(_ id: String, into collector: inout HistoryCollector, what: String) throws {
        let dataset = collector.dataset
        guard let u = dataset.userIDs.firstIndex(of: id) else {
            throw DataError.invalidArgument("\(what): unknown user '\(id.prefix(200))' (not in \(dataset.url.path)/interactions.csv)")
        }
        for e in dataset.events(ofUser: u) {
            collector.add(HistoryEvent(behavior: Int(dataset.eventBehaviors[e]), item: Int(dataset.eventItems[e])))
        }
    }

    /// Item ids to indices: known, distinct, at least one.
    static func parseCandidates(_ ids: [String], dataset: Dataset, what: String) throws -> [Int] {
        if ids.count > CommandLimits.candidates {
            throw DataError.invalidArgument("\(what) lists \(ids.count) items, more than the \(CommandLimits.candidates) candidates allowed: every candidate is scored in one batch")
        }
        let items = try ids.map { raw in
            let id = raw.trimmingCharacters(in: .whitespaces)
            guard let i = dataset.itemIndex[id] else {
                throw DataError.invalidArgument("\(what): unknown item id '\(id)' (not in \(dataset.url.path)/items.jsonl)")
            }
            return i
        }
        if items.isEmpty { throw DataError.invalidArgument("\(what) is empty") }
        if Set(items).count != items.count { throw DataError.invalidArgument("\(what) lists an item twice") }
        return items
    }

    /// Reads and checks every request of a JSON Lines file before answering any. The file is
    /// streamed a line at a time (a line may hold `CommandLimits.requestLineBytes`), and each
    /// request keeps only the last `keep` events of its history.
    static func readBatch(_ path: String, dataset: Dataset, keep: Int, top: Int) throws -> [Request] {
        var out: [Request] = []
        try forEachLine(of: path, maxLineBytes: CommandLimits.requestLineBytes) { bytes, n in
            let where_ = "\(path):\(n)"
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
                throw DataError.invalidArgument("\(where_): not a JSON object; give {\"history\": \"view:I1,cart:I2\"} or {\"user\": \"U1\"}")
            }
            var collector = HistoryCollector(dataset: dataset, keep: keep)
            var user: String?
            switch (object["history"], object["user"]) {
            case let (h as String, nil):
                try collector.add(parsing: Substring(h), what: where_)
                if collector.count == 0 { throw emptyHistory(where_) }
            case let (nil, u as String):
                user = u
                try collectUserHistory(u, into: &collector, what: where_)
            default: throw DataError.invalidArgument("\(where_): give exactly one of \"history\" (a string) or \"user\"")
            }
            var listed: [Int]?
            if let c = object["candidates"] {
                guard let ids = c as? [String] else { throw DataError.invalidArgument("\(where_): \"candidates\" must be a list of item ids") }
                listed = try parseCandidates(ids, dataset: dataset, what: where_ + " candidates")
            }
            var k = top
            if let t = object["top"] {
                guard let v = t as? Int, v >= 1 else { throw DataError.invalidArgument("\(where_): \"top\" must be an integer of at least 1") }
                if v > CommandLimits.candidates {
                    throw DataError.invalidArgument("\(where_): \"top\" \(v) is more than the \(CommandLimits.candidates) allowed")
                }
                k = v
            }
            out.append(Request(user: user, events: collector.events, items: collector.items, candidates: listed, top: k))
        }
        if out.isEmpty { throw DataError.invalidArgument("\(path) has no request") }
        return out
    }
}

/// The requests of a `tmf recommend --batch` file, read and checked as the command does (history
/// strings, users, candidate lists, `top`), without a model: for the `recommend-batch` fuzz target.
/// - Returns: the number of requests.
/// - Throws: `DataError` naming the line of the first bad request.
public func checkRecommendBatchFile(_ path: String, dataset: Dataset, keep: Int = 40, top: Int = 3) throws -> Int {
    try RecommendCommand.readBatch(path, dataset: dataset, keep: keep, top: top).count
}

/// `s` without its leading and trailing spaces and tabs (cheap: no Foundation bridging, for
/// histories of millions of events).
func trimmedBlanks(_ s: Substring) -> Substring {
    var lo = s.startIndex, hi = s.endIndex
    while lo < hi, s[lo] == " " || s[lo] == "\t" { lo = s.index(after: lo) }
    while hi > lo {
        let p = s.index(before: hi)
        guard s[p] == " " || s[p] == "\t" else { break }
        hi = p
    }
    return s[lo..<hi]
}
