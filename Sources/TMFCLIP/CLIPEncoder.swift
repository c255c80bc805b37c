import TMFTensor

// CLIP's encoder blocks, composed of the module layer's `Linear` and `LayerNorm`
// (TMFTensor/Module.swift). Keys are transformers', relative to each block.

/// `CLIPAttention`: multi-head self-attention with biased q/k/v/out projections and scale Dh^-½.
struct CLIPAttention: Module, Sendable {
    let qProj: Linear    // q_proj: (D, D) + (D)
    let kProj: Linear    // k_proj: (D, D) + (D)
    let vProj: Linear    // v_proj: (D, D) + (D)
    let outProj: Linear  // out_proj: (D, D) + (D)
    let heads: Int

    init(width: Int, heads: Int, _ load: WeightLoader) throws {
        qProj = try Linear(inFeatures: width, outFeatures: width, bias: true, load.scoped("q_proj"))
        kProj = try Linear(inFeatures: width, outFeatures: width, bias: true, load.scoped("k_proj"))
        vProj = try Linear(inFeatures: width, outFeatures: width, bias: true, load.scoped("v_proj"))
        outProj = try Linear(inFeatures: width, outFeatures: width, bias: true, load.scoped("out_proj"))
        self.heads = heads
    }

    var children: [(String, any Module)] { [("q_proj", qProj), ("k_proj", kProj), ("v_proj", vProj), ("out_proj", outProj)] }

    /// x (N, T, D) → (N, T, D). `causal` and `keyMask` ([N][T], false = padding) as in
    /// `Tensor.multiHeadAttention`.
    func callAsFunction(_ x: Tensor, causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        let width = x.shape[2]
        let q = qProj(x), k = kProj(x), v = vProj(x)  // (N, T, D) each; head h in columns h·Dh..<(h+1)·Dh
        let scale = 1 / Float(width / heads).squareRoot()
        let o = Tensor.multiHeadAttention(query: q, key: k, value: v, heads: heads, scale: scale,
                                          causal: causal, keyMask: keyMask)  // (N, T, D)
        return outProj(o)  // (N, T, D)
    }
}

/// `CLIPMLP`: fc1 → activation → fc2.
struct CLIPMLP: Module, Sendable {
    let fc1: Linear  // (I, D) + (I)
    let fc2: Linear  // (D, I) + (D)
    let activation: CLIPActivation

    init(width: Int, intermediate: Int, activation: CLIPActivation, _ load: WeightLoader) throws {
        fc1 = try Linear(inFeatures: width, outFeatures: intermediate, bias: true, load.scoped("fc1"))
        fc2 = try Linear(inFeatures: intermediate, outFeatures: width, bias: true, load.scoped("fc2"))
        self.activation = activation
    }

    var children: [(String, any Module)] { [("fc1", fc1), ("fc2", fc2)] }

    /// x (..., D) → (..., D)
    func callAsFunction(_ x: Tensor) -> Tensor {
        let h = fc1(x)  // (..., I)
        let a: Tensor  // (..., I)
        switch activation {
        case .quickGELU: a = h.quickGELU()
        case .gelu: a = h.gelu()
        }
        return fc2(a)
    }
}

/// `CLIPEncoderLayer`: pre-norm residual attention, then pre-norm residual MLP.
struct CLIPEncoderLayer: Module, Sendable {
    let layerNorm1: LayerNorm  // (D), (D)
    let selfAttention: CLIPAttention
    let layerNorm2: LayerNorm  // (D), (D)
    let mlp: CLIPMLP

    init(width: Int, intermediate: Int, heads: Int, activation: CLIPActivation, eps: Float, _ load: WeightLoader) throws {
        layerNorm1 = try LayerNorm(dim: width, eps: eps, load.scoped("layer_norm1"))
        selfAttention = try CLIPAttention(width: width, heads: heads, load.scoped("self_attn"))
        layerNorm2 = try LayerNorm(dim: width, eps: eps, load.scoped("layer_norm2"))
        mlp = try CLIPMLP(width: width, intermediate: intermediate, activation: activation, load.scoped("mlp"))
    }

    var children: [(String, any Module)] {
        [("layer_norm1", layerNorm1), ("self_attn", selfAttention), ("layer_norm2", layerNorm2), ("mlp", mlp)]
    }

    /// x (N, T, D) → (N, T, D)
    func callAsFunction(_ x: Tensor, causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        let h = x + selfAttention(layerNorm1(x), causal: causal, keyMask: keyMask)  // (N, T, D)
        return h + mlp(layerNorm2(h))  // (N, T, D)
    }

    /// The output rows at one position per sequence only: x (N, T, D), `positions` [N] → (N, D),
    /// equal to rows `positions` of `callAsFunction` (keys and values still come from every
    /// position; queries, the output projection and the MLP run on the N pooled rows alone).
    func pooled(_ x: Tensor, at positions: [Int], causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        let n = x.shape[0], t = x.shape[1], d = x.shape[2]
        let rows = positions.enumerated().map { $0 * t + $1 }
        let attn = selfAttention
        let normed = layerNorm1(x)                                                    // (N, T, D)
        let k = attn.kProj(normed), v = attn.vProj(normed)                            // (N, T, D)
        let q = attn.qProj(normed.reshaped([n * t, d]).gatherRows(rows)).reshaped([n, 1, d])  // (N, 1, D)
        let o = Tensor.multiHeadAttention(query: q, key: k, value: v, heads: attn.heads,
                                          scale: 1 / Float(d / attn.heads).squareRoot(), causal: causal,
                                          keyMask: keyMask, queryPositions: positions.map { [$0] })  // (N, 1, D)
        let h = x.reshaped([n * t, d]).gatherRows(rows) + attn.outProj(o.reshaped([n, d]))  // (N, D)
        return h + mlp(layerNorm2(h))                                                 // (N, D)
    }
}

/// `CLIPEncoder`: a stack of encoder layers (`encoder.layers.{i}`).
struct CLIPEncoder: Module, Sendable {
    let layers: [CLIPEncoderLayer]

    init(layers count: Int, width: Int, intermediate: Int, heads: Int, activation: CLIPActivation, eps: Float,
         _ load: WeightLoader) throws {
        layers = try (0..<count).map { i in
            try CLIPEncoderLayer(width: width, intermediate: intermediate, heads: heads, activation: activation, eps: eps,
                                 load.scoped("layers.\(i)"))
        }
    }

    var children: [(String, any Module)] { layers.enumerated().map { ("layers.\($0.offset)", $0.element) } }

    /// x (N, T, D) → (N, T, D)
    func callAsFunction(_ x: Tensor, causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        layers.reduce(x) { h, layer in layer(h, causal: causal, keyMask: keyMask) }
    }

    /// The final states at one position per sequence: x (N, T, D), `positions` [N] → (N, D).
    /// The last layer computes only those rows (see `CLIPEncoderLayer.pooled`).
    func pooled(_ x: Tensor, at positions: [Int], causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        let h = layers.dropLast().reduce(x) { h, layer in layer(h, causal: causal, keyMask: keyMask) }  // (N, T, D)
        return layers[layers.count - 1].pooled(h, at: positions, causal: causal, keyMask: keyMask)    // (N, D)
    }
}
