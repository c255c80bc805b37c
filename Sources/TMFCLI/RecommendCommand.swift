import ArgumentParser
import Foundation
import TMFData
import TMFGraph
import TMFTrainer

/// `tmf recommend`: the next item for a history, chosen by the trained TMF model among given
/// candidates or MBHT's top 10 (TMF as a re-ranker over a candidate generator).
struct RecommendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recommend",
        abstract: "Recommend the next item for a history of behavior:item_id events."
    )

    @Argument(help: "Model folder.")
    var model: String = "tmf-model"

    @Option(help: "Comma-separated behavior:item_id events, oldest first, e.g. \"view:I1,cart:I2\".")
    var history: String

    @Option(help: "Behavior to predict (must be the model's target behavior).")
    var target: String?

    @Option(help: "Comma-separated candidate item ids (default: MBHT's top 10 items not in the history).")
    var candidates: String?

    @Option(help: "Dataset folder (default: the model's dataset).")
    var data: String?

    @Flag(help: "Decode only candidate titles.")
    var constrained = false

    @Flag(help: "Print one JSON object.")
    var json = false

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        compute.apply()
        try reportingErrors {
            let trained = try TrainedModel.load(folder: URL(fileURLWithPath: model), data: data.map { URL(fileURLWithPath: $0) })
            let dataset = trained.dataset
            if let target, target != trained.spec.target {
                throw DataError.invalidArgument("--target \(target): this model was trained to predict '\(trained.spec.target)'; train one with that target")
            }
            let events = try parseHistory(history, dataset: dataset)
            let length = trained.spec.training.historyLength
            let recent = Array(events.suffix(length))
            var candidateItems: [Int]
            if let candidates {
                candidateItems = try candidates.split(separator: ",").map { raw in
                    let id = raw.trimmingCharacters(in: .whitespaces)
                    guard let i = dataset.itemIndex[id] else {
                        throw DataError.invalidArgument("--candidates: unknown item id '\(id)' (not in \(dataset.url.path)/items.jsonl)")
                    }
                    return i
                }
                if candidateItems.isEmpty { throw DataError.invalidArgument("--candidates is empty") }
                if Set(candidateItems).count != candidateItems.count { throw DataError.invalidArgument("--candidates lists an item twice") }
            } else {
                let seen = Set(events.map(\.item))
                let graphHistory = events.suffix(trained.spec.graph.maxSequenceLength).map { GraphEvent(item: $0.item, behavior: $0.behavior) }
                candidateItems = try trained.graph.topK(history: Array(graphHistory), k: 10, excluding: seen).map(\.item)
            }
            let r = trained.recommender
            let prompt = PromptBuilder(dataset: dataset).build(history: recent, target: dataset.target, candidates: candidateItems,
                                                                answer: nil, level: r.modalities.hardestLevel,
                                                                template: PromptBuilder.evalTemplate)
            let encoded = try r.encoder.encode(prompt, withAnswer: false)
            var constraints: [TokenTrie]? = nil
            if constrained {
                constraints = [TokenTrie(try candidateItems.map { try r.encoder.tokenizer.encode(dataset.items[$0].title, addBOS: false) })]
            }
            let output = r.encoder.tokenizer.decode(r.generate([encoded], level: r.modalities.hardestLevel, constraints: constraints)[0])
            let titles = candidateItems.map { dataset.items[$0].title }
            let score = scoreAnswer(output, candidateTitles: titles, truth: -1)
            if json {
                var object: [String: Any] = ["output": output, "candidates": candidateItems.map { dataset.items[$0].id }]
                if let c = score.chosen {
                    object["item_id"] = dataset.items[candidateItems[c]].id
                    object["title"] = titles[c]
                } else {
                    object["item_id"] = NSNull()
                    object["title"] = NSNull()
                }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else if let c = score.chosen {
                print("\(dataset.items[candidateItems[c]].id)\t\(titles[c])")
            } else {
                printError("tmf: the model's answer \"\(output)\" names none of the candidates; try --constrained")
                throw ExitCode(2)
            }
        }
    }

    /// Parses "behavior:item,behavior:item" against the dataset's behaviors and items.
    func parseHistory(_ text: String, dataset: Dataset) throws -> [HistoryEvent] {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if parts.isEmpty { throw DataError.invalidArgument("--history is empty; give behavior:item_id events, e.g. \"view:I1,cart:I2\"") }
        return try parts.map { part in
            guard let colon = part.firstIndex(of: ":") else {
                throw DataError.invalidArgument("--history: '\(part)' is not behavior:item_id")
            }
            let b = String(part[..<colon]), id = String(part[part.index(after: colon)...])
            guard let behavior = dataset.behaviors.firstIndex(where: { $0.name == b }) else {
                throw DataError.invalidArgument("--history: unknown behavior '\(b)'; known: \(dataset.behaviors.map(\.name).joined(separator: ", "))")
            }
            guard let item = dataset.itemIndex[id] else {
                throw DataError.invalidArgument("--history: unknown item id '\(id)' (not in \(dataset.url.path)/items.jsonl)")
            }
            return HistoryEvent(behavior: behavior, item: item)
        }
    }
}
