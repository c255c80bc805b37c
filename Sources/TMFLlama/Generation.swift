import Foundation
import TMFTensor

/// Settings of `LlamaModel.generate`.
public struct GenerationParameters: Sendable {
    /// At most this many new tokens per sequence.
    public var maxTokens: Int
    /// 0 is greedy (argmax); otherwise logits are divided by it before sampling.
    public var temperature: Float
    /// Nucleus sampling: sample among the most likely tokens whose probabilities sum to at least
    /// `topP` (1 = the whole vocabulary). Ignored when greedy.
    public var topP: Float
    /// Seed of the sampling generator (`SeededRNG`).
    public var seed: UInt64
    /// Generation of a sequence ends when it produces one of these (not included in the output).
    public var stopTokens: Set<Int>

    public init(maxTokens: Int = 32, temperature: Float = 0, topP: Float = 1, seed: UInt64 = 0,
                stopTokens: Set<Int> = []) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.seed = seed
        self.stopTokens = stopTokens
    }
}

/// What a per-token callback wants.
public enum GenerationAction: Sendable {
    case `continue`
    /// Stop this sequence (e.g. a stop string appeared); the token just produced is kept.
    case stop
}

/// Edits one sequence's next-token logits in place before the choice (constrained decoding,
/// banned ids: set them to −∞). Arguments: sequence index, tokens generated so far, logits [vocab].
public typealias LogitsProcessor = (_ sequence: Int, _ generated: [Int], _ logits: UnsafeMutableBufferPointer<Float>) -> Void

/// Called after each chosen token: sequence index, the token, all tokens generated so far.
public typealias TokenCallback = (_ sequence: Int, _ token: Int, _ generated: [Int]) -> GenerationAction

extension LlamaModel {
    /// Generates continuations of a batch of prompts with a KV cache (prefill, then one token at a
    /// time for every unfinished sequence).
    ///
    /// - Parameters:
    ///   - prompts: token ids per sequence (any lengths; left-padded internally).
    ///   - parameters: length, temperature / top-p, seed, stop tokens.
    ///   - logitsProcessor: optional hook editing each sequence's logits before the choice.
    ///   - onToken: optional callback per chosen token; `.stop` ends that sequence.
    /// - Returns: the new tokens per sequence (stop tokens excluded).
    public func generate(prompts: [[Int]], parameters: GenerationParameters = GenerationParameters(),
                         logitsProcessor: LogitsProcessor? = nil, onToken: TokenCallback? = nil) -> [[Int]] {
        precondition(!prompts.isEmpty && prompts.allSatisfy { !$0.isEmpty }, "generate needs non-empty prompts")
        let t = prompts.map(\.count).max()!
        let ids = prompts.map { Array(repeating: 0, count: t - $0.count) + $0 }
        let mask = prompts.map { Array(repeating: false, count: t - $0.count) + Array(repeating: true, count: $0.count) }
        return generate(prompt: .tokens(ids), attentionMask: mask, parameters: parameters,
                        logitsProcessor: logitsProcessor, onToken: onToken)
    }

    /// Generates from a left-padded prompt given as tokens or embeddings (B, T, hidden) — the
    /// latter for prompts whose modality-token rows were replaced by adaptor outputs.
    public func generate(prompt: LlamaInput, attentionMask: [[Bool]]? = nil,
                         parameters: GenerationParameters = GenerationParameters(),
                         logitsProcessor: LogitsProcessor? = nil, onToken: TokenCallback? = nil) -> [[Int]] {
        withNoGrad {
            let (b, t): (Int, Int)
            switch prompt {
            case let .tokens(ids): (b, t) = (ids.count, ids.first?.count ?? 0)
            case let .embeddings(e): (b, t) = (e.shape[0], e.shape[1])
            }
            let vocab = configuration.vocabularySize
            let cache = KVCache(configuration: configuration, batchSize: b, capacity: t + max(parameters.maxTokens, 1))
            var rng = SeededRNG(seed: parameters.seed)
            var generated = Array(repeating: [Int](), count: b)
            var done = Array(repeating: parameters.maxTokens <= 0, count: b)
            var logits = self(prompt, attentionMask: attentionMask, logits: .last, cache: cache)  // (B, vocab)
            var scratch = [Float](repeating: 0, count: vocab)
            while !done.allSatisfy({ $0 }) {
                var next = [Int](repeating: 0, count: b)
                for s in 0..<b where !done[s] {
                    let row = UnsafeMutableBufferPointer(start: logits.pointer + s * vocab, count: vocab)
                    logitsProcessor?(s, generated[s], row)
                    let token = Self.choose(row, parameters: parameters, rng: &rng, scratch: &scratch)
                    next[s] = token
                    if parameters.stopTokens.contains(token) { done[s] = true; continue }
                    generated[s].append(token)
                    if onToken?(s, token, generated[s]) == .stop || generated[s].count >= parameters.maxTokens {
                        done[s] = true
                    }
                }
                if done.allSatisfy({ $0 }) || cache.length >= cache.capacity { break }
                // Finished sequences keep decoding a dummy token whose result is ignored.
                logits = self(.tokens(next.map { [$0] }), attentionMask: Array(repeating: [true], count: b),
                              logits: .last, cache: cache)
            }
            return generated
        }
    }

    /// Argmax (temperature 0) or a temperature / top-p sample of one logits row.
    static func choose(_ row: UnsafeMutableBufferPointer<Float>, parameters: GenerationParameters,
                       rng: inout SeededRNG, scratch: inout [Float]) -> Int {
        if parameters.temperature <= 0 {
            var best = 0
            for i in 1..<row.count where row[i] > row[best] { best = i }
            return best
        }
        let inv = 1 / parameters.temperature
        var m = -Float.infinity
        for v in row where v > m { m = v }
        var total: Float = 0
        for i in 0..<row.count {
            let e = row[i] == -.infinity ? 0 : Foundation.exp((row[i] - m) * inv)
            scratch[i] = e
            total += e
        }
        var candidates = Array(0..<row.count)
        if parameters.topP < 1 {
            candidates.sort { scratch[$0] > scratch[$1] }
            var kept = 0
            var mass: Float = 0
            for i in candidates {
                mass += scratch[i]
                kept += 1
                if mass >= parameters.topP * total { break }
            }
            candidates.removeSubrange(kept...)
            total = candidates.reduce(0) { $0 + scratch[$1] }
        }
        var u = rng.nextFloat() * total
        for i in candidates {
            u -= scratch[i]
            if u < 0 { return i }
        }
        return candidates.last { scratch[$0] > 0 } ?? candidates[0]
    }
}
