import Foundation
import TMFTensor

/// Hyper-parameters of MBHT (Yang et al., KDD'22). Defaults are the reference's
/// (`recbole/properties/model/MBHT.yaml`, `MBHT.yaml`, `mbht.py`); coding keys are the
/// reference's names so a RecBole YAML converted to JSON decodes directly.
///
/// Sizes of the data (`numItems`, `numBehaviors`) are part of the configuration so that the
/// fingerprint changes when the data's vocabulary does.
public struct MBHTConfiguration: Codable, Sendable, Equatable {
    /// Number of items; item indices are 0..<numItems.
    public var numItems: Int
    /// Number of behavior types (2 or more in tmf, 1 allowed); indices 0..<numBehaviors.
    public var numBehaviors: Int
    /// The behavior whose items are predicted (e.g. purchase).
    public var targetBehavior: Int
    /// Positions per sequence T, including the appended masked slot: histories keep their last
    /// T − 1 events. Must be divisible by both pooling scales when `multiScale` is on.
    public var maxSequenceLength: Int = 200
    /// Hidden size d.
    public var hiddenSize: Int = 64
    /// Transformer layers.
    public var layers: Int = 2
    /// Attention heads.
    public var heads: Int = 2
    /// Feed-forward inner size.
    public var innerSize: Int = 256
    /// Dropout on hidden states.
    public var hiddenDropout: Float = 0.5
    /// Dropout on attention probabilities.
    public var attentionDropout: Float = 0.5
    /// Dropout inside the hypergraph convolution (the reference's `HGNN(dropout=0.2)`).
    public var hypergraphDropout: Float = 0.2
    /// Feed-forward activation: gelu (exact), relu, swish, tanh or sigmoid.
    public var hiddenActivation: String = "gelu"
    /// LayerNorm epsilon.
    public var layerNormEps: Float = 1e-12
    /// Standard deviation of the normal initialisation.
    public var initializerRange: Float = 0.02
    /// Probability of masking each history position in Cloze training.
    public var maskRatio: Float = 0.2
    /// Item-wise hyperedge size: each position joins the hyperedges of its `hyperLength` most
    /// similar positions' items.
    public var hyperLength: Int = 6
    /// `[k, s1, s2]`: low-rank projection size k of the linear attention, and two mean-pooling
    /// window sizes s1, s2 (T / s1 and T / s2 pooled positions).
    public var scales: [Int] = [5, 8, 40]
    /// Hypergraph readout window at a masked position: positions before it.
    public var windowBefore: Int = 20
    /// Hypergraph readout window at a masked position in training: positions after it.
    public var windowAfter: Int = 12
    /// Whether the hypergraph branch is on (the reference's `enable_hg`).
    public var hypergraph: Bool = true
    /// Whether the transformer is multi-scale (the reference's `enable_ms`); otherwise plain
    /// bidirectional multi-head attention.
    public var multiScale: Bool = true

    enum CodingKeys: String, CodingKey {
        case numItems = "n_items"
        case numBehaviors = "n_behaviors"
        case targetBehavior = "target_behavior"
        case maxSequenceLength = "MAX_ITEM_LIST_LENGTH"
        case hiddenSize = "hidden_size"
        case layers = "n_layers"
        case heads = "n_heads"
        case innerSize = "inner_size"
        case hiddenDropout = "hidden_dropout_prob"
        case attentionDropout = "attn_dropout_prob"
        case hypergraphDropout = "hgnn_dropout_prob"
        case hiddenActivation = "hidden_act"
        case layerNormEps = "layer_norm_eps"
        case initializerRange = "initializer_range"
        case maskRatio = "mask_ratio"
        case hyperLength = "hyper_len"
        case scales
        case windowBefore = "sw_before"
        case windowAfter = "sw_follow"
        case hypergraph = "enable_hg"
        case multiScale = "enable_ms"
    }

    /// A configuration with the reference defaults for the given data sizes.
    public init(numItems: Int, numBehaviors: Int, targetBehavior: Int, maxSequenceLength: Int = 200) {
        self.numItems = numItems
        self.numBehaviors = numBehaviors
        self.targetBehavior = targetBehavior
        self.maxSequenceLength = maxSequenceLength
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        numItems = try c.decode(Int.self, forKey: .numItems)
        numBehaviors = try c.decode(Int.self, forKey: .numBehaviors)
        targetBehavior = try c.decode(Int.self, forKey: .targetBehavior)
        func take<T: Decodable>(_ key: CodingKeys, _ into: inout T) throws {
            if let v = try c.decodeIfPresent(T.self, forKey: key) { into = v }
        }
        try take(.maxSequenceLength, &maxSequenceLength)
        try take(.hiddenSize, &hiddenSize)
        try take(.layers, &layers)
        try take(.heads, &heads)
        try take(.innerSize, &innerSize)
        try take(.hiddenDropout, &hiddenDropout)
        try take(.attentionDropout, &attentionDropout)
        try take(.hypergraphDropout, &hypergraphDropout)
        try take(.hiddenActivation, &hiddenActivation)
        try take(.layerNormEps, &layerNormEps)
        try take(.initializerRange, &initializerRange)
        try take(.maskRatio, &maskRatio)
        try take(.hyperLength, &hyperLength)
        try take(.scales, &scales)
        try take(.windowBefore, &windowBefore)
        try take(.windowAfter, &windowAfter)
        // The reference writes the switches as 0/1.
        if let b = try? c.decodeIfPresent(Bool.self, forKey: .hypergraph) { hypergraph = b }
        else if let i = try c.decodeIfPresent(Int.self, forKey: .hypergraph) { hypergraph = i != 0 }
        if let b = try? c.decodeIfPresent(Bool.self, forKey: .multiScale) { multiScale = b }
        else if let i = try c.decodeIfPresent(Int.self, forKey: .multiScale) { multiScale = i != 0 }
        do { try validate() } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: error.localizedDescription))
        }
    }

    /// Checks every value.
    /// - Throws: `GraphError.invalidConfiguration` naming the first bad value and what is allowed.
    public func validate() throws {
        func bad(_ s: String) -> GraphError { .invalidConfiguration(s) }
        guard numItems >= 1 else { throw bad("n_items must be at least 1, got \(numItems)") }
        guard numBehaviors >= 1 else { throw bad("n_behaviors must be at least 1, got \(numBehaviors)") }
        guard (0..<numBehaviors).contains(targetBehavior) else {
            throw bad("target_behavior \(targetBehavior) is not in 0..<\(numBehaviors)")
        }
        guard maxSequenceLength >= 2 else { throw bad("MAX_ITEM_LIST_LENGTH must be at least 2, got \(maxSequenceLength)") }
        guard hiddenSize >= 1, heads >= 1, hiddenSize % heads == 0 else {
            throw bad("hidden_size \(hiddenSize) must be a positive multiple of n_heads \(heads)")
        }
        guard layers >= 1, innerSize >= 1 else { throw bad("n_layers and inner_size must be positive") }
        for (name, p) in [("hidden_dropout_prob", hiddenDropout), ("attn_dropout_prob", attentionDropout),
                          ("hgnn_dropout_prob", hypergraphDropout)] where !(p >= 0 && p < 1) {
            throw bad("\(name) must be in [0, 1), got \(p)")
        }
        guard maskRatio >= 0 && maskRatio < 1 else { throw bad("mask_ratio must be in [0, 1), got \(maskRatio)") }
        guard ["gelu", "relu", "swish", "tanh", "sigmoid"].contains(hiddenActivation) else {
            throw bad("hidden_act must be gelu, relu, swish, tanh or sigmoid, got \(hiddenActivation)")
        }
        guard layerNormEps > 0, initializerRange > 0 else { throw bad("layer_norm_eps and initializer_range must be positive") }
        guard hyperLength >= 1 else { throw bad("hyper_len must be at least 1, got \(hyperLength)") }
        guard windowBefore >= 1, windowAfter >= 0 else { throw bad("sw_before must be ≥ 1 and sw_follow ≥ 0") }
        if multiScale {
            guard scales.count == 3, scales.allSatisfy({ $0 >= 1 }) else {
                throw bad("scales must be three positive integers [k, s1, s2], got \(scales)")
            }
            guard maxSequenceLength % scales[1] == 0, maxSequenceLength % scales[2] == 0 else {
                throw bad("MAX_ITEM_LIST_LENGTH \(maxSequenceLength) must be divisible by the pooling scales \(scales[1]) and \(scales[2])")
            }
        }
    }

    /// Canonical JSON (sorted keys).
    public func canonicalJSON() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return String(decoding: (try? enc.encode(self)) ?? Data(), as: UTF8.self)
    }

    /// A stable 16-hex-digit fingerprint of the configuration (and of `extra`, e.g. a dataset
    /// fingerprint): equal fingerprints mean a cached `graph.safetensors` can be reused.
    public func fingerprint(extra: String = "") -> String {
        let h = SeededRNG.stableHash("mbht-v1|" + canonicalJSON() + "|" + extra)
        let s = String(h, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
