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
            prints one JSON object a line.
            """
    )

    @Argument(help: "Model folder.")
    var model: String = "tmf-model"

    @Option(help: "Comma-separated behavior:item_id events, oldest first, e.g. \"view:I1,cart:I2\".")
    var history: String?

    @Option(help: "A user of the dataset: the history is the user's events.")
    var user: String?

    @Option(help: "A JSON Lines file of requests; answers are JSON Lines on stdout.")
    var batch: String?

    @Option(help: "Behavior to predict (must be the model's target behavior).")
    var target: String?

    @Option(help: "Comma-separated candidate item ids (default: MBHT's top max(10, K)).")
    var candidates: String?

    @Option(help: "How many ranked items to print.")
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

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if [history != nil, user != nil, batch != nil].filter({ $0 }).count != 1 {
            throw ValidationError("give exactly one of --history, --user or --batch")
        }
        if top < 1 { throw ValidationError("--top must be at least 1") }
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
        var events: [HistoryEvent]
        var candidates: [Int]?
        var top: Int
    }

    func run() throws {
        compute.apply()
        try reportingErrors {
            let trained = try TrainedModel.load(folder: URL(fileURLWithPath: model), data: data.map { URL(fileURLWithPath: $0) })
            let dataset = trained.dataset
            if let target, target != trained.spec.target {
                throw DataError.invalidArgument("--target \(target): this model was trained to predict '\(trained.spec.target)'; train one with that target")
            }
            let requests: [Request]
            if let batch {
                requests = try readBatch(batch, dataset: dataset)
            } else {
                let events = try history.map { try parseHistory($0, dataset: dataset, what: "--history") }
                    ?? userHistory(user!, dataset: dataset, what: "--user")
                let listed = try candidates.map { text in
                    try parseCandidates(text.split(separator: ",", omittingEmptySubsequences: false).map(String.init),
                                        dataset: dataset, what: "--candidates")
                }
                requests = [Request(user: user, events: events, candidates: listed, top: top)]
            }
            let eligible = includeHistory || (!excludeHistory && (trained.spec.historyEligible ?? false))
            let norm = normalization.flatMap(LengthNormalization.init(rawValue:)) ?? trained.spec.normalization ?? Pipeline.defaultNormalization
            let weight = graphWeight ?? trained.spec.graphWeight ?? 0
            let r = trained.recommender
            let level = r.modalities.hardestLevel
            let builder = PromptBuilder(dataset: dataset)
            // Prompts in batches of 8: encode, rank, answer, print.
            for start in stride(from: 0, to: requests.count, by: 8) {
                let chunk = Array(requests[start..<min(start + 8, requests.count)])
                var encoded: [EncodedPrompt] = [], sets: [[Int]] = []
                for q in chunk {
                    var list = q.candidates ?? []
                    if q.candidates == nil {
                        let seen = eligible ? [] : Set(q.events.map(\.item))
                        let graphHistory = q.events.suffix(trained.spec.graph.maxSequenceLength).map { GraphEvent(item: $0.item, behavior: $0.behavior) }
                        list = try trained.graph.topK(history: Array(graphHistory), k: max(10, q.top), excluding: seen).map(\.item)
                        if list.isEmpty {  // the history holds every item: answer among them rather than not at all
                            list = try trained.graph.topK(history: Array(graphHistory), k: max(10, q.top)).map(\.item)
                        }
                    }
                    let prompt = builder.build(history: Array(q.events.suffix(trained.spec.training.historyLength)), target: dataset.target,
                                               candidates: list, answer: nil, level: level, template: PromptBuilder.evalTemplate)
                    encoded.append(try r.encoder.encode(prompt, withAnswer: false))
                    sets.append(list)
                }
                var scored = r.scoreCandidates(encoded, answers: try sets.map { try r.answerTokens($0, dataset: dataset) }, level: level)
                if weight > 0 {
                    let histories = chunk.map { q in
                        Array(q.events.suffix(trained.spec.graph.maxSequenceLength).map { GraphEvent(item: $0.item, behavior: $0.behavior) })
                    }
                    let g = try trained.graph.scores(histories: histories, candidates: sets)
                    for i in scored.indices { scored[i].graphScores = g[i].map(Double.init) }
                }
                var generated: [String?] = Array(repeating: nil, count: chunk.count)
                if generate {
                    let tries = constrained
                        ? try sets.map { TokenTrie(try r.answerTokens($0, dataset: dataset)) } : nil
                    generated = r.generate(encoded, level: level, constraints: tries).map { r.encoder.tokenizer.decode($0) }
                }
                for (i, q) in chunk.enumerated() {
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

    /// Parses "behavior:item,behavior:item" against the dataset's behaviors and items.
    func parseHistory(_ text: String, dataset: Dataset, what: String) throws -> [HistoryEvent] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if parts.isEmpty { throw DataError.invalidArgument("\(what) is empty; give behavior:item_id events, e.g. \"view:I1,cart:I2\"") }
        return try parts.map { part in
            guard let colon = part.firstIndex(of: ":") else {
                throw DataError.invalidArgument("\(what): '\(part)' is not behavior:item_id")
            }
            let b = String(part[..<colon]), id = String(part[part.index(after: colon)...])
            guard let behavior = dataset.behaviors.firstIndex(where: { $0.name == b }) else {
                throw DataError.invalidArgument("\(what): unknown behavior '\(b)'; known: \(dataset.behaviors.map(\.name).joined(separator: ", "))")
            }
            guard let item = dataset.itemIndex[id] else {
                throw DataError.invalidArgument("\(what): unknown item id '\(id)' (not in \(dataset.url.path)/items.jsonl)")
            }
            return HistoryEvent(behavior: behavior, item: item)
        }
    }

    /// Every event of a dataset user, oldest first.
    func userHistory(_ id: String, dataset: Dataset, what: String) throws -> [HistoryEvent] {
        guard let u = dataset.userIDs.firstIndex(of: id) else {
            throw DataError.invalidArgument("\(what): unknown user '\(id)' (not in \(dataset.url.path)/interactions.csv)")
        }
        return dataset.events(ofUser: u).map { HistoryEvent(behavior: Int(dataset.eventBehaviors[$0]), item: Int(dataset.eventItems[$0])) }
    }

    /// Item ids to indices: known, distinct, at least one.
    func parseCandidates(_ ids: [String], dataset: Dataset, what: String) throws -> [Int] {
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

    /// Reads and checks every request of a JSON Lines file before answering any.
    func readBatch(_ path: String, dataset: Dataset) throws -> [Request] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw DataError.io(path: path, reason: "cannot read it as UTF-8 text")
        }
        var out: [Request] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let where_ = "\(path):\(n + 1)"
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
                throw DataError.invalidArgument("\(where_): not a JSON object; give {\"history\": \"view:I1,cart:I2\"} or {\"user\": \"U1\"}")
            }
            let events: [HistoryEvent]
            var user: String?
            switch (object["history"], object["user"]) {
            case let (h as String, nil): events = try parseHistory(h, dataset: dataset, what: where_)
            case let (nil, u as String): user = u; events = try userHistory(u, dataset: dataset, what: where_)
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
                k = v
            }
            out.append(Request(user: user, events: events, candidates: listed, top: k))
        }
        if out.isEmpty { throw DataError.invalidArgument("\(path) has no request") }
        return out
    }
}
