import Foundation
import TMFCheckpoint
import TMFData
import TMFLlama
import TMFTensor
import TMFTokenizer

// Pretraining a small Llama from scratch (or continuing one: domain adaptation) on a text
// corpus: corpus building, tokenizer training, next-token training on packed windows, and a
// Hugging Face folder (config.json, model.safetensors, tokenizer.model) as the result.

/// Errors of `tmf pretrain` that a user can fix.
public enum PretrainError: Error, LocalizedError, Equatable {
    /// The corpus file does not exist or cannot be read.
    case missingCorpus(path: String, reason: String)
    /// The corpus has no non-empty line (`path` is empty for an in-memory corpus).
    case emptyCorpus(path: String)
    /// The tokenized corpus is shorter than one training window.
    case corpusTooSmall(tokens: Int, needed: Int)
    /// A size or hyper-parameter is out of range (the message names the flag).
    case invalidParameter(String)
    /// The `--init` folder lacks a file or does not load.
    case badInitFolder(path: String, reason: String)
    /// The output folder cannot be created or written.
    case unwritableOutput(path: String, reason: String)
    /// The loss became NaN or infinite.
    case nonFiniteLoss(step: Int, loss: Float)

    public var errorDescription: String? {
        switch self {
        case let .missingCorpus(path, reason):
            return "cannot read the corpus \(path): \(reason); give a UTF-8 text file (one document a line) with --corpus, or a dataset folder with --data"
        case let .emptyCorpus(path):
            return "the corpus\(path.isEmpty ? "" : " " + path) has no text (every line is empty); give a file with at least a few lines of text"
        case let .corpusTooSmall(tokens, needed):
            return "the corpus has only \(tokens) tokens but one training window needs \(needed); add text or lower --seq-len"
        case let .invalidParameter(why):
            return why
        case let .badInitFolder(path, reason):
            return "cannot continue from \(path): \(reason); --init needs a Llama folder with config.json, model.safetensors and tokenizer.model"
        case let .unwritableOutput(path, reason):
            return "cannot write \(path): \(reason); choose another --out folder"
        case let .nonFiniteLoss(step, loss):
            return "pretraining stopped at step \(step): the loss is \(loss); lower --lr (the last checkpoint in the output folder is kept)"
        }
    }
}

/// Storage type of the written weights.
public enum WeightsDType: String, Codable, Sendable, CaseIterable {
    case f32, bf16

    var safetensors: SafeTensorsDType { self == .f32 ? .f32 : .bf16 }
}

/// Model sizes and training hyper-parameters of a pretraining run.
public struct PretrainParameters: Codable, Sendable, Equatable {
    /// SentencePiece vocabulary size (UNK/BOS/EOS and the 256 byte pieces included); the
    /// model's vocabulary is the tokenizer's actual size. Ignored with `--init`.
    public var vocabularySize: Int
    /// Model width (ignored with `--init`, as are the other sizes).
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    /// Grouped-query key/value heads (divides `heads`).
    public var kvHeads: Int
    /// SwiGLU width.
    public var intermediateSize: Int
    /// `max_position_embeddings` of the config.
    public var context: Int
    /// Optimiser steps.
    public var steps: Int
    /// Windows per step.
    public var batchSize: Int
    /// Tokens per window (inputs; the targets are the same window shifted by one).
    public var sequenceLength: Int
    /// Peak learning rate (AdamW, β = (0.9, 0.95)).
    public var learningRate: Float
    /// Linear warm-up steps, then cosine decay to `minLearningRate` at `steps`.
    public var warmupSteps: Int
    public var minLearningRate: Float
    /// Decoupled weight decay on matrices (norm weights are not decayed).
    public var weightDecay: Float
    /// Global gradient-norm clip.
    public var clipNorm: Float
    /// Standard deviation of the random init (residual output projections are scaled by 1/√(2·layers)).
    public var initStd: Float
    /// Seed of the init, the document split and the window draws.
    public var seed: UInt64
    /// Write the folder every this many steps (and at the start and the end).
    public var checkpointEvery: Int
    /// Evaluate the held-out loss every this many steps (0: only at the end).
    public var evalEvery: Int
    /// Fraction of the documents held out for the validation loss (none when fewer than 10 documents).
    public var validFraction: Double
    /// Storage type of model.safetensors.
    public var dtype: WeightsDType

    public init(vocabularySize: Int = 1000, hiddenSize: Int = 128, layers: Int = 4, heads: Int = 4, kvHeads: Int = 2,
                intermediateSize: Int = 344, context: Int = 512, steps: Int = 500, batchSize: Int = 8,
                sequenceLength: Int = 128, learningRate: Float = 3e-3, warmupSteps: Int? = nil,
                minLearningRate: Float? = nil, weightDecay: Float = 0.1, clipNorm: Float = 1, initStd: Float = 0.02,
                seed: UInt64 = 0, checkpointEvery: Int = 100, evalEvery: Int = 0, validFraction: Double = 0.05,
                dtype: WeightsDType = .f32) {
        self.vocabularySize = vocabularySize
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.intermediateSize = intermediateSize
        self.context = context
        self.steps = steps
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps ?? max(1, steps / 20)
        self.minLearningRate = minLearningRate ?? learningRate / 10
        self.weightDecay = weightDecay
        self.clipNorm = clipNorm
        self.initStd = initStd
        self.seed = seed
        self.checkpointEvery = checkpointEvery
        self.evalEvery = evalEvery
        self.validFraction = validFraction
        self.dtype = dtype
    }

    /// Checks every value; `sizes` also checks the model sizes (not used with `--init`).
    /// - Throws: `PretrainError.invalidParameter` naming the flag.
    public func validate(sizes: Bool = true) throws {
        func bad(_ s: String) -> PretrainError { .invalidParameter(s) }
        if sizes {
            if vocabularySize < 260 { throw bad("--vocab must be at least 260 (3 special pieces and 256 byte pieces), got \(vocabularySize)") }
            for (flag, v) in [("--hidden", hiddenSize), ("--layers", layers), ("--heads", heads), ("--kv-heads", kvHeads),
                              ("--ffn", intermediateSize), ("--context", context)] where v < 1 {
                throw bad("\(flag) must be at least 1, got \(v)")
            }
            if hiddenSize % heads != 0 { throw bad("--heads \(heads) must divide --hidden \(hiddenSize)") }
            if heads % kvHeads != 0 { throw bad("--kv-heads \(kvHeads) must divide --heads \(heads)") }
            if (hiddenSize / heads) % 2 != 0 {
                throw bad("the head width --hidden / --heads = \(hiddenSize / heads) must be even (rotary pairs)")
            }
        }
        if steps < 1 { throw bad("--steps must be at least 1, got \(steps)") }
        if batchSize < 1 { throw bad("--batch-size must be at least 1, got \(batchSize)") }
        if sequenceLength < 2 { throw bad("--seq-len must be at least 2, got \(sequenceLength)") }
        if sizes && sequenceLength > context { throw bad("--seq-len \(sequenceLength) must not exceed --context \(context)") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("--lr must be a positive number") }
        if !(minLearningRate >= 0) || minLearningRate > learningRate { throw bad("the minimum learning rate must be in 0...--lr") }
        if warmupSteps < 0 { throw bad("warm-up steps must not be negative") }
        if !(weightDecay >= 0) || !(clipNorm > 0) || !(initStd > 0) { throw bad("weight decay, clip norm and init std must be positive") }
        if checkpointEvery < 1 { throw bad("--checkpoint-every must be at least 1") }
        if evalEvery < 0 { throw bad("--eval-every must not be negative") }
        if !(validFraction >= 0 && validFraction < 1) { throw bad("the validation fraction must be in [0, 1)") }
    }
}

// MARK: - Corpus

/// Builds pretraining corpora: documents (one a line) from a text file or from a dataset.
public enum PretrainCorpus {
    /// The non-empty lines of a UTF-8 text file (trailing spaces and `\r` trimmed).
    /// - Throws: `PretrainError.missingCorpus`, `.emptyCorpus`.
    public static func read(file url: URL) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw PretrainError.missingCorpus(path: url.path, reason: "no such file")
        }
        if isDirectory.boolValue { throw PretrainError.missingCorpus(path: url.path, reason: "it is a folder") }
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            data = try handle.readToEnd() ?? Data()
        } catch {
            throw PretrainError.missingCorpus(path: url.path, reason: error.localizedDescription)
        }
        let lines = String(decoding: data, as: UTF8.self)
            .split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        if lines.isEmpty { throw PretrainError.emptyCorpus(path: url.path) }
        return lines
    }

    /// The events of user `u` that a pretraining corpus may show: those before the user's
    /// validation target event (the second-to-last target-behavior event); with a single target
    /// event, those before it (the test target); with none, all (such users make no examples).
    /// So no validation or test answer ever appears, and neither does anything after it.
    public static func visibleEvents(of u: Int, in dataset: Dataset) -> Range<Int> {
        let r = dataset.events(ofUser: u)
        let target = UInt8(dataset.target)
        let targets = r.filter { dataset.eventBehaviors[$0] == target }
        if targets.count >= 2 { return r.lowerBound..<targets[targets.count - 2] }
        if let only = targets.first { return r.lowerBound..<only }
        return r
    }

    /// One sentence per chunk of at most `historyLength` visible events per user, in the
    /// prompts' words ("The user views X, adds to cart Y, purchases Z."), with the three
    /// prompt templates' openings drawn at random.
    public static func historySentences(from dataset: Dataset, historyLength: Int = 20, rng: inout SeededRNG) -> [String] {
        var out: [String] = []
        let target = dataset.behaviors[dataset.target]
        for u in 0..<dataset.userIDs.count {
            let visible = Array(visibleEvents(of: u, in: dataset))
            var start = 0
            while start < visible.count {
                let chunk = visible[start..<min(start + historyLength, visible.count)]
                start += historyLength
                let steps = chunk.map { e in
                    dataset.behaviors[Int(dataset.eventBehaviors[e])].phrase + " " + dataset.items[Int(dataset.eventItems[e])].title
                }.joined(separator: ", ")
                switch rng.nextInt(below: 3) {
                case 0: out.append("The user \(steps).")
                case 1: out.append("A shopper's recent activity, oldest first: the user \(steps).")
                default: out.append("Given that the user \(steps), predict which item the user \(target.phrase) next.")
                }
            }
        }
        return out
    }

    /// `count` question sentences in the prompts' exact wording (`PromptBuilder`, text level, a
    /// random template): a user's visible history (a random run of at most `historyLength` events
    /// before the user's validation target, see `visibleEvents`), the target-behavior question,
    /// `candidates` distinct random titles none of which is in that history, and "The answer is T"
    /// with T a uniformly random candidate. The answer carries no information about the user (it is
    /// not data); the sentences teach the prompt's shape and that an answer is copied from the
    /// candidate list, never from the history.
    public static func candidateSentences(from dataset: Dataset, count: Int, candidates: Int = 11,
                                          historyLength: Int = 10, rng: inout SeededRNG) -> [String] {
        let itemCount = dataset.items.count
        guard itemCount > 0, count > 0 else { return [] }
        let histories = (0..<dataset.userIDs.count).map { Array(visibleEvents(of: $0, in: dataset)) }.filter { !$0.isEmpty }
        let builder = PromptBuilder(dataset: dataset)
        var out: [String] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            var history: [HistoryEvent] = []
            if !histories.isEmpty {
                let events = histories[rng.nextInt(below: histories.count)]
                let length = 1 + rng.nextInt(below: min(historyLength, events.count))
                let end = length + rng.nextInt(below: events.count - length + 1)
                history = events[(end - length)..<end].map {
                    HistoryEvent(behavior: Int(dataset.eventBehaviors[$0]), item: Int(dataset.eventItems[$0]))
                }
            } else {
                history = [HistoryEvent(behavior: 0, item: rng.nextInt(below: itemCount))]
            }
            // A partial Fisher-Yates shuffle of the items not in the history, done sparsely (only
            // the swapped positions are stored), so a sentence costs O(candidates · history), not
            // O(items).
            var excluded = Array(Set(history.map(\.item))).sorted()
            if excluded.count == itemCount { excluded = [] }
            let available = itemCount - excluded.count
            func item(at position: Int) -> Int {  // the position-th item not in `excluded`
                var i = position
                for e in excluded { if e <= i { i += 1 } else { break } }
                return i
            }
            var swapped: [Int: Int] = [:]
            let k = min(candidates, available)
            for i in 0..<k {
                let j = i + rng.nextInt(below: available - i)
                let (atI, atJ) = (swapped[i] ?? i, swapped[j] ?? j)
                swapped[i] = atJ
                swapped[j] = atI
            }
            let picked = (0..<k).map { item(at: swapped[$0] ?? $0) }
            let answer = picked[rng.nextInt(below: k)]
            let prompt = builder.build(history: history, target: dataset.target, candidates: picked, answer: answer,
                                       level: .easy, template: PromptBuilder.randomTemplate(using: &rng))
            out.append(prompt.fullText)
        }
        return out
    }

    /// `count` list-recall drills: a list of 3 to `candidates` distinct random titles in the
    /// prompts' wording, then the same list again ("The candidate items are A, B, C. Once more,
    /// the candidate items are A, B, C."). Half of each drill is predictable only by copying from
    /// earlier in the context, which teaches a small model to copy a title it was shown, the skill
    /// answering from a candidate list needs. Random titles, no user data.
    public static func copyDrills(from dataset: Dataset, count: Int, candidates: Int = 11,
                                  rng: inout SeededRNG) -> [String] {
        let titles = dataset.items.map(\.title)
        guard titles.count >= 1, count > 0 else { return [] }
        let most = min(candidates, titles.count)
        let fewest = min(3, most)
        var out: [String] = []
        out.reserveCapacity(count)
        var pool = Array(titles.indices)
        for _ in 0..<count {
            let k = fewest + rng.nextInt(below: most - fewest + 1)
            for i in 0..<k { pool.swapAt(i, i + rng.nextInt(below: pool.count - i)) }
            let list = pool.prefix(k).map { titles[$0] }.joined(separator: ", ")
            out.append("The candidate items are \(list). Once more, the candidate items are \(list).")
        }
        return out
    }

    /// `count` look-up drills: 4 to `candidates` distinct random titles, exactly one of them of a
    /// named category (the item's most specific category; the others are of other categories),
    /// and that one as the answer. Half are short, in one of three phrasings:
    /// "The candidate items are A, B, C. Choose the bike shorts. The answer is B.",
    /// "The user wants bike shorts. The candidate items are A, B, C. Choose only one item from the
    /// candidates. The answer is B.", "Looking for bike shorts? Candidates: A, B, C. The answer is B.";
    /// the other half are whole prompts (`PromptBuilder`, text level, a random template) whose
    /// history of 2 to `historyLength` random events names 1 to 3 other items of that category,
    /// none of them a candidate (none at all when the category has no other item), with "The user
    /// wants bike shorts." before "The answer is B.". They teach a small model to pick a listed
    /// title by what it is and copy it whole, brand first, from the candidate list and not from a
    /// history item of the same kind — the step between knowing what a user wants next and naming
    /// a candidate. The answer follows from the sentence itself
    /// (random titles, random events, a random category): no user data. Items without categories
    /// are never answers; a shop whose items all share one category has no drills.
    public static func lookupDrills(from dataset: Dataset, count: Int, candidates: Int = 11, historyLength: Int = 10,
                                    rng: inout SeededRNG) -> [String] {
        let items = dataset.items
        let category = items.map { $0.categories.last?.trimmingCharacters(in: .whitespaces) ?? "" }
        let answerable = items.indices.filter { !category[$0].isEmpty }
        guard count > 0, !answerable.isEmpty, candidates >= 2, historyLength >= 2, !dataset.behaviors.isEmpty,
              Set(category).count >= 2 else { return [] }
        let byCategory = Dictionary(grouping: items.indices, by: { category[$0] })
        let builder = PromptBuilder(dataset: dataset)
        var out: [String] = []
        out.reserveCapacity(count)
        var pool = Array(items.indices)
        for _ in 0..<count {
            let answer = answerable[rng.nextInt(below: answerable.count)]
            let c = category[answer]
            let inPrompt = rng.nextInt(below: 2) == 1
            // History (prompt form): 1-3 other items of the category among random items of others.
            var history: [HistoryEvent] = []
            if inPrompt {
                let length = 2 + rng.nextInt(below: historyLength - 1)
                let sameKind = byCategory[c]!.filter { $0 != answer }
                let distractors = sameKind.isEmpty ? 0 : 1 + rng.nextInt(below: min(3, sameKind.count, length))
                for _ in 0..<distractors {
                    history.append(HistoryEvent(behavior: rng.nextInt(below: dataset.behaviors.count),
                                                item: sameKind[rng.nextInt(below: sameKind.count)]))
                }
                while history.count < length {
                    let item = pool[rng.nextInt(below: pool.count)]
                    if item == answer { continue }
                    history.insert(HistoryEvent(behavior: rng.nextInt(below: dataset.behaviors.count), item: item),
                                   at: rng.nextInt(below: history.count + 1))
                }
            }
            let seen = Set(history.map(\.item))
            // Others: a partial shuffle of the pool, keeping the first k-1 items of other categories
            // that are not in the history.
            let most = min(candidates, items.count)
            let k = min(most, 4) + rng.nextInt(below: most - min(most, 4) + 1)
            var others: [Int] = []
            var i = 0
            while others.count < k - 1 && i < pool.count {
                pool.swapAt(i, i + rng.nextInt(below: pool.count - i))
                if category[pool[i]] != c && !seen.contains(pool[i]) { others.append(pool[i]) }
                i += 1
            }
            if others.isEmpty { continue }
            var list = others
            list.insert(answer, at: rng.nextInt(below: list.count + 1))
            let a = items[answer].title
            if inPrompt {
                let prompt = builder.build(history: history, target: dataset.target, candidates: list, answer: nil,
                                           level: .easy, template: PromptBuilder.randomTemplate(using: &rng))
                let lead = "The answer is"
                guard prompt.text.hasSuffix(lead) else { continue }
                out.append(String(prompt.text.dropLast(lead.count)) + "The user wants \(c). \(lead) \(a).")
                continue
            }
            let titles = list.map { items[$0].title }.joined(separator: ", ")
            switch rng.nextInt(below: 3) {
            case 0: out.append("The candidate items are \(titles). Choose the \(c). The answer is \(a).")
            case 1: out.append("The user wants \(c). The candidate items are \(titles). Choose only one item from the candidates. The answer is \(a).")
            default: out.append("Looking for \(c)? Candidates: \(titles). The answer is \(a).")
            }
        }
        return out
    }

    /// A corpus from a dataset that leaks no held-out answer: every item's text (title, brand,
    /// categories, description), the history sentences of `historySentences` (only events before
    /// each user's validation target), and question sentences with random candidates and random
    /// answers (`candidateSentences`, default three per item or per user, whichever is more), and
    /// `copyDrills` list-recall drills and `lookupDrills` look-up drills (none by default; each
    /// kind from its own generator, so adding one kind leaves the rest of the corpus unchanged).
    public static func build(from dataset: Dataset, seed: UInt64 = 0, historyLength: Int = 20,
                             candidateSentences count: Int? = nil, copyDrills drills: Int = 0,
                             lookupDrills lookups: Int = 0) -> [String] {
        var rng = SeededRNG(seed: seed, key: ["pretrain-corpus"])
        var docs = dataset.items.map { item -> String in
            let t = item.text
            return t.hasSuffix(".") ? t : t + "."
        }
        docs += historySentences(from: dataset, historyLength: historyLength, rng: &rng)
        docs += candidateSentences(from: dataset, count: count ?? 3 * max(dataset.items.count, dataset.userIDs.count), rng: &rng)
        if drills > 0 {
            var drillRNG = SeededRNG(seed: seed, key: ["pretrain-copy-drills"])
            docs += copyDrills(from: dataset, count: drills, rng: &drillRNG)
        }
        if lookups > 0 {
            var lookupRNG = SeededRNG(seed: seed, key: ["pretrain-lookup-drills"])
            docs += lookupDrills(from: dataset, count: lookups, rng: &lookupRNG)
        }
        return docs
    }
}

// MARK: - Training

/// One optimiser step's figures.
public struct PretrainStepReport: Sendable, Equatable {
    public var step: Int
    public var loss: Float
    public var learningRate: Float
    public var gradientNorm: Float
    public var tokensPerSecond: Double
}

/// What a pretraining run reports (the CLI prints; the library never does).
public enum PretrainEvent: Sendable {
    /// The tokenizer and model are ready: corpus tokens (train / held out), documents, weights.
    case prepared(trainTokens: Int, validTokens: Int, documents: Int, parameters: Int, vocabulary: Int)
    case step(PretrainStepReport)
    /// Held-out mean next-token loss.
    case evaluation(step: Int, loss: Float)
    /// The output folder was written at this step.
    case checkpoint(step: Int)
}

/// What a run ended with (also written to `pretrain.json` in the output folder).
public struct PretrainSummary: Codable, Sendable, Equatable {
    public var steps: Int
    /// Loss of the first step and mean loss of the last 10 steps.
    public var firstLoss: Float
    public var finalLoss: Float
    /// Held-out loss at the end (nil without held-out documents).
    public var validLoss: Float?
    public var trainTokens: Int
    public var seconds: Double
    public var parameters: PretrainParameters
    /// The `--init` folder, when the run continued a model.
    public var initFrom: String?

    enum CodingKeys: String, CodingKey {
        case steps, firstLoss = "first_loss", finalLoss = "final_loss", validLoss = "valid_loss"
        case trainTokens = "train_tokens", seconds, parameters, initFrom = "init_from"
    }
}

/// Next-token pretraining of a Llama on a corpus (all weights trained: AdamW with decay on
/// matrices only, warm-up + cosine, gradient clipping), writing a Hugging Face folder.
///
/// ```swift
/// let p = try Pretrainer(corpus: lines, parameters: PretrainParameters(steps: 200), folder: out)
/// let summary = try p.run { event in print(event) }
/// let model = try LlamaModel.load(directory: out)
/// ```
public final class Pretrainer {
    public let parameters: PretrainParameters
    /// The output folder.
    public let folder: URL
    public let tokenizer: SentencePieceTokenizer
    public let model: LlamaModel
    /// The packed training tokens (BOS doc EOS BOS doc EOS …) and the held-out ones.
    public let trainTokens: [Int]
    public let validTokens: [Int]
    public let documentCount: Int
    let initFrom: URL?
    let named: [(name: String, tensor: Tensor)]
    /// AdamW on the matrices (decayed) and on the norm weights (not), warm-up + cosine, clipping.
    let update: ScheduledUpdate
    var rng: SeededRNG
    /// Steps completed.
    public private(set) var step = 0
    var losses: [Float] = []
    /// Whether this trainer writes its folder (false: another rank of an MPI job does).
    let writes: Bool
    /// The ranks pretraining together (data-parallel by windows); a group of one by default.
    /// Every rank draws the same windows and runs its slice; gradients are summed per step.
    public var group: ProcessGroup = .single

    /// Trains a tokenizer on `corpus` (or takes `initFrom`'s), builds a randomly initialised
    /// model (or loads `initFrom`'s weights), encodes the corpus and writes the folder's
    /// `tokenizer.model`, `config.json` and initial weights (so the folder always loads).
    ///
    /// - Parameters:
    ///   - corpus: documents (one per element; empty ones are skipped).
    ///   - parameters: sizes and hyper-parameters (sizes are ignored with `initFrom`).
    ///   - folder: output folder (created; existing model files in it are replaced).
    ///   - initFrom: a Llama folder (config.json, model.safetensors, tokenizer.model, and its
    ///     `added_tokens.json` if any) to continue.
    ///   - addedTokens: with a new model, strings that become single tokens after the trained
    ///     pieces (e.g. every item title; written to `added_tokens.json`); ignored with `initFrom`.
    ///   - writes: false for the ranks of an MPI job other than 0, which read `initFrom` (rank
    ///     0's freshly made folder) and never write.
    /// - Throws: `PretrainError` (bad parameters, empty or too small corpus, bad init folder,
    ///   unwritable output), `TokenizerError` from tokenizer training.
    public init(corpus: [String], parameters: PretrainParameters, folder: URL, initFrom: URL? = nil,
                addedTokens: [String] = [], writes: Bool = true) throws {
        self.writes = writes
        try parameters.validate(sizes: initFrom == nil)
        let documents = corpus.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
        if documents.isEmpty { throw PretrainError.emptyCorpus(path: "") }
        self.parameters = parameters
        self.folder = folder
        self.initFrom = initFrom
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw PretrainError.unwritableOutput(path: folder.path, reason: error.localizedDescription)
        }
        let tokenizerURL = folder.appendingPathComponent("tokenizer.model")

        if let initFrom {
            let tokenizerSource = initFrom.appendingPathComponent("tokenizer.model")
            guard FileManager.default.fileExists(atPath: tokenizerSource.path) else {
                throw PretrainError.badInitFolder(path: initFrom.path, reason: "it has no tokenizer.model")
            }
            let loaded: LlamaModel
            do { loaded = try LlamaModel.load(directory: initFrom, dtype: .f32) } catch {
                throw PretrainError.badInitFolder(path: initFrom.path, reason: error.localizedDescription)
            }
            // Own copies of the weights (loaded F32 tensors may alias the checkpoint's mapping).
            model = LlamaModel(configuration: loaded.configuration)
            let source = loaded.weightTensors
            for (name, w) in model.weightTensors { w.pointer.update(from: source[name]!.pointer, count: w.count) }
            tokenizer = try SentencePieceTokenizer(directory: initFrom)
            if writes && tokenizerSource.standardizedFileURL.path != tokenizerURL.standardizedFileURL.path {
                do {
                    let bytes = try Data(contentsOf: tokenizerSource)
                    try bytes.write(to: tokenizerURL, options: .atomic)
                    try Self.writeAddedTokens(tokenizer, folder: folder)
                } catch {
                    throw PretrainError.unwritableOutput(path: tokenizerURL.path, reason: error.localizedDescription)
                }
            }
            if tokenizer.vocabularySize > model.configuration.vocabularySize {
                throw PretrainError.badInitFolder(
                    path: initFrom.path,
                    reason: "the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(model.configuration.vocabularySize)")
            }
        } else {
            var options = SentencePieceTrainer.Options.llama
            options.extra["hard_vocab_limit"] = "false"  // a small corpus gets a smaller vocabulary, not an error
            try SentencePieceTrainer.train(corpus: documents, vocabSize: parameters.vocabularySize, modelType: .bpe,
                                           options: options, to: tokenizerURL)
            tokenizer = try SentencePieceTokenizer(modelURL: tokenizerURL, addedTokens: addedTokens)
            do { try Self.writeAddedTokens(tokenizer, folder: folder) } catch {
                throw PretrainError.unwritableOutput(path: folder.appendingPathComponent(SentencePieceTokenizer.addedTokensFile).path,
                                                     reason: error.localizedDescription)
            }
            let p = parameters
            let configuration: LlamaConfiguration
            do {
                configuration = try LlamaConfiguration(
                    hiddenSize: p.hiddenSize, intermediateSize: p.intermediateSize, hiddenLayers: p.layers,
                    attentionHeads: p.heads, kvHeads: p.kvHeads, rmsNormEps: 1e-5, ropeTheta: 10000,
                    vocabularySize: tokenizer.vocabularySize, tieWordEmbeddings: true,
                    maxPositionEmbeddings: p.context, bosTokenId: tokenizer.bosID, eosTokenIds: [tokenizer.eosID])
            } catch {
                throw PretrainError.invalidParameter(error.localizedDescription)
            }
            model = LlamaModel(configuration: configuration)
            model.randomize(seed: p.seed, std: p.initStd)
            // GPT-2 / nanoGPT: residual output projections start smaller, by 1/√(2·layers).
            let residualScale = 1 / Float(2 * p.layers).squareRoot()
            for layer in model.layers {
                for w in [layer.attention.oProj.weight.tensor, layer.mlp.downProj.weight.tensor] {
                    for i in 0..<w.count { w.pointer[i] *= residualScale }
                }
            }
        }

        // Documents: a seeded shuffle, then a held-out tail for the validation loss.
        var rng = SeededRNG(seed: parameters.seed, key: ["pretrain"])
        var order = Array(documents.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        let held = documents.count >= 10 ? max(1, Int((Double(documents.count) * parameters.validFraction).rounded())) : 0
        let heldCount = parameters.validFraction > 0 ? held : 0
        let tok = tokenizer
        func pack(_ indices: ArraySlice<Int>) throws -> [Int] {
            var out: [Int] = []
            for i in indices {
                out.append(tok.bosID)
                out += try tok.encode(documents[i], addBOS: false)
                out.append(tok.eosID)
            }
            return out
        }
        let train = try pack(order.dropLast(heldCount))
        trainTokens = train
        validTokens = try pack(order.suffix(heldCount))
        documentCount = documents.count
        if train.count < parameters.sequenceLength + 1 {
            throw PretrainError.corpusTooSmall(tokens: train.count, needed: parameters.sequenceLength + 1)
        }
        let vocabulary = model.configuration.vocabularySize
        if let bad = train.first(where: { $0 >= vocabulary }) {
            throw PretrainError.badInitFolder(path: initFrom?.path ?? folder.path, reason: "token id \(bad) is outside the model's vocabulary")
        }
        self.rng = rng

        named = model.weightTensors.sorted { $0.key < $1.key }.map { (name: $0.key, tensor: $0.value) }
        for p in named { p.tensor.requiresGrad = true }
        let matrices = named.filter { $0.tensor.rank >= 2 }.map(\.tensor)
        let vectors = named.filter { $0.tensor.rank < 2 }.map(\.tensor)
        let decayed = Adam(parameters: matrices, learningRate: parameters.learningRate, beta1: 0.9, beta2: 0.95,
                           weightDecay: parameters.weightDecay, decoupledWeightDecay: true)
        let undecayed = Adam(parameters: vectors, learningRate: parameters.learningRate, beta1: 0.9, beta2: 0.95,
                             weightDecay: 0, decoupledWeightDecay: true)
        update = ScheduledUpdate(optimizers: [decayed, undecayed],
                                 schedule: .warmupCosine(peak: parameters.learningRate, warmupSteps: parameters.warmupSteps,
                                                         totalSteps: parameters.steps, minRate: parameters.minLearningRate),
                                 clipNorm: parameters.clipNorm)
        if writes {
            try writeConfig()
            try save()
        }
    }

    /// Number of trained weights.
    public var parameterCount: Int { named.reduce(0) { $0 + $1.tensor.count } }

    /// Mean next-token loss of `windows` [B][L+1] (inputs: all but the last; targets: all but the first).
    func loss(windows: [[Int]]) -> Tensor {
        let b = windows.count, l = windows[0].count - 1, d = model.configuration.hiddenSize
        let inputs = windows.flatMap { $0.dropLast() }
        let targets = windows.flatMap { $0.dropFirst() }
        // The embedding lookup is done here, not by the model, so the (tied) table gets its gradient.
        let x = model.embedTokens.rows(inputs).reshaped([b, l, d])          // (B, L, hidden)
        let logits = model(.embeddings(x), logits: .all, training: true)           // (B, L, vocab)
        return Tensor.crossEntropy(logits.reshaped([b * l, model.configuration.vocabularySize]), targets: targets)
    }

    /// One optimiser step on `batchSize` random windows of the packed training tokens.
    /// - Throws: `PretrainError.nonFiniteLoss` (nothing is updated then).
    public func trainStep() throws -> PretrainStepReport {
        let started = DispatchTime.now().uptimeNanoseconds
        let l = parameters.sequenceLength
        let windows = (0..<parameters.batchSize).map { _ -> [Int] in
            let start = rng.nextInt(below: trainTokens.count - l)
            return Array(trainTokens[start...(start + l)])
        }
        let value: Float
        if group.isDistributed {
            // This rank's contiguous slice of the windows; equal lengths, so its mean counts by
            // its share of them, and the summed gradients are the whole batch's mean's.
            let mine = group.slice(of: windows.count)
            let (lo, hi) = (mine.lowerBound, mine.upperBound)
            var local: Float = 0
            if lo < hi {
                let loss = self.loss(windows: Array(windows[lo..<hi]))
                let share = Float(hi - lo) / Float(windows.count)
                local = loss.item * share
                loss.scale(share).backward()
            }
            let tensors = named.map(\.tensor)
            value = group.sumGradients(of: tensors, loss: local)
            guard value.isFinite else {
                for t in tensors { t.grad = nil }
                throw PretrainError.nonFiniteLoss(step: step + 1, loss: value)
            }
        } else {
            let loss = self.loss(windows: windows)
            value = loss.item
            guard value.isFinite else { throw PretrainError.nonFiniteLoss(step: step + 1, loss: value) }
            loss.backward()
        }
        let (rate, norm) = update.apply(to: named.map(\.tensor), step: step)
        step += 1
        losses.append(value)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return PretrainStepReport(step: step, loss: value, learningRate: rate, gradientNorm: norm ?? 0,
                                  tokensPerSecond: Double(parameters.batchSize * l) / max(seconds, 1e-9))
    }

    /// Mean next-token loss over consecutive windows of the held-out tokens (at most `maxWindows`);
    /// nil when nothing is held out.
    public func validationLoss(maxWindows: Int = 32) -> Float? {
        let l = parameters.sequenceLength
        var windows: [[Int]] = []
        var start = 0
        while start + l < validTokens.count && windows.count < maxWindows {
            windows.append(Array(validTokens[start...(start + l)]))
            start += l
        }
        if windows.isEmpty && validTokens.count >= 2 { windows = [validTokens] }
        guard !windows.isEmpty else { return nil }
        return withNoGrad {
            var total: Float = 0
            for chunk in stride(from: 0, to: windows.count, by: max(1, parameters.batchSize)) {
                let part = Array(windows[chunk..<min(chunk + parameters.batchSize, windows.count)])
                total += loss(windows: part).item * Float(part.count)
            }
            return total / Float(windows.count)
        }
    }

    /// Writes `config.json` (Hugging Face keys plus `architectures` / `model_type`, so
    /// transformers loads it) atomically.
    func writeConfig() throws {
        let url = folder.appendingPathComponent("config.json")
        do {
            let encoded = try JSONEncoder().encode(model.configuration)
            guard var object = try JSONSerialization.jsonObject(with: encoded) as? [String: Any] else {
                throw PretrainError.unwritableOutput(path: url.path, reason: "the configuration did not encode to an object")
            }
            object["architectures"] = ["LlamaForCausalLM"]
            object["model_type"] = "llama"
            object["attention_bias"] = false
            object["mlp_bias"] = false
            object["torch_dtype"] = parameters.dtype == .bf16 ? "bfloat16" : "float32"
            object["initializer_range"] = Double("\(parameters.initStd)") ?? 0.02
            object["use_cache"] = true
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            try (data + Data("\n".utf8)).write(to: url, options: .atomic)
        } catch let error as PretrainError {
            throw error
        } catch {
            throw PretrainError.unwritableOutput(path: url.path, reason: error.localizedDescription)
        }
    }

    /// Writes (or removes) `folder/added_tokens.json` for `tokenizer`'s added tokens.
    static func writeAddedTokens(_ tokenizer: SentencePieceTokenizer, folder: URL) throws {
        let url = folder.appendingPathComponent(SentencePieceTokenizer.addedTokensFile)
        if let data = try tokenizer.addedTokensJSON() {
            try data.write(to: url, options: .atomic)
        } else if FileManager.default.fileExists(atPath: url.path) {
            try FileManager.default.removeItem(at: url)
        }
    }

    /// Writes model.safetensors (as `parameters.dtype`) atomically.
    public func save() throws {
        var writer = SafeTensorsWriter(metadata: [("format", "pt")])
        for (name, tensor) in named { writer.add(name, tensor, as: parameters.dtype.safetensors) }
        do {
            try writer.write(to: folder.appendingPathComponent("model.safetensors"))
        } catch {
            throw PretrainError.unwritableOutput(path: folder.appendingPathComponent("model.safetensors").path,
                                                 reason: error.localizedDescription)
        }
    }

    /// Runs the remaining steps, evaluating and checkpointing as configured, and writes the final
    /// folder and `pretrain.json`.
    /// - Parameter onEvent: receives progress; return false to stop early (the folder is saved).
    /// - Throws: `PretrainError` (non-finite loss: the last checkpoint is kept).
    @discardableResult
    public func run(onEvent: (PretrainEvent) -> Bool = { _ in true }) throws -> PretrainSummary {
        let started = Date()
        var keepGoing = onEvent(.prepared(trainTokens: trainTokens.count, validTokens: validTokens.count,
                                          documents: documentCount, parameters: parameterCount,
                                          vocabulary: model.configuration.vocabularySize))
        while keepGoing && step < parameters.steps {
            let report = try trainStep()
            keepGoing = onEvent(.step(report))
            if parameters.evalEvery > 0 && step % parameters.evalEvery == 0 && step < parameters.steps,
               let v = validationLoss() {
                keepGoing = onEvent(.evaluation(step: step, loss: v)) && keepGoing
            }
            if step % parameters.checkpointEvery == 0 && step < parameters.steps {
                if writes { try save() }
                keepGoing = onEvent(.checkpoint(step: step)) && keepGoing
            }
            // Under MPI a stop is agreed by every rank, so all leave after the same step.
            keepGoing = !group.any(!keepGoing)
        }
        let valid = validationLoss()
        if let valid { _ = onEvent(.evaluation(step: step, loss: valid)) }
        let tail0 = losses.suffix(10)
        guard writes else {
            return PretrainSummary(steps: step, firstLoss: losses.first ?? .nan,
                                   finalLoss: tail0.isEmpty ? .nan : tail0.reduce(0, +) / Float(tail0.count), validLoss: valid,
                                   trainTokens: trainTokens.count, seconds: Date().timeIntervalSince(started), parameters: parameters,
                                   initFrom: initFrom?.path)
        }
        try save()
        let tail = losses.suffix(10)
        let summary = PretrainSummary(
            steps: step, firstLoss: losses.first ?? .nan,
            finalLoss: tail.isEmpty ? .nan : tail.reduce(0, +) / Float(tail.count), validLoss: valid,
            trainTokens: trainTokens.count, seconds: Date().timeIntervalSince(started), parameters: parameters,
            initFrom: initFrom?.path)
        let url = folder.appendingPathComponent("pretrain.json")
        do {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(summary).write(to: url, options: .atomic)
        } catch {
            throw PretrainError.unwritableOutput(path: url.path, reason: error.localizedDescription)
        }
        _ = onEvent(.checkpoint(step: step))
        return summary
    }
}
