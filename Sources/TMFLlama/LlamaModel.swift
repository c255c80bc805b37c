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
/// The base weights are frozen (no gradients) and held once, in Float32 or, for the matrices of
/// the projections, the embedding table and the LM head, in bf16 or f16 as the checkpoint stores
/// them (`load(directory:dtype:)`). Adapters (LoRA) attach to the projections through
/// `Linear.adapter`. Inputs use PyTorch's (batch, time, channel) order; attention works on the
/// projections' own (B, T, heads · headDim) layout.
public final class LlamaModel: Module, @unchecked Sendable {
    public let configuration: LlamaConfiguration
    /// model.embed_tokens (vocab, hidden)
    public let embedTokens: Embedding
    /// model.layers.N
    public let layers: [LlamaDecoderLayer]
    /// model.norm (hidden)
    public let norm: RMSNorm
    /// lm_head (vocab, hidden); over `embedTokens`' weight when tied.
    public let lmHead: Linear
    public let rope: RotaryEmbedding
    /// Keep only each decoder layer's input for the backward pass and recompute the layer's
    /// activations during it (`recomputed`, PyTorch's gradient checkpointing): one more forward
    /// pass of the layers for memory that no longer grows with the layer count. Off by default;
    /// `tmf train` turns it on for models of a billion weights or more. Needs adapters without
    /// dropout to give the exact gradients.
    public var recomputesActivations = false

    /// Models of at least this many weights recompute activations when `tmf train` fine-tunes
    /// them (a 7B model's activations for one 300-token prompt exceed 6 GB otherwise).
    public static let recomputationThreshold = 1_000_000_000

    /// Whether training should recompute activations: a model of `recomputationThreshold`
    /// weights or more (what `tmf train` and `tmf bench llama` set `recomputesActivations` to).
    public var isLargeForTraining: Bool { configuration.parameterCount >= Self.recomputationThreshold }

    /// A model with zero Float32 weights (norms one) of the given shape; fill it with `randomize`.
    public convenience init(configuration c: LlamaConfiguration) {
        try! self.init(configuration: c, WeightLoader { key, shape, _ in
            .float(key.hasSuffix("norm.weight") ? Tensor(repeating: 1, shape: shape) : Tensor(zeros: shape))
        })
    }

    /// Builds the model, asking `load` for every weight by its Hugging Face key.
    public init(configuration c: LlamaConfiguration, _ load: WeightLoader) throws {
        configuration = c
        embedTokens = try Embedding(count: c.vocabularySize, width: c.hiddenSize, load.scoped("model.embed_tokens"))
        layers = try (0..<c.hiddenLayers).map { try LlamaDecoderLayer(c, load.scoped("model.layers.\($0)")) }
        norm = try RMSNorm(dim: c.hiddenSize, eps: c.rmsNormEps, load.scoped("model.norm"))
        lmHead = c.tieWordEmbeddings ? Linear(weight: embedTokens.weight)
            : try Linear(inFeatures: c.hiddenSize, outFeatures: c.vocabularySize, load.scoped("lm_head"))
        rope = RotaryEmbedding(headDim: c.headDim, theta: c.ropeTheta)
    }

    /// In Hugging Face's state_dict order; the tied lm_head is not listed (it is embed_tokens).
    public var children: [(String, any Module)] {
        var out: [(String, any Module)] = [("model.embed_tokens", embedTokens)]
        out += layers.enumerated().map { ("model.layers.\($0.offset)", $0.element) }
        out.append(("model.norm", norm))
        if !configuration.tieWordEmbeddings { out.append(("lm_head", lmHead)) }
        return out
    }

    /// Every weight name of configuration `c` with its shape (what a checkpoint must hold), read
    /// off a meta model (no memory).
    public static func expectedWeights(_ c: LlamaConfiguration) -> [String: [Int]] {
        try! LlamaModel(configuration: c, .meta).weightShapes()
    }

    /// How the matrices are stored (the norms are always Float32).
    public var storageType: WeightStorageType { embedTokens.weight.storageType }

    /// Loads config.json and the weights (model.safetensors or a sharded index) of a Hugging Face
    /// Llama folder.
    ///
    /// - Parameter dtype: how to hold the matrices (projections, embedding table, LM head):
    ///   `.bf16` / `.f16` keep them in 16 bits, used in place in the memory-mapped file when the
    ///   checkpoint stores them so (no copy), converted once otherwise; `.f32` widens them (F32
    ///   tensors alias the mapping where `SafeTensorsFile` allows it). nil: the checkpoint's own
    ///   type (16-bit when every matrix is stored in the same 16-bit type, else Float32). Norm
    ///   weights are always Float32.
    /// - Throws: `LlamaError` for a missing or invalid config.json; `CheckpointError` for a
    ///   missing checkpoint or shard, unreadable files, and (in one `.keyMismatch`) every
    ///   missing, unexpected or wrongly shaped tensor; `.cannotConvertToFloat32` for integer data.
    public static func load(directory: URL, dtype: WeightStorageType? = nil) throws -> LlamaModel {
        let configuration = try LlamaConfiguration.load(directory: directory)
        let folder = try CheckpointFolder(directory: directory)
        let expected = expectedWeights(configuration)
        // Buffers older transformers saved, and a tied head's copy: present or not.
        var ignorable: [KeyPattern] = (0..<configuration.hiddenLayers).map { .exact("model.layers.\($0).self_attn.rotary_emb.inv_freq") }
        if configuration.tieWordEmbeddings { ignorable.append(.exact("lm_head.weight")) }
        try checkStrict(expected, in: folder, allowUnexpected: ignorable)
        let storage = try dtype ?? folder.matrixStorageType(of: expected.keys)
        return try LlamaModel(configuration: configuration, folder.weightLoader(dtype: storage))
    }

    /// A copy whose matrices are stored as `dtype` (rounded to nearest even; Float32 widens
    /// exactly), norms shared. For benchmarks and tests of the 16-bit paths.
    public func converted(to dtype: WeightStorageType) -> LlamaModel {
        let source = Dictionary(uniqueKeysWithValues: namedWeights())
        return try! LlamaModel(configuration: configuration, WeightLoader { key, _, role in
            let w = source[key]!
            guard role == .matrix else { return w }
            if let precision = dtype.halfPrecision {
                if case let .half(h) = w, h.precision == precision { return w }
                return .half(HalfTensor(rounding: w.widened(), to: precision))
            }
            return .float(w.widened())
        })
    }

    /// Every Float32 weight by its Hugging Face name (the tied lm_head appears once, as
    /// embed_tokens). Traps when the model holds 16-bit weights (see `storageType`).
    public var weightTensors: [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedWeights().map { ($0.0, $0.1.tensor) })
    }

    /// Fills the Float32 weights with seeded random values (normal, std `std`; norms 1) — for
    /// benchmarks and synthetic tests.
    public func randomize(seed: UInt64, std: Float = 0.02) {
        var rng = SeededRNG(seed: seed)
        let weights = weightTensors
        for name in weights.keys.sorted() {
            let w = weights[name]!
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
        return withNoGrad { embedTokens.rows(flat) }.reshaped([b, t, configuration.hiddenSize])
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
        let rope = self.rope
        for (i, layer) in layers.enumerated() {
            if recomputesActivations && cache == nil && GradMode.isEnabled {
                x = recomputed(x) { [flatPositions] h in
                    layer(h, rope: rope, positions: flatPositions, keyMask: keyMask, cache: nil, layer: i, training: training)
                }                                                       // (B, T, hidden)
            } else {
                x = layer(x, rope: rope, positions: flatPositions, keyMask: keyMask, cache: cache, layer: i,
                          training: training)                           // (B, T, hidden)
            }
        }
        cache?.endAppend(t)
        switch selection {
        case .hiddenStates:
            return norm(x)
        case .all:
            return lmHead(norm(x))                                      // (B, T, vocab)
        case .last:
            let h = norm(x.selectingRows((0..<b).map { $0 * t + t - 1 }))  // (B, hidden)
            return lmHead(h)                                            // (B, vocab)
        case let .rows(rows):
            return lmHead(norm(x.selectingRows(rows)))                  // (rows, vocab)
        }
    }

    /// Parameters of all attached adapters.
    public var adapterParameters: [Tensor] {
        layers.flatMap { $0.linears.flatMap { $0.linear.adapter?.trainableParameters ?? [] } }
    }
}
