import Foundation
import TMFTensor

/// Mutable state of one forward pass: train/eval mode and the dropout generator.
struct ForwardContext {
    var training: Bool
    var rng: SeededRNG
    /// Under data parallelism: the rows of the global batch this rank's batch holds, and the
    /// global batch size (dropout then draws as one process would; see `Tensor.dropout`).
    var part: (rows: Range<Int>, total: Int)? = nil

    /// `x` [B, …] after dropout with probability `p` (identity outside training).
    mutating func dropout(_ x: Tensor, _ p: Float) -> Tensor {
        x.dropout(p, training: training, rng: &rng, part: part)
    }
}

// MBHT's layers, composed of the module layer's `Linear` and `LayerNorm` (TMFTensor/Module.swift)
// with trainable Float32 weights. Keys are the reference's module names, relative to each layer.

extension Linear {
    /// nn.Linear as the reference initialises it: weight (out, in) drawn N(0, std) from `rng`,
    /// bias (out) zero, both trainable.
    convenience init(_ inFeatures: Int, _ outFeatures: Int, std: Float, rng: inout SeededRNG) {
        self.init(weight: Tensor.normal([outFeatures, inFeatures], std: std, rng: &rng, requiresGrad: true),
                  bias: Tensor(zeros: [outFeatures], requiresGrad: true))
    }
}

extension LayerNorm {
    /// nn.LayerNorm over the last axis of width `d`: weight one, bias zero, both trainable.
    convenience init(_ d: Int, eps: Float) {
        self.init(weight: Tensor(repeating: 1, shape: [d], requiresGrad: true), bias: Tensor(zeros: [d], requiresGrad: true),
                  eps: eps)
    }
}

/// Weights listed as their parent's own (keys without a component of their own) where the
/// parent lists them after its children: a child under the empty key.
struct WeightGroup: Module {
    let ownWeights: [(String, Weight)]
}

/// [B, T, H·dk] → [B, H, T, dk].
func splitHeads(_ x: Tensor, heads: Int) -> Tensor {
    let b = x.shape[0], t = x.shape[1], d = x.shape[2]
    return x.reshaped([b, t, heads, d / heads]).permuted([0, 2, 1, 3])
}

/// [B, H, T, dk] → [B, T, H·dk].
func mergeHeads(_ x: Tensor) -> Tensor {
    let b = x.shape[0], h = x.shape[1], t = x.shape[2], dk = x.shape[3]
    return x.permuted([0, 2, 1, 3]).reshaped([b, t, h * dk])
}

/// Bidirectional multi-head self-attention with a residual LayerNorm (reference
/// `MultiHeadAttention`): LN(x + dropout(dense(softmax(QKᵀ/√dk) V))).
struct MultiHeadAttention: Module {
    let query, key, value, dense: Linear
    let norm: LayerNorm
    let heads: Int
    let attentionDropout, hiddenDropout: Float

    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        let d = c.hiddenSize
        query = Linear(d, d, std: c.initializerRange, rng: &rng)
        key = Linear(d, d, std: c.initializerRange, rng: &rng)
        value = Linear(d, d, std: c.initializerRange, rng: &rng)
        dense = Linear(d, d, std: c.initializerRange, rng: &rng)
        norm = LayerNorm(d, eps: c.layerNormEps)
        heads = c.heads
        attentionDropout = c.attentionDropout
        hiddenDropout = c.hiddenDropout
    }

    var children: [(String, any Module)] {
        [("query", query), ("key", key), ("value", value), ("dense", dense), ("LayerNorm", norm)]
    }

    /// x [B, S, d]; `keyMask[b][j]` false hides key j (padding). Returns [B, S, d].
    func callAsFunction(_ x: Tensor, keyMask: [[Bool]]?, _ ctx: inout ForwardContext) -> Tensor {
        let q = splitHeads(query(x), heads: heads)  // (B, H, S, dk)
        let k = splitHeads(key(x), heads: heads)
        let v = splitHeads(value(x), heads: heads)
        let dk = q.shape[3]
        var scores = Tensor.matmul(q, k, transposeB: true).scale(1 / Float(dk).squareRoot())  // (B, H, S, S)
        if let keyMask { scores = scores.attentionMasked(causalOffset: nil, keyMask: keyMask) }
        let p = ctx.dropout(scores.softmax(), attentionDropout)
        let context = mergeHeads(Tensor.matmul(p, v))  // (B, S, d)
        let h = ctx.dropout(dense(context), hiddenDropout)
        return norm(h + x)
    }
}

/// Low-rank (Linformer-style) attention over the whole sequence (reference `LinearAttention`):
/// keys and values are projected along the sequence axis from T to k positions by E and F.
struct LinearAttention: Module {
    let wq, wk, wv, dense: Linear
    let e, f: Linear  // (k, T): project values, keys along the sequence
    let norm: LayerNorm
    let heads: Int
    let attentionDropout, hiddenDropout: Float

    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        let d = c.hiddenSize, t = c.maxSequenceLength, k = c.scales[0]
        e = Linear(t, k, std: c.initializerRange, rng: &rng)
        f = Linear(t, k, std: c.initializerRange, rng: &rng)
        wv = Linear(d, d, std: c.initializerRange, rng: &rng)
        wk = Linear(d, d, std: c.initializerRange, rng: &rng)
        wq = Linear(d, d, std: c.initializerRange, rng: &rng)
        dense = Linear(d, d, std: c.initializerRange, rng: &rng)
        norm = LayerNorm(d, eps: c.layerNormEps)
        heads = c.heads
        attentionDropout = c.attentionDropout
        hiddenDropout = c.hiddenDropout
    }

    var children: [(String, any Module)] {
        [("E", e), ("F", f), ("W_V", wv), ("W_K", wk), ("W_Q", wq), ("dense", dense), ("LayerNorm", norm)]
    }

    /// x [B, T, d]; `keep` [B, 1, T, 1] is 1 at real positions, 0 at padding. Returns [B, T, d].
    func callAsFunction(_ x: Tensor, keep: Tensor, _ ctx: inout ForwardContext) -> Tensor {
        let q = splitHeads(wq(x), heads: heads)              // (B, H, T, dk)
        let k = splitHeads(wk(x), heads: heads) * keep
        let v = splitHeads(wv(x), heads: heads) * keep
        let vp = e(v.transposed(2, 3)).transposed(2, 3)      // (B, H, k, dk)
        let kp = f(k.transposed(2, 3)).transposed(2, 3)      // (B, H, k, dk)
        let dk = q.shape[3]
        let scores = Tensor.matmul(q, kp, transposeB: true).scale(1 / Float(dk).squareRoot())  // (B, H, T, k)
        let p = ctx.dropout(scores.softmax(), attentionDropout)
        let context = mergeHeads(Tensor.matmul(p, vp))       // (B, T, d)
        let h = ctx.dropout(dense(context), hiddenDropout)
        return norm(h + x)
    }
}

/// Mean pooling over consecutive windows of `window` positions: [B, T, d] → [B, T / window, d].
func windowMeanPool(_ x: Tensor, window: Int) -> Tensor {
    let b = x.shape[0], t = x.shape[1], d = x.shape[2]
    return x.reshaped([b, t / window, window, d]).mean(axis: 2)
}

/// Multi-scale attention (paper §3.2, reference `MultiScaleAttention`): low-rank attention over
/// the full sequence, and one shared multi-head attention over the sequence mean-pooled at two
/// coarser scales; the T + T/s1 + T/s2 outputs are combined into T positions by a learned linear
/// map along the sequence axis (`out_fc`).
struct MultiScaleAttention: Module {
    let attention1: LinearAttention
    let attention2: MultiHeadAttention
    let outFC: Linear  // (T, T + T/s1 + T/s2)
    let s1, s2: Int

    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        s1 = c.scales[1]; s2 = c.scales[2]
        let t = c.maxSequenceLength
        // Module creation order as the reference (out_fc, attention1, attention2).
        outFC = Linear(t + t / s1 + t / s2, t, std: c.initializerRange, rng: &rng)
        attention1 = LinearAttention(c, rng: &rng)
        attention2 = MultiHeadAttention(c, rng: &rng)
    }

    var children: [(String, any Module)] { [("out_fc", outFC), ("attention1", attention1), ("attention2", attention2)] }

    /// x [B, T, d]; `keep` [B, 1, T, 1] as `LinearAttention`. Returns [B, T, d].
    func callAsFunction(_ x: Tensor, keep: Tensor, _ ctx: inout ForwardContext) -> Tensor {
        let full = attention1(x, keep: keep, &ctx)                                     // (B, T, d)
        let coarse1 = attention2(windowMeanPool(x, window: s1), keyMask: nil, &ctx)    // (B, T/s1, d)
        let coarse2 = attention2(windowMeanPool(x, window: s2), keyMask: nil, &ctx)    // (B, T/s2, d)
        let all = Tensor.concat([full, coarse1, coarse2], axis: 1)                     // (B, T', d)
        return outFC(all.transposed(1, 2)).transposed(1, 2)                           // (B, T, d)
    }
}

/// Position-wise feed-forward with a residual LayerNorm (reference `FeedForward`).
struct FeedForward: Module {
    let dense1, dense2: Linear
    let norm: LayerNorm
    let activation: String
    let dropout: Float

    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        dense1 = Linear(c.hiddenSize, c.innerSize, std: c.initializerRange, rng: &rng)
        dense2 = Linear(c.innerSize, c.hiddenSize, std: c.initializerRange, rng: &rng)
        norm = LayerNorm(c.hiddenSize, eps: c.layerNormEps)
        activation = c.hiddenActivation
        dropout = c.hiddenDropout
    }

    var children: [(String, any Module)] { [("dense_1", dense1), ("dense_2", dense2), ("LayerNorm", norm)] }

    /// x [B, T, d] → [B, T, d].
    func callAsFunction(_ x: Tensor, _ ctx: inout ForwardContext) -> Tensor {
        var h = dense1(x)
        switch activation {
        case "relu": h = h.relu()
        case "swish": h = h.silu()
        case "tanh": h = h.tanh()
        case "sigmoid": h = h.sigmoid()
        default: h = h.gelu()
        }
        h = ctx.dropout(dense2(h), dropout)
        return norm(h + x)
    }
}

/// One transformer layer: (multi-scale or plain) attention, then feed-forward.
struct TransformerLayer: Module {
    let multiScale: MultiScaleAttention?
    let plain: MultiHeadAttention?
    let feedForward: FeedForward

    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        if c.multiScale {
            multiScale = MultiScaleAttention(c, rng: &rng); plain = nil
        } else {
            plain = MultiHeadAttention(c, rng: &rng); multiScale = nil
        }
        feedForward = FeedForward(c, rng: &rng)
    }

    var children: [(String, any Module)] {
        [("multi_head_attention", multiScale.map { $0 as any Module } ?? plain!), ("feed_forward", feedForward)]
    }

    /// x [B, T, d]; `keep` [B, 1, T, 1] and `keyMask` [B][T] mark the real positions. Returns [B, T, d].
    func callAsFunction(_ x: Tensor, keep: Tensor, keyMask: [[Bool]], _ ctx: inout ForwardContext) -> Tensor {
        let a = multiScale.map { $0(x, keep: keep, &ctx) } ?? plain!(x, keyMask: keyMask, &ctx)
        return feedForward(a, &ctx)
    }
}

/// Hypergraph convolution (reference `HGNN_conv`): G · (x W + b), W [d, d] applied as x · W.
struct HypergraphConvolution: Module {
    let weight: Tensor  // (d, d)
    let bias: Tensor    // (d)
    init(_ d: Int, std: Float, rng: inout SeededRNG) {
        weight = Tensor.normal([d, d], std: std, rng: &rng, requiresGrad: true)
        bias = Tensor.normal([d], std: std, rng: &rng, requiresGrad: true)
    }
    var ownWeights: [(String, Weight)] { [("weight", .float(weight)), ("bias", .float(bias))] }
    /// x [B, T, d], g [B, T, T] → [B, T, d].
    func callAsFunction(_ x: Tensor, _ g: Tensor) -> Tensor {
        Tensor.matmul(g, Tensor.matmul(x, weight) + bias)
    }
}

/// Two hypergraph convolutions averaged (reference `HGNN`: (x1 + x2) / 2, no activation).
struct HypergraphNetwork: Module {
    let conv1, conv2: HypergraphConvolution
    let dropout: Float
    init(_ c: MBHTConfiguration, rng: inout SeededRNG) {
        conv1 = HypergraphConvolution(c.hiddenSize, std: c.initializerRange, rng: &rng)
        conv2 = HypergraphConvolution(c.hiddenSize, std: c.initializerRange, rng: &rng)
        dropout = c.hypergraphDropout
    }
    var children: [(String, any Module)] { [("hgc1", conv1), ("hgc2", conv2)] }
    /// x [B, T, d], g [B, T, T] → [B, T, d].
    func callAsFunction(_ x: Tensor, _ g: Tensor, _ ctx: inout ForwardContext) -> Tensor {
        let x1 = ctx.dropout(conv1(x, g), dropout)
        let x2 = ctx.dropout(conv2(x1, g), dropout)
        return (x1 + x2).scale(0.5)
    }
}
