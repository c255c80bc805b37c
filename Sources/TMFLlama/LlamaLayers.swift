import Foundation
import TMFTensor

/// Supplies the weight of a given Hugging Face name and shape (zeros, or a checkpoint tensor).
typealias WeightProvider = (_ name: String, _ shape: [Int]) throws -> Tensor

/// A trainable change to a frozen linear layer's output (LoRA implements it in `TMFLoRA`).
public protocol LinearAdapter: AnyObject {
    /// The term added to the base output: x [..., in] → [..., out].
    func delta(_ x: Tensor, training: Bool) -> Tensor
    /// Parameters the adapter trains.
    var trainableParameters: [Tensor] { get }
    /// The term as a low-rank product, when it is one: `delta(x) = scale · down · upᵀ` with
    /// down [..., r] (a function of x) and up [out, r]. The layer then adds it inside its own
    /// product (`Tensor.linear(_:weight:down:up:scale:)`). Default nil: `delta` is used.
    func lowRank(_ x: Tensor, training: Bool) -> (down: Tensor, up: Tensor, scale: Float)?
}

extension LinearAdapter {
    public func lowRank(_ x: Tensor, training: Bool) -> (down: Tensor, up: Tensor, scale: Float)? { nil }
}

/// A bias-free linear layer y = x · Wᵀ over a frozen weight, with an optional adapter.
public final class LlamaLinear: @unchecked Sendable {
    /// The Hugging Face key suffix, e.g. "self_attn.q_proj".
    public let key: String
    /// (out, in), frozen (no gradient, never copied).
    public let weight: Tensor
    /// An adapter whose output is added to the base output (e.g. LoRA), or nil.
    public var adapter: (any LinearAdapter)?

    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    init(key: String, prefix: String, out: Int, in: Int, _ provide: WeightProvider) throws {
        self.key = key
        weight = try provide(prefix + key + ".weight", [out, `in`])
    }

    /// x [..., in] → [..., out].
    public func callAsFunction(_ x: Tensor, training: Bool = false) -> Tensor {
        let base: Tensor
        let rows = x.count / inFeatures
        if rows == 1 && !(GradMode.isEnabled && x.requiresGrad) {
            // One token (decoding): a matrix-vector product streams the weight once.
            base = Tensor(uninitialized: Array(x.shape.dropLast()) + [outFeatures])
            BLAS.sgemv(trans: false, m: outFeatures, n: inFeatures, a: weight.pointer, lda: inFeatures,
                       x: x.pointer, beta: 0, y: base.pointer)
        } else {
            if let adapter, let low = adapter.lowRank(x, training: training) {
                return Tensor.linear(x, weight: weight, down: low.down, up: low.up, scale: low.scale)
            }
            base = Tensor.linear(x, weight: weight)
        }
        guard let adapter else { return base }
        return base + adapter.delta(x, training: training)
    }
}

/// RMSNorm with a frozen weight (hidden).
public final class LlamaRMSNorm: @unchecked Sendable {
    public let key: String
    /// (dim)
    public let weight: Tensor
    public let eps: Float
    init(key: String, prefix: String, dim: Int, eps: Float, _ provide: WeightProvider) throws {
        self.key = key
        weight = try provide(prefix + key + ".weight", [dim])
        self.eps = eps
    }
    /// x [..., dim] → [..., dim].
    public func callAsFunction(_ x: Tensor) -> Tensor { Tensor.rmsNorm(x, weight: weight, eps: eps) }
}

/// Self-attention with grouped-query heads and rotary positions.
public final class LlamaAttention: @unchecked Sendable {
    /// (heads · headDim, hidden)
    public let qProj: LlamaLinear
    /// (kvHeads · headDim, hidden)
    public let kProj: LlamaLinear
    /// (kvHeads · headDim, hidden)
    public let vProj: LlamaLinear
    /// (hidden, heads · headDim)
    public let oProj: LlamaLinear
    let heads: Int, kvHeads: Int, headDim: Int

    init(_ c: LlamaConfiguration, prefix: String, _ provide: WeightProvider) throws {
        heads = c.attentionHeads; kvHeads = c.kvHeads; headDim = c.headDim
        qProj = try LlamaLinear(key: "self_attn.q_proj", prefix: prefix, out: heads * headDim, in: c.hiddenSize, provide)
        kProj = try LlamaLinear(key: "self_attn.k_proj", prefix: prefix, out: kvHeads * headDim, in: c.hiddenSize, provide)
        vProj = try LlamaLinear(key: "self_attn.v_proj", prefix: prefix, out: kvHeads * headDim, in: c.hiddenSize, provide)
        oProj = try LlamaLinear(key: "self_attn.o_proj", prefix: prefix, out: c.hiddenSize, in: heads * headDim, provide)
    }

    /// x [B, T, hidden] → [B, T, hidden]. `positions` [B·T]; with `cache`, the new keys and values
    /// are appended to layer `layer` of the cache and the queries attend to all cached keys.
    func callAsFunction(_ x: Tensor, rope: RotaryEmbedding, positions: [Int], keyMask: [[Bool]]?,
                        cache: KVCache?, layer: Int, training: Bool) -> Tensor {
        var q = qProj(x, training: training)                     // (B, T, heads · headDim)
        var k = kProj(x, training: training)                     // (B, T, kvHeads · headDim)
        let v = vProj(x, training: training)                     // (B, T, kvHeads · headDim)
        q = q.rotaryEmbeddedHeads(rope, heads: heads, positions: positions)
        k = k.rotaryEmbeddedHeads(rope, heads: kvHeads, positions: positions)
        let attended: Tensor                                     // (B, T, heads · headDim)
        if let cache {
            let start = cache.length
            cache.store(layer: layer, keys: k, values: v, at: start)
            attended = Tensor.groupedQueryAttention(
                q: q, k: cache.keys[layer], v: cache.values[layer], heads: heads, kvHeads: kvHeads,
                keyLength: start + x.shape[1], mask: AttentionMask(causalOffset: start, keyMask: cache.keyMask))
        } else {
            attended = Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: heads, kvHeads: kvHeads,
                                                    mask: AttentionMask(causalOffset: 0, keyMask: keyMask))
        }
        return oProj(attended, training: training)               // (B, T, hidden)
    }
}

/// The SwiGLU feed-forward block: down(silu(gate(x)) ⊙ up(x)).
public final class LlamaMLP: @unchecked Sendable {
    /// (intermediate, hidden)
    public let gateProj: LlamaLinear
    /// (intermediate, hidden)
    public let upProj: LlamaLinear
    /// (hidden, intermediate)
    public let downProj: LlamaLinear

    init(_ c: LlamaConfiguration, prefix: String, _ provide: WeightProvider) throws {
        gateProj = try LlamaLinear(key: "mlp.gate_proj", prefix: prefix, out: c.intermediateSize, in: c.hiddenSize, provide)
        upProj = try LlamaLinear(key: "mlp.up_proj", prefix: prefix, out: c.intermediateSize, in: c.hiddenSize, provide)
        downProj = try LlamaLinear(key: "mlp.down_proj", prefix: prefix, out: c.hiddenSize, in: c.intermediateSize, provide)
    }

    /// x [B, T, hidden] → [B, T, hidden].
    func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
        let h = Tensor.swiGLU(gateProj(x, training: training), upProj(x, training: training))  // (B, T, intermediate)
        return downProj(h, training: training)
    }
}

/// One decoder layer: pre-norm attention and pre-norm MLP, each with a residual.
public final class LlamaDecoderLayer: @unchecked Sendable {
    public let attention: LlamaAttention
    public let mlp: LlamaMLP
    /// (hidden)
    public let inputLayerNorm: LlamaRMSNorm
    /// (hidden)
    public let postAttentionLayerNorm: LlamaRMSNorm

    init(_ c: LlamaConfiguration, prefix: String, _ provide: WeightProvider) throws {
        attention = try LlamaAttention(c, prefix: prefix, provide)
        mlp = try LlamaMLP(c, prefix: prefix, provide)
        inputLayerNorm = try LlamaRMSNorm(key: "input_layernorm", prefix: prefix, dim: c.hiddenSize, eps: c.rmsNormEps, provide)
        postAttentionLayerNorm = try LlamaRMSNorm(key: "post_attention_layernorm", prefix: prefix, dim: c.hiddenSize,
                                                  eps: c.rmsNormEps, provide)
    }

    /// The seven projections, in Hugging Face order.
    public var linears: [LlamaLinear] {
        [attention.qProj, attention.kProj, attention.vProj, attention.oProj, mlp.gateProj, mlp.upProj, mlp.downProj]
    }

    func callAsFunction(_ x: Tensor, rope: RotaryEmbedding, positions: [Int], keyMask: [[Bool]]?,
                        cache: KVCache?, layer: Int, training: Bool) -> Tensor {
        let h = x + attention(inputLayerNorm(x), rope: rope, positions: positions, keyMask: keyMask,
                              cache: cache, layer: layer, training: training)      // (B, T, hidden)
        return h + mlp(postAttentionLayerNorm(h), training: training)              // (B, T, hidden)
    }
}
