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

    /// A model with zero weights (norms one) of the given shape; fill it with `randomize`.
    public convenience init(configuration c: LlamaConfiguration) {
        try! self.init(configuration: c) { name, shape in
            name.hasSuffix("norm.weight") ? Tensor(repeating: 1, shape: shape) : Tensor(zeros: shape)
        }
    }

    init(configuration c: LlamaConfiguration, _ provide: WeightProvider) throws {
        configuration = c
        embedTokens = try provide("model.embed_tokens.weight", [c.vocabularySize, c.hiddenSize])
        layers = try (0..<c.hiddenLayers).map { try LlamaDecoderLayer(c, prefix: "model.layers.\($0).", provide) }
        norm = try LlamaRMSNorm(key: "norm", prefix: "model.", dim: c.hiddenSize, eps: c.rmsNormEps, provide)
        lmHead = c.tieWordEmbeddings ? embedTokens : try provide("lm_head.weight", [c.vocabularySize, c.hiddenSize])
        rope = RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta)
    }

    /// Every weight name of configuration `c` with its shape (what a checkpoint must hold).
    public static func expectedWeights(_ c: LlamaConfiguration) -> [String: [Int]] {
        let d = c.hiddenSize, q = c.attentionHeads * c.headDim, kv = c.kvHeads * c.headDim, f = c.intermediateSize
        var shapes: [String: [Int]] = ["model.embed_tokens.weight": [c.vocabularySize, d], "model.norm.weight": [d]]
        if !c.tieWordEmbeddings { shapes["lm_head.weight"] = [c.vocabularySize, d] }
        for i in 0..<c.hiddenLayers {
            let p = "model.layers.\(i)."
            for (key, shape) in [("self_attn.q_proj", [q, d]), ("self_attn.k_proj", [kv, d]), ("self_attn.v_proj", [kv, d]),
                                 ("self_attn.o_proj", [d, q]), ("mlp.gate_proj", [f, d]), ("mlp.up_proj", [f, d]),
                                 ("mlp.down_proj", [d, f]), ("input_layernorm", [d]), ("post_attention_layernorm", [d])] {
                shapes[p + key + ".weight"] = shape
            }
        }
        return shapes
    }

    /// Loads config.json and the weights (model.safetensors or a sharded index) of a Hugging Face
    /// Llama folder. F32 tensors alias the memory-mapped file where `SafeTensorsFile` allows it
    /// (no copy); F16, BF16 and unaligned F32 tensors are converted to Float32 once.
    ///
    /// - Throws: `LlamaError` for a missing or invalid config.json; `CheckpointError` for a
    ///   missing checkpoint or shard, unreadable files, and (in one `.keyMismatch`) every
    ///   missing, unexpected or wrongly shaped tensor; `.cannotConvertToFloat32` for integer data.
    public static func load(directory: URL) throws -> LlamaModel {
        let configuration = try LlamaConfiguration.load(directory: directory)
        let folder = try CheckpointFolder(directory: directory)
        let expected = expectedWeights(configuration)
        var ignorable: Set<String> = Set((0..<configuration.hiddenLayers).map { "model.layers.\($0).self_attn.rotary_emb.inv_freq" })
        if configuration.tieWordEmbeddings { ignorable.insert("lm_head.weight") }
        var unexpected: [String] = [], wrongShape: [ShapeMismatch] = []
        for key in folder.tensorNames {
            guard let shape = expected[key] else {
                if !ignorable.contains(key) { unexpected.append(key) }
                continue
            }
            let info = try folder.info(named: key)
            if info.shape != shape { wrongShape.append(ShapeMismatch(key: key, checkpointShape: info.shape, modelShape: shape)) }
        }
        let missing = expected.keys.filter { !folder.contains($0) }
        let mismatch = LoadMismatch(source: folder.sourceDescription, missing: missing.sorted(), unexpected: unexpected.sorted(),
                                    wrongShape: wrongShape.sorted { $0.key < $1.key }, duplicates: [])
        if !mismatch.isEmpty { throw CheckpointError.keyMismatch(mismatch) }
        for key in expected.keys {
            let info = try folder.info(named: key)
            if !info.dtype.convertsToFloat32 {
                throw CheckpointError.cannotConvertToFloat32(path: try folder.file(containing: key).url.path, tensor: key, dtype: info.dtype)
            }
        }
        return try LlamaModel(configuration: configuration) { name, _ in try folder.tensor(named: name) }
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
