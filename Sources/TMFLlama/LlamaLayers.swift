import Foundation
import TMFTensor

// Llama's blocks, composed of the module layer's `Linear` and `RMSNorm` (TMFTensor/Module.swift).
// Keys are Hugging Face's, relative to each block.

/// Self-attention with grouped-query heads and rotary positions.
public final class LlamaAttention: Module, @unchecked Sendable {
    /// (heads · headDim, hidden)
    public let qProj: Linear
    /// (kvHeads · headDim, hidden)
    public let kProj: Linear
    /// (kvHeads · headDim, hidden)
    public let vProj: Linear
    /// (hidden, heads · headDim)
    public let oProj: Linear
    let heads: Int, kvHeads: Int, headDim: Int

    init(_ c: LlamaConfiguration, _ load: WeightLoader) throws {
        heads = c.attentionHeads; kvHeads = c.kvHeads; headDim = c.headDim
        qProj = try Linear(inFeatures: c.hiddenSize, outFeatures: heads * headDim, load.scoped("q_proj"))
        kProj = try Linear(inFeatures: c.hiddenSize, outFeatures: kvHeads * headDim, load.scoped("k_proj"))
        vProj = try Linear(inFeatures: c.hiddenSize, outFeatures: kvHeads * headDim, load.scoped("v_proj"))
        oProj = try Linear(inFeatures: heads * headDim, outFeatures: c.hiddenSize, load.scoped("o_proj"))
    }

    public var children: [(String, any Module)] { [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("o_proj", oProj)] }

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
public final class LlamaMLP: Module, @unchecked Sendable {
    /// (intermediate, hidden)
    public let gateProj: Linear
    /// (intermediate, hidden)
    public let upProj: Linear
    /// (hidden, intermediate)
    public let downProj: Linear

    init(_ c: LlamaConfiguration, _ load: WeightLoader) throws {
        gateProj = try Linear(inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, load.scoped("gate_proj"))
        upProj = try Linear(inFeatures: c.hiddenSize, outFeatures: c.intermediateSize, load.scoped("up_proj"))
        downProj = try Linear(inFeatures: c.intermediateSize, outFeatures: c.hiddenSize, load.scoped("down_proj"))
    }

    public var children: [(String, any Module)] { [("gate_proj", gateProj), ("up_proj", upProj), ("down_proj", downProj)] }

    /// x [B, T, hidden] → [B, T, hidden].
    func callAsFunction(_ x: Tensor, training: Bool) -> Tensor {
        let h = Tensor.swiGLU(gateProj(x, training: training), upProj(x, training: training))  // (B, T, intermediate)
        return downProj(h, training: training)
    }
}

/// One decoder layer: pre-norm attention and pre-norm MLP, each with a residual.
public final class LlamaDecoderLayer: Module, @unchecked Sendable {
    public let attention: LlamaAttention
    public let mlp: LlamaMLP
    /// (hidden)
    public let inputLayerNorm: RMSNorm
    /// (hidden)
    public let postAttentionLayerNorm: RMSNorm

    init(_ c: LlamaConfiguration, _ load: WeightLoader) throws {
        attention = try LlamaAttention(c, load.scoped("self_attn"))
        mlp = try LlamaMLP(c, load.scoped("mlp"))
        inputLayerNorm = try RMSNorm(dim: c.hiddenSize, eps: c.rmsNormEps, load.scoped("input_layernorm"))
        postAttentionLayerNorm = try RMSNorm(dim: c.hiddenSize, eps: c.rmsNormEps, load.scoped("post_attention_layernorm"))
    }

    public var children: [(String, any Module)] {
        [("self_attn", attention), ("mlp", mlp), ("input_layernorm", inputLayerNorm),
         ("post_attention_layernorm", postAttentionLayerNorm)]
    }

    /// The seven projections with their keys relative to the layer ("self_attn.q_proj", …), in
    /// Hugging Face order: read off the attention's and MLP's children.
    public var linears: [(key: String, linear: Linear)] {
        children.flatMap { key, block in
            block.children.compactMap { name, child in (child as? Linear).map { (key + "." + name, $0) } }
        }
    }

    func callAsFunction(_ x: Tensor, rope: RotaryEmbedding, positions: [Int], keyMask: [[Bool]]?,
                        cache: KVCache?, layer: Int, training: Bool) -> Tensor {
        let h = x + attention(inputLayerNorm(x), rope: rope, positions: positions, keyMask: keyMask,
                              cache: cache, layer: layer, training: training)      // (B, T, hidden)
        return h + mlp(postAttentionLayerNorm(h), training: training)              // (B, T, hidden)
    }
}
