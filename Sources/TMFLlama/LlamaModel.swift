import Foundation
import TMFCheckpoint
import TMFTensor

/// What a forward pass feeds the decoder.
public enum LlamaInput {
    /// Token ids, [B][T] (all rows the same length; left-pad with any id and mask it).
    case tokens([[Int]])
    /// Input embeddings (B, T, hidden), e.g. token embeddings with some rows replaced by adaptor
    /// outputs. Gradients flow back into it when it requires grad.
    case embeddings(Tensor)
}

/// Which positions get vocabulary logits (the LM head is the largest matmul of a small model:
/// computing it only where needed matters).
public enum LogitsSelection: Sendable, Equatable {
    /// Every position: (B, T, vocab).
    case all
    /// The last position of every sequence: (B, vocab).
    case last
    /// Flat positions b·T + t: (rows.count, vocab).
    case rows([Int])
    /// No logits: the final-normed hidden states (B, T, hidden).
    case hiddenStates
}

/// A Llama-2-architecture decoder-only language model with weights under Hugging Face names.
///
/// The base weights are frozen (no gradients) and held once; adapters (LoRA) attach to the
/// projections through `LlamaLinear.adapter`. Inputs use PyTorch's (batch, time, channel)
/// order; attention works on the projections' own (B, T, heads · headDim) layout.
public final class LlamaModel: @unchecked Sendable {
    public let configuration: LlamaConfiguration
    /// model.embed_tokens.weight (vocab, hidden)
    public let embedTokens: Tensor
    /// model.layers.N
    public let layers: [LlamaDecoderLayer]
    /// model.norm.weight (hidden)
    public let norm: LlamaRMSNorm
    /// lm_head.weight (vocab, hidden); the same tensor as `embedTokens` when tied.
    public let lmHead: Tensor
    public let rope: RotaryEmbedding

    /// A model with zero weights (norms one) of the given shape; fill it with `load` or `randomize`.
    public init(configuration c: LlamaConfiguration) {
        configuration = c
        embedTokens = Tensor(zeros: [c.vocabularySize, c.hiddenSize])
        layers = (0..<c.hiddenLayers).map { _ in LlamaDecoderLayer(c) }
        norm = LlamaRMSNorm(key: "model.norm", dim: c.hiddenSize, eps: c.rmsNormEps)
        lmHead = c.tieWordEmbeddings ? embedTokens : Tensor(zeros: [c.vocabularySize, c.hiddenSize])
        rope = RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta)
    }

    /// Loads config.json and the weights (model.safetensors or a sharded index) of a Hugging Face
    /// Llama folder. F32, F16 and BF16 tensors are converted to Float32.
    ///
    /// - Throws: `LlamaError` for a missing or invalid config.json; `CheckpointError` for a
    ///   missing checkpoint or shard, unreadable files, and (in one `.keyMismatch`) every
    ///   missing, unexpected or wrongly shaped tensor.
    public static func load(directory: URL) throws -> LlamaModel {
        let configuration = try LlamaConfiguration.load(directory: directory)
        let folder = try CheckpointFolder(directory: directory)
        let model = LlamaModel(configuration: configuration)
        var allowed: [KeyPattern] = (0..<configuration.hiddenLayers).map {
            .exact("model.layers.\($0).self_attn.rotary_emb.inv_freq")
        }
        if configuration.tieWordEmbeddings { allowed.append(.exact("lm_head.weight")) }
        try loadStrict(model.namedWeights, from: folder, allowUnexpected: allowed)
        return model
    }

    /// Every weight by its Hugging Face name (the tied lm_head appears once, as embed_tokens).
    public var namedWeights: [String: Tensor] {
        var out: [String: Tensor] = ["model.embed_tokens.weight": embedTokens, "model.norm.weight": norm.weight]
        if !configuration.tieWordEmbeddings { out["lm_head.weight"] = lmHead }
        for (i, layer) in layers.enumerated() {
            let p = "model.layers.\(i)."
            for l in layer.linears { out[p + l.key + ".weight"] = l.weight }
            out[p + "input_layernorm.weight"] = layer.inputLayerNorm.weight
            out[p + "post_attention_layernorm.weight"] = layer.postAttentionLayerNorm.weight
        }
        return out
    }

    /// Fills the weights with seeded random values (normal, std `std`; norms 1) — for benchmarks
    /// and synthetic tests.
    public func randomize(seed: UInt64, std: Float = 0.02) {
        var rng = SeededRNG(seed: seed)
        for name in namedWeights.keys.sorted() {
            let w = namedWeights[name]!
            if name.hasSuffix("norm.weight") { for i in 0..<w.count { w.pointer[i] = 1 } }
            else { for i in 0..<w.count { w.pointer[i] = std * rng.nextNormal() } }
        }
    }

    /// Token embeddings of `tokens` [B][T]: (B, T, hidden). No gradient (the table is frozen).
    public func embed(_ tokens: [[Int]]) -> Tensor {
        let b = tokens.count, t = tokens.first?.count ?? 0
        precondition(tokens.allSatisfy { $0.count == t }, "token rows must have equal length (left-pad them)")
        let v = configuration.vocabularySize
        let flat = tokens.flatMap { $0 }
        precondition(flat.allSatisfy { $0 >= 0 && $0 < v }, "token id outside the vocabulary 0..<\(v)")
        return withNoGrad { embedTokens.gatherRows(flat) }.reshaped([b, t, configuration.hiddenSize])
    }

    /// Transformers' positions for a left-padded batch: each real token's index among the real
    /// tokens of its row; padding gets 1. Flat [B·T].
    public static func positions(for mask: [[Bool]]) -> [Int] {
        mask.flatMap { row -> [Int] in
            var n = 0
            return row.map { visible in
                if visible { n += 1; return n - 1 }
                return 1
            }
        }
    }

    /// The forward pass.
    ///
    /// - Parameters:
    ///   - input: token ids [B][T] or embeddings (B, T, hidden).
    ///   - attentionMask: [B][T], false for padding (left padding). nil: all real.
    ///   - positions: rotary positions [B][T]; default from the mask (see `positions(for:)`), or
    ///     continuing each sequence of `cache`.
    ///   - logits: which positions get logits (see `LogitsSelection`).
    ///   - cache: a KV cache to append to and attend over (decoding); nil for a full pass.
    ///   - training: enables adapter dropout.
    /// - Returns: logits (B, T, vocab), (B, vocab) or (rows, vocab), or hidden states (B, T, hidden).
    ///   The tape is recorded when gradients are enabled and an input or adapter requires them.
    public func callAsFunction(_ input: LlamaInput, attentionMask: [[Bool]]? = nil, positions: [[Int]]? = nil,
                               logits selection: LogitsSelection = .all, cache: KVCache? = nil,
                               training: Bool = false) -> Tensor {
        let c = configuration
        var x: Tensor                                                   // (B, T, hidden)
        switch input {
        case let .tokens(ids): x = embed(ids)
        case let .embeddings(e):
            precondition(e.rank == 3 && e.shape[2] == c.hiddenSize, "embeddings must be (B, T, \(c.hiddenSize)), got \(e.shape)")
            x = e
        }
        let b = x.shape[0], t = x.shape[1]
        if let m = attentionMask { precondition(m.count == b && m.allSatisfy { $0.count == t }, "attentionMask must be [\(b)][\(t)]") }
        let mask = attentionMask ?? Array(repeating: Array(repeating: true, count: t), count: b)
        var flatPositions: [Int]
        if let cache {
            flatPositions = cache.beginAppend(mask)
        } else {
            flatPositions = attentionMask.map(Self.positions(for:)) ?? (0..<b).flatMap { _ in Array(0..<t) }
        }
        if let positions {
            precondition(positions.count == b && positions.allSatisfy { $0.count == t }, "positions must be [\(b)][\(t)]")
            flatPositions = positions.flatMap { $0 }
        }
        let keyMask = attentionMask.flatMap { m in m.allSatisfy { $0.allSatisfy { $0 } } ? nil : m }
        for (i, layer) in layers.enumerated() {
            x = layer(x, rope: rope, positions: flatPositions, keyMask: keyMask, cache: cache, layer: i,
                      training: training)                               // (B, T, hidden)
        }
        cache?.endAppend(t)
        switch selection {
        case .hiddenStates:
            return norm(x)
        case .all:
            return Tensor.linear(norm(x), weight: lmHead)               // (B, T, vocab)
        case .last:
            let h = norm(x.selectingRows((0..<b).map { $0 * t + t - 1 }))  // (B, hidden)
            return logits(of: h)                                        // (B, vocab)
        case let .rows(rows):
            return Tensor.linear(norm(x.selectingRows(rows)), weight: lmHead)  // (rows, vocab)
        }
    }

    /// The LM head on hidden states (N, hidden): (N, vocab); one row uses a matrix-vector product.
    func logits(of h: Tensor) -> Tensor {
        if h.shape[0] == 1 && !(GradMode.isEnabled && h.requiresGrad) {
            let out = Tensor(uninitialized: [1, configuration.vocabularySize])
            BLAS.sgemv(trans: false, m: configuration.vocabularySize, n: configuration.hiddenSize,
                       a: lmHead.pointer, lda: configuration.hiddenSize, x: h.pointer, beta: 0, y: out.pointer)
            return out
        }
        return Tensor.linear(h, weight: lmHead)
    }

    /// Parameters of all attached adapters.
    public var adapterParameters: [Tensor] {
        layers.flatMap { $0.linears.flatMap { $0.adapter?.trainableParameters ?? [] } }
    }
}
