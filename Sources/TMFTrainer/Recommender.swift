import Foundation
import TMFCheckpoint
import TMFData
import TMFFusion
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTokenizer

/// Per-item feature tables the fusion module reads (frozen): CLIP image and text embeddings
/// and MBHT item embeddings, plus MBHT's behavior-type embeddings. Missing modalities are zero
/// rows (an item without an image has a zero image row).
public struct ItemFeatures: @unchecked Sendable {
    /// [items, d_v]
    public var image: Tensor
    /// [items, d_v]
    public var text: Tensor
    /// [items, d_g]
    public var graph: Tensor
    /// [behaviors, d_g]
    public var behaviors: Tensor

    public init(image: Tensor, text: Tensor, graph: Tensor, behaviors: Tensor) {
        precondition(image.shape == text.shape && image.shape[0] == graph.shape[0] && graph.shape[1] == behaviors.shape[1],
                     "item feature tables disagree: \(image.shape) \(text.shape) \(graph.shape) \(behaviors.shape)")
        self.image = image; self.text = text; self.graph = graph; self.behaviors = behaviors
    }
}

/// A batch of encoded prompts laid out for the LLM: left-padded, with the flat row of every
/// modality token.
struct PromptBatch {
    let prompts: [EncodedPrompt]
    /// Padded length T.
    let length: Int
    /// [B][T] token ids, padding and special tokens replaced by 0 (their rows are masked or replaced).
    let tokens: [[Int]]
    /// [B][T], false on padding.
    let mask: [[Bool]]
    /// Left padding of each row.
    let offsets: [Int]

    init(_ prompts: [EncodedPrompt], vocabularySize: Int, upTo: (EncodedPrompt) -> Int) {
        self.prompts = prompts
        let lengths = prompts.map(upTo)
        let t = lengths.max() ?? 0
        length = t
        offsets = lengths.map { t - $0 }
        tokens = zip(prompts, lengths).map { p, n in
            Array(repeating: 0, count: t - n) + p.tokens[..<n].map { $0 < vocabularySize ? $0 : 0 }
        }
        mask = lengths.map { Array(repeating: false, count: t - $0) + Array(repeating: true, count: $0) }
    }

    /// Flat index b·T + t of position `p` of prompt `b`.
    func row(_ b: Int, _ p: Int) -> Int { b * length + offsets[b] + p }
}

/// The TMF model at run time: a frozen Llama with LoRA adapters, the fusion module and adaptors,
/// the item feature tables, and the tokenizer. Builds the hybrid prompt's input embeddings
/// (token embeddings with modality-token rows replaced by adaptor outputs, paper §4.2), computes
/// the answer-token loss, and generates answers.
public final class Recommender: @unchecked Sendable {
    public let llm: LlamaModel
    public let lora: LoRAModel
    public let fusion: FusionModule
    public let features: ItemFeatures
    public let encoder: HybridPromptEncoder
    public let modalities: Modalities

    public init(llm: LlamaModel, lora: LoRAModel, fusion: FusionModule, features: ItemFeatures,
                encoder: HybridPromptEncoder, modalities: Modalities) {
        self.llm = llm; self.lora = lora; self.fusion = fusion; self.features = features
        self.encoder = encoder; self.modalities = modalities
    }

    var depth: FusionDepth { modalities == .full ? .full : .amsa }

    /// Trainable tensors of each parameter group.
    public func parameters(of group: ParameterGroup) -> [(String, Tensor)] {
        switch group {
        case .lora: return lora.peftNamedParameters.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        case .behaviorAdaptor: return fusion.behaviorAdaptorParameters
        case .fusion: return fusion.fusionParameters
        case .itemAdaptor: return fusion.itemAdaptorParameters
        }
    }

    /// Input embeddings (B, T, hidden) of a batch at `level`: token embeddings, with `[MT_b]` rows
    /// (medium, hard) and `[MT_i]` rows (hard) replaced by adaptor outputs. For the hard level
    /// each prompt's item tokens are fused together (AMSA and CMA run over the prompt's items).
    func inputEmbeddings(_ batch: PromptBatch, level: TaskLevel) -> Tensor {
        let d = llm.configuration.hiddenSize
        let base = llm.embed(batch.tokens).reshaped([batch.prompts.count * batch.length, d])  // (B·T, hidden)
        var rows: [Int] = []
        var values: [Tensor] = []
        if level != .easy {
            var behaviorIndex: [Int] = []
            for (b, p) in batch.prompts.enumerated() {
                for s in p.behaviorSlots { rows.append(batch.row(b, s.position)); behaviorIndex.append(s.behavior) }
            }
            if !behaviorIndex.isEmpty {
                let table = fusion.behaviorTokens(features.behaviors)                         // (behaviors, hidden)
                values.append(table.gatherRows(behaviorIndex))                                // (slots, hidden)
            }
        }
        if level == .hard {
            for (b, p) in batch.prompts.enumerated() where !p.itemSlots.isEmpty {
                let items = p.itemSlots.map(\.item)
                let tokens = fusion.itemTokens(image: features.image.gatherRows(items), text: features.text.gatherRows(items),
                                               graph: features.graph.gatherRows(items), depth: depth)  // (slots, hidden)
                rows += p.itemSlots.map { batch.row(b, $0.position) }
                values.append(tokens)
            }
        }
        let x = values.isEmpty ? base : base.replacingRows(rows, with: values.count == 1 ? values[0] : Tensor.concat(values, axis: 0))
        return x.reshaped([batch.prompts.count, batch.length, d])
    }

    /// Mean next-token cross-entropy over the answer tokens of a batch of prompts encoded with
    /// their answers (Eq. 9-11), and the number of answer tokens.
    public func loss(_ prompts: [EncodedPrompt], level: TaskLevel) -> (loss: Tensor, tokens: Int) {
        let (loss, tokens, _) = losses(prompts, level: level, choices: [])
        return (loss, tokens)
    }

    /// `loss`, and from the same forward pass the listwise ranking term of the prompts with a
    /// `choice`: the mean cross-entropy of a softmax over their candidates' answer tokens at the
    /// answer's first position (nil when no prompt has one).
    /// - Parameter choices: empty, or one per prompt.
    public func losses(_ prompts: [EncodedPrompt], level: TaskLevel,
                       choices: [CandidateChoice?]) -> (loss: Tensor, tokens: Int, ranking: Tensor?) {
        precondition(choices.isEmpty || choices.count == prompts.count, "one choice per prompt")
        let vocabulary = llm.configuration.vocabularySize
        let batch = PromptBatch(prompts, vocabularySize: vocabulary) { $0.tokens.count }
        var rows: [Int] = [], targets: [Int] = []
        var picks: [Int] = [], truths: [Int] = [], width = 0  // flat (row, token) indices of the ranked logits
        for (b, p) in prompts.enumerated() {
            if let choice = choices.isEmpty ? nil : choices[b] {
                // The first answer token is predicted at the last prompt position, the next row.
                precondition(width == 0 || width == choice.tokens.count, "equal candidate counts")
                width = choice.tokens.count
                picks += choice.tokens.map { rows.count * vocabulary + $0 }
                truths.append(choice.truth)
            }
            for (t, label) in p.labels.enumerated() where label != -100 {
                rows.append(batch.row(b, t)); targets.append(label)
            }
        }
        let x = inputEmbeddings(batch, level: level)
        let logits = llm(.embeddings(x), attentionMask: batch.mask, logits: .rows(rows), training: true)  // (rows, vocab)
        let answer = Tensor.crossEntropy(logits, targets: targets)
        guard !truths.isEmpty else { return (answer, targets.count, nil) }
        let ranked = logits.reshaped([rows.count * vocabulary, 1]).gatherRows(picks).reshaped([truths.count, width])  // (ranked, candidates)
        return (answer, targets.count, Tensor.crossEntropy(ranked, targets: truths))
    }

    /// Greedy answers (token ids, EOS and newline excluded) for prompts encoded without answers.
    /// With `constraints`, each sequence may only spell one of its allowed token sequences
    /// (candidate titles followed by EOS).
    public func generate(_ prompts: [EncodedPrompt], level: TaskLevel, maxTokens: Int = 32,
                         constraints: [TokenTrie]? = nil) -> [[Int]] {
        withNoGrad {
            let batch = PromptBatch(prompts, vocabularySize: llm.configuration.vocabularySize) { $0.promptLength }
            let x = inputEmbeddings(batch, level: level)
            var stops: Set<Int> = [encoder.tokenizer.eosID]
            if let nl = encoder.tokenizer.pieceToId("<0x0A>") { stops.insert(nl) }
            // A constrained answer may be as long as its longest candidate title.
            let longest = constraints.map { $0.map(\.longest).max() ?? 0 } ?? 0
            let params = GenerationParameters(maxTokens: max(maxTokens, longest + 1), temperature: 0, stopTokens: stops)
            let eos = encoder.tokenizer.eosID
            let processor: LogitsProcessor? = constraints.map { tries in
                { seq, generated, logits in
                    let allowed = tries[seq].next(after: generated, end: eos)
                    guard !allowed.isEmpty else { return }
                    for i in 0..<logits.count where !allowed.contains(i) { logits[i] = -.infinity }
                }
            }
            return llm.generate(prompt: .embeddings(x), attentionMask: batch.mask, parameters: params, logitsProcessor: processor)
        }
    }
}

/// A training prompt's candidates for the listwise ranking term: each candidate's one answer
/// token, and the index of the true item among them.
public struct CandidateChoice: Sendable, Equatable {
    public var tokens: [Int]
    public var truth: Int
    public init(tokens: [Int], truth: Int) { self.tokens = tokens; self.truth = truth }
}

/// How a candidate's answer log-likelihood becomes its ranking score.
public enum LengthNormalization: String, Codable, Sendable, CaseIterable {
    /// The total log-probability of the title's tokens and the end token (favours short titles).
    case sum
    /// The mean log-probability per token (title tokens + the end token).
    case mean
}

/// The answer log-likelihoods of one prompt's candidates, and (when a graph prior is used) MBHT's
/// scores of the same candidates.
public struct CandidateScores: Sendable, Equatable {
    /// Per candidate: Σ log p(token | prompt, earlier answer tokens) over the title's tokens and EOS.
    public var logLikelihoods: [Double]
    /// Per candidate: the number of scored tokens (title tokens + 1).
    public var tokenCounts: [Int]
    /// Per candidate: MBHT's score (its logit over items) given the user's history, or nil when
    /// the ranking uses no graph prior.
    public var graphScores: [Double]?

    public init(logLikelihoods: [Double], tokenCounts: [Int], graphScores: [Double]? = nil) {
        precondition(logLikelihoods.count == tokenCounts.count && (graphScores?.count ?? tokenCounts.count) == tokenCounts.count,
                     "one score per candidate")
        self.logLikelihoods = logLikelihoods; self.tokenCounts = tokenCounts; self.graphScores = graphScores
    }

    /// Ranking scores (higher is better): the LLM's answer log-likelihood under `normalization`,
    /// plus `graphWeight` × MBHT's log-softmax over the candidates. A product of experts, p_LLM ·
    /// p_MBHT^w: with w = 0 the LLM alone ranks; as w grows the LLM only breaks MBHT's near-ties.
    /// - Precondition: `graphScores` is set when `graphWeight` > 0.
    public func scores(_ normalization: LengthNormalization, graphWeight: Double = 0) -> [Double] {
        let llm: [Double]
        switch normalization {
        case .sum: llm = logLikelihoods
        case .mean: llm = zip(logLikelihoods, tokenCounts).map { $0 / Double($1) }
        }
        guard graphWeight != 0 else { return llm }
        guard let graph = graphScores else { preconditionFailure("a graph weight needs the candidates' graph scores") }
        return zip(llm, logSoftmax(graph)).map { $0 + graphWeight * $1 }
    }

    /// A softmax over the candidates of `scores(normalization, graphWeight:)`: what `tmf
    /// recommend` prints.
    public func probabilities(_ normalization: LengthNormalization, graphWeight: Double = 0) -> [Double] {
        logSoftmax(scores(normalization, graphWeight: graphWeight)).map { Foundation.exp($0) }
    }
}

/// log softmax of a short list in Float64.
func logSoftmax(_ s: [Double]) -> [Double] {
    let m = s.max() ?? 0
    let lse = m + Foundation.log(s.reduce(0) { $0 + Foundation.exp($1 - m) })
    return s.map { $0 - lse }
}

extension Recommender {
    /// Scores every candidate answer of each prompt by its log-likelihood after the prompt (the
    /// answer's tokens, then EOS, as in training). Each prompt is computed once (prefill into a KV
    /// cache); the cache is then replicated per candidate and all continuations run as one batch.
    ///
    /// - Parameters:
    ///   - prompts: prompts encoded without answers.
    ///   - answers: per prompt, each candidate's answer tokens (title tokens, no BOS, no EOS).
    ///   - level: the task level the prompts were built at.
    /// - Returns: one `CandidateScores` per prompt, candidates in the given order.
    public func scoreCandidates(_ prompts: [EncodedPrompt], answers: [[[Int]]], level: TaskLevel) -> [CandidateScores] {
        precondition(prompts.count == answers.count, "one candidate list per prompt")
        precondition(answers.allSatisfy { !$0.isEmpty }, "every prompt needs candidates")
        return withNoGrad {
            let vocab = llm.configuration.vocabularySize
            let eos = encoder.tokenizer.eosID
            let batch = PromptBatch(prompts, vocabularySize: vocab) { $0.promptLength }
            let cache = KVCache(configuration: llm.configuration, batchSize: prompts.count, capacity: batch.length)
            let last = llm(.embeddings(inputEmbeddings(batch, level: level)), attentionMask: batch.mask, logits: .last,
                           cache: cache).logSoftmax()                                     // (B, vocab) log-probs
            // One continuation row per (prompt, candidate): the answer's tokens as inputs (the
            // first is predicted by the prompt's last position), right-padded; the logits at
            // input j predict token j + 1, and the last real input predicts EOS.
            var owner: [Int] = [], targets: [[Int]] = []
            for (b, list) in answers.enumerated() {
                for a in list { owner.append(b); targets.append(a + [eos]) }
            }
            let inputLength = targets.map { $0.count - 1 }.max()!
            var sums = targets.indices.map { r in Double(last.pointer[owner[r] * vocab + targets[r][0]]) }
            if inputLength > 0 {
                let rows = cache.replicating(rows: owner, capacity: batch.length + inputLength)
                let inputs = targets.map { t in Array(t.dropLast()) + Array(repeating: 0, count: inputLength - (t.count - 1)) }
                var flat: [Int] = [], wanted: [(row: Int, token: Int)] = []
                for (r, t) in targets.enumerated() {
                    for j in 0..<(t.count - 1) { flat.append(r * inputLength + j); wanted.append((r, t[j + 1])) }
                }
                let logits = llm(.tokens(inputs), attentionMask: Array(repeating: Array(repeating: true, count: inputLength),
                                                                        count: targets.count),
                                 logits: .rows(flat), cache: rows).logSoftmax()         // (flat, vocab) log-probs
                for (i, w) in wanted.enumerated() { sums[w.row] += Double(logits.pointer[i * vocab + w.token]) }
            }
            var out: [CandidateScores] = []
            var r = 0
            for list in answers {
                out.append(CandidateScores(logLikelihoods: Array(sums[r..<(r + list.count)]),
                                           tokenCounts: list.map { $0.count + 1 }))
                r += list.count
            }
            return out
        }
    }
}

/// Token sequences a constrained decoder may spell (one per candidate title, each ending in the
/// end token), as a prefix trie.
public struct TokenTrie: Sendable {
    let sequences: [[Int]]

    /// - Parameter sequences: allowed token sequences (without the end token).
    public init(_ sequences: [[Int]]) { self.sequences = sequences }

    /// Length of the longest allowed sequence.
    public var longest: Int { sequences.map(\.count).max() ?? 0 }

    /// Tokens allowed after `prefix`: the next token of every sequence extending it, or `end`
    /// where a sequence is complete.
    public func next(after prefix: [Int], end: Int) -> Set<Int> {
        var out = Set<Int>()
        for s in sequences where s.count >= prefix.count && Array(s[..<prefix.count]) == prefix {
            out.insert(s.count == prefix.count ? end : s[prefix.count])
        }
        return out
    }
}
