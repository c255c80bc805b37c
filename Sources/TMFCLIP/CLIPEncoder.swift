import TMFTensor

/// Parameters of a module under their checkpoint names, relative to the module.
protocol CLIPModule {
    /// (name relative to this module, tensor), e.g. ("q_proj.weight", [D, D]).
    var namedParameters: [(String, Tensor)] { get }
}

extension CLIPModule {
    /// `namedParameters` with `prefix.` in front of each name.
    func parameters(under prefix: String) -> [(String, Tensor)] {
        namedParameters.map { (prefix + "." + $0.0, $0.1) }
    }
}

/// A linear layer with PyTorch's weight layout: y = x · weightᵀ + bias.
struct CLIPLinear: CLIPModule, Sendable {
    let weight: Tensor  // (out, in)
    let bias: Tensor?   // (out)

    init(in inputs: Int, out outputs: Int, bias: Bool = true) {
        weight = Tensor(zeros: [outputs, inputs])
        self.bias = bias ? Tensor(zeros: [outputs]) : nil
    }

    var namedParameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// x [..., in] → [..., out]
    func callAsFunction(_ x: Tensor) -> Tensor { Tensor.linear(x, weight: weight, bias: bias) }
}

/// nn.LayerNorm over the last axis.
struct CLIPLayerNorm: CLIPModule, Sendable {
    let weight: Tensor  // (D)
    let bias: Tensor    // (D)
    let eps: Float

    init(_ width: Int, eps: Float) {
        weight = Tensor(repeating: 1, shape: [width])
        bias = Tensor(zeros: [width])
        self.eps = eps
    }

    var namedParameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }

    /// x [..., D] → [..., D]
    func callAsFunction(_ x: Tensor) -> Tensor { Tensor.layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// `CLIPAttention`: multi-head self-attention with biased q/k/v/out projections and scale Dh^-½.
struct CLIPAttention: CLIPModule, Sendable {
    let qProj: CLIPLinear    // q_proj: (D, D) + (D)
    let kProj: CLIPLinear    // k_proj: (D, D) + (D)
    let vProj: CLIPLinear    // v_proj: (D, D) + (D)
    let outProj: CLIPLinear  // out_proj: (D, D) + (D)
    let heads: Int

    init(width: Int, heads: Int) {
        qProj = CLIPLinear(in: width, out: width)
        kProj = CLIPLinear(in: width, out: width)
        vProj = CLIPLinear(in: width, out: width)
        outProj = CLIPLinear(in: width, out: width)
        self.heads = heads
    }

    var namedParameters: [(String, Tensor)] {
        qProj.parameters(under: "q_proj") + kProj.parameters(under: "k_proj")
            + vProj.parameters(under: "v_proj") + outProj.parameters(under: "out_proj")
    }

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
struct CLIPMLP: CLIPModule, Sendable {
    let fc1: CLIPLinear  // (I, D) + (I)
    let fc2: CLIPLinear  // (D, I) + (D)
    let activation: CLIPActivation

    init(width: Int, intermediate: Int, activation: CLIPActivation) {
        fc1 = CLIPLinear(in: width, out: intermediate)
        fc2 = CLIPLinear(in: intermediate, out: width)
        self.activation = activation
    }

    var namedParameters: [(String, Tensor)] { fc1.parameters(under: "fc1") + fc2.parameters(under: "fc2") }

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
struct CLIPEncoderLayer: CLIPModule, Sendable {
    let layerNorm1: CLIPLayerNorm  // (D), (D)
    let selfAttention: CLIPAttention
    let layerNorm2: CLIPLayerNorm  // (D), (D)
    let mlp: CLIPMLP

    init(width: Int, intermediate: Int, heads: Int, activation: CLIPActivation, eps: Float) {
        layerNorm1 = CLIPLayerNorm(width, eps: eps)
        selfAttention = CLIPAttention(width: width, heads: heads)
        layerNorm2 = CLIPLayerNorm(width, eps: eps)
        mlp = CLIPMLP(width: width, intermediate: intermediate, activation: activation)
    }

    var namedParameters: [(String, Tensor)] {
        layerNorm1.parameters(under: "layer_norm1") + selfAttention.parameters(under: "self_attn")
            + layerNorm2.parameters(under: "layer_norm2") + mlp.parameters(under: "mlp")
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
struct CLIPEncoder: CLIPModule, Sendable {
    let layers: [CLIPEncoderLayer]

    init(layers count: Int, width: Int, intermediate: Int, heads: Int, activation: CLIPActivation, eps: Float) {
        layers = (0..<count).map { _ in
            CLIPEncoderLayer(width: width, intermediate: intermediate, heads: heads, activation: activation, eps: eps)
        }
    }

    var namedParameters: [(String, Tensor)] {
        layers.enumerated().flatMap { i, layer in layer.parameters(under: "layers.\(i)") }
    }

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
