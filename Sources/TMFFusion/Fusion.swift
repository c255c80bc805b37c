import Foundation
import TMFTensor

/// How much of the modality fusion of the paper's §4.1 runs (the ablations of Table 3).
public enum FusionDepth: String, Codable, Sendable, CaseIterable {
    /// AMSA (Eq. 5-6) and the projection only: the "+ item ID tokens (AMSA)" ablation.
    case amsa
    /// AMSA, projection and both cross-modality attention levels (Eq. 7-8): full TMF.
    case full
}

/// Sizes of the fusion module and the two adaptors.
public struct FusionConfiguration: Codable, Sendable, Equatable {
    /// Width of the CLIP image and text embeddings (d_v); both must have it.
    public var modalityWidth: Int
    /// Width of the graph (MBHT) embeddings.
    public var graphWidth: Int
    /// Width of the LLM's token embeddings (the adaptors' output).
    public var llmWidth: Int
    /// Hidden width of the two-layer adaptor MLPs.
    public var adaptorHidden: Int
    /// Attention heads for AMSA and CMA (1 = the paper's single-head default). The attended
    /// widths (2·d_v + d_g for AMSA, d_v for CMA) must be divisible by it.
    public var heads: Int
    /// CMA divides its scores by the square root of this width (per head: of width / heads). The
    /// paper writes √d in Eq. 7-8 with d = 2·d_v + d_g, the width of v_M (Eq. 5), so new
    /// configurations hold `allModalityWidth`; nil (folders written before this field) is d_v,
    /// the query width of ordinary scaled dot-product attention.
    public var cmaScaleWidth: Int?

    public init(modalityWidth: Int, graphWidth: Int, llmWidth: Int, adaptorHidden: Int? = nil, heads: Int = 1) {
        self.modalityWidth = modalityWidth
        self.graphWidth = graphWidth
        self.llmWidth = llmWidth
        self.adaptorHidden = adaptorHidden ?? max(llmWidth, modalityWidth)
        self.heads = heads
        self.cmaScaleWidth = 2 * modalityWidth + graphWidth
    }

    /// d = d_image + d_text + d_graph, the width of v_M.
    public var allModalityWidth: Int { 2 * modalityWidth + graphWidth }
}

/// Errors building the fusion module.
public enum FusionError: Error, LocalizedError, Equatable {
    case invalidConfiguration(String)

    public var errorDescription: String? {
        switch self {
        case let .invalidConfiguration(why): return "invalid fusion configuration: \(why)"
        }
    }
}

extension Linear {
    /// PyTorch's nn.Linear initialisation, trainable: weight (out, in) then bias (out) drawn
    /// from `rng`, uniform in ±1/√in.
    convenience init(trainable inFeatures: Int, _ outFeatures: Int, rng: inout SeededRNG) {
        let b = 1 / Float(inFeatures).squareRoot()
        let weight = Tensor.uniform([outFeatures, inFeatures], low: -b, high: b, rng: &rng, requiresGrad: true)
        let bias = Tensor.uniform([outFeatures], low: -b, high: b, rng: &rng, requiresGrad: true)
        self.init(weight: weight, bias: bias)
    }
}

/// A two-layer MLP adaptor: Linear(in → hidden) → GELU → Linear(hidden → out) (paper §4.2).
public struct Adaptor: Module, Sendable {
    /// `fc1`: (hidden, in) + (hidden).
    public let fc1: Linear
    /// `fc2`: (out, hidden) + (out).
    public let fc2: Linear

    /// Initialised as PyTorch's nn.Linear: weights and biases uniform in ±1/√fan_in.
    public init(input: Int, hidden: Int, output: Int, rng: inout SeededRNG) {
        fc1 = Linear(trainable: input, hidden, rng: &rng)
        fc2 = Linear(trainable: hidden, output, rng: &rng)
    }

    /// `fc1`, `fc2`.
    public var children: [(String, any Module)] { [("fc1", fc1), ("fc2", fc2)] }

    /// x [N, in] → [N, out].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let h = fc1(x).gelu()  // [N, hidden]
        return fc2(h)          // [N, out]
    }
}

/// Scaled dot-product attention softmax(q kᵀ / √d) v over one sequence, split into `heads`
/// heads along the feature axis (no learned projections, as Eq. 6-8).
/// q [N, dq], k [M, dq], v [M, dv] → [N, dv]; dq and dv divisible by `heads`. `scaleWidth`
/// replaces dq in the scale (1 / √(scaleWidth / heads)).
public func plainAttention(query q: Tensor, key k: Tensor, value v: Tensor, heads: Int = 1, scaleWidth: Int? = nil) -> Tensor {
    let n = q.shape[0], m = k.shape[0], dq = q.shape[1], dv = v.shape[1]
    precondition(k.shape[1] == dq && v.shape[0] == m, "attention shapes \(q.shape) \(k.shape) \(v.shape)")
    let scale = 1 / (Float(scaleWidth ?? dq) / Float(heads)).squareRoot()
    if heads == 1 {
        let scores = Tensor.matmul(q, k, transposeB: true).scale(scale)                      // [N, M]
        return Tensor.matmul(scores.softmax(), v)                                             // [N, dv]
    }
    precondition(dq % heads == 0 && dv % heads == 0, "widths \(dq), \(dv) not divisible by \(heads) heads")
    let hq = dq / heads, hv = dv / heads
    let qh = q.reshaped([n, heads, hq]).permuted([1, 0, 2])  // [H, N, hq]
    let kh = k.reshaped([m, heads, hq]).permuted([1, 0, 2])  // [H, M, hq]
    let vh = v.reshaped([m, heads, hv]).permuted([1, 0, 2])  // [H, M, hv]
    let scores = Tensor.matmul(qh, kh, transposeB: true).scale(scale)                      // [H, N, M]
    let out = Tensor.matmul(scores.softmax(), vh)                                          // [H, N, hv]
    return out.permuted([1, 0, 2]).reshaped([n, dv])
}

/// The modality fusion module of the paper's §4.1 with the item and behavior adaptors of §4.2.
///
/// For the items of one prompt (history then candidates): v_M = concat(v_image, v_text, v_graph)
/// [N, d] (Eq. 5); AMSA softmax(v_M v_Mᵀ/√d) v_M [N, d] (Eq. 6); a learned projection to d_v;
/// CMA level 1 softmax(q v_imageᵀ/√d) v_text (Eq. 7); level 2 softmax(cma₁ v_textᵀ/√d) v_image
/// (Eq. 8), with the paper's d (see `FusionConfiguration.cmaScaleWidth`); then the item adaptor into the LLM's width. Behavior embeddings go through the
/// behavior adaptor.
public final class FusionModule: Module, @unchecked Sendable {
    public let configuration: FusionConfiguration
    /// Projection of the AMSA output to the image/text width: (d_v, d) + (d_v).
    public let projection: Linear
    /// Item adaptor: d_v → LLM width.
    public let itemAdaptor: Adaptor
    /// Behavior adaptor: d_g → LLM width.
    public let behaviorAdaptor: Adaptor

    /// A freshly initialised module (seeded).
    public init(configuration c: FusionConfiguration, seed: UInt64) throws {
        guard c.modalityWidth > 0, c.graphWidth > 0, c.llmWidth > 0, c.adaptorHidden > 0, c.heads > 0 else {
            throw FusionError.invalidConfiguration("all widths and heads must be positive")
        }
        guard c.allModalityWidth % c.heads == 0, c.modalityWidth % c.heads == 0 else {
            throw FusionError.invalidConfiguration("widths \(c.allModalityWidth) and \(c.modalityWidth) must be divisible by \(c.heads) heads")
        }
        configuration = c
        var rng = SeededRNG(seed: seed, key: ["fusion"])
        projection = Linear(trainable: c.allModalityWidth, c.modalityWidth, rng: &rng)
        itemAdaptor = Adaptor(input: c.modalityWidth, hidden: c.adaptorHidden, output: c.llmWidth, rng: &rng)
        behaviorAdaptor = Adaptor(input: c.graphWidth, hidden: c.adaptorHidden, output: c.llmWidth, rng: &rng)
    }

    /// Fused item representations before the adaptor.
    /// - image, text: [N, d_v]; graph: [N, d_g] (the N items of one prompt).
    /// - Returns: [N, d_v]: the projected AMSA output (`.amsa`) or the CMA output (`.full`).
    public func fuse(image: Tensor, text: Tensor, graph: Tensor, depth: FusionDepth) -> Tensor {
        let c = configuration
        precondition(image.shape[1] == c.modalityWidth && text.shape[1] == c.modalityWidth && graph.shape[1] == c.graphWidth,
                     "fusion inputs \(image.shape) \(text.shape) \(graph.shape) for \(c)")
        let vM = Tensor.concat([image, text, graph], axis: 1)                        // [N, d]   Eq. 5
        let amsa = plainAttention(query: vM, key: vM, value: vM, heads: c.heads)      // [N, d]   Eq. 6
        let q = projection(amsa)                                                      // [N, d_v]
        if depth == .amsa { return q }
        let cma1 = plainAttention(query: q, key: image, value: text, heads: c.heads, scaleWidth: c.cmaScaleWidth)    // [N, d_v] Eq. 7
        return plainAttention(query: cma1, key: text, value: image, heads: c.heads, scaleWidth: c.cmaScaleWidth)     // [N, d_v] Eq. 8
    }

    /// Item token embeddings for the items of one prompt: [N, LLM width].
    public func itemTokens(image: Tensor, text: Tensor, graph: Tensor, depth: FusionDepth) -> Tensor {
        itemAdaptor(fuse(image: image, text: text, graph: graph, depth: depth))
    }

    /// Behavior token embeddings: behavior embeddings [B, d_g] → [B, LLM width].
    public func behaviorTokens(_ behaviors: Tensor) -> Tensor { behaviorAdaptor(behaviors) }

    static let projectionKey = "fusion.projection", itemAdaptorKey = "item_adaptor", behaviorAdaptorKey = "behavior_adaptor"

    /// `fusion.projection`, `item_adaptor`, `behavior_adaptor` (the checkpoint's groups, in order).
    public var children: [(String, any Module)] {
        [(Self.projectionKey, projection), (Self.itemAdaptorKey, itemAdaptor), (Self.behaviorAdaptorKey, behaviorAdaptor)]
    }

    /// Parameters of the fusion layers (projection; AMSA and CMA have none) — Ψ_f:
    /// `fusion.projection.weight` (d_v, d), `fusion.projection.bias` (d_v).
    public var fusionParameters: [(String, Tensor)] { projection.namedParameters(prefix: Self.projectionKey + ".") }
    /// Ψ_i: `item_adaptor.fc1.weight`, `.fc1.bias`, `.fc2.weight`, `.fc2.bias`.
    public var itemAdaptorParameters: [(String, Tensor)] { itemAdaptor.namedParameters(prefix: Self.itemAdaptorKey + ".") }
    /// Ψ_b: `behavior_adaptor.fc1.weight`, `.fc1.bias`, `.fc2.weight`, `.fc2.bias`.
    public var behaviorAdaptorParameters: [(String, Tensor)] {
        behaviorAdaptor.namedParameters(prefix: Self.behaviorAdaptorKey + ".")
    }
    /// Every parameter by name (for saving and strict loading): Ψ_f, Ψ_i, Ψ_b, read off the modules.
    public var namedParameters: [(String, Tensor)] { namedParameters() }
}
