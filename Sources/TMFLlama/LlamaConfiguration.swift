import Foundation
import TMFCheckpoint

/// Errors of `TMFLlama`: a model folder's config.json missing, unreadable or inconsistent.
/// (Checkpoint problems — missing shards, missing or wrongly shaped tensors — are thrown as
/// `TMFCheckpoint.CheckpointError`, which names the file and every bad key.)
public enum LlamaError: Error, LocalizedError, Equatable {
    /// The folder has no config.json.
    case missingConfig(path: String)
    /// config.json is not a JSON object.
    case unreadableConfig(path: String, reason: String)
    /// A key of config.json is missing, of the wrong type, or has a value this model cannot use.
    case invalidConfig(path: String, key: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .missingConfig(path):
            return "No config.json in \(path): a Llama model folder needs the Hugging Face config.json next to its "
                + "model.safetensors. Point --llm at the folder that holds both."
        case let .unreadableConfig(path, reason):
            return "Cannot read \(path): \(reason). Replace it with the model's original config.json."
        case let .invalidConfig(path, key, reason):
            return "Bad value for \"\(key)\" in \(path.isEmpty ? "config.json" : path): \(reason). "
                + "Fix that key (it must match the checkpoint's tensors)."
        }
    }
}

/// A Llama-2-architecture configuration, read from a Hugging Face config.json.
///
/// Decoding validates every value and throws `LlamaError.invalidConfig` naming the key.
/// `rope_theta` is read at the top level (transformers 4) or from `rope_parameters`
/// (transformers 5); only the default rotary type (no scaling) is accepted.
public struct LlamaConfiguration: Codable, Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var hiddenLayers: Int
    public var attentionHeads: Int
    /// Grouped-query attention: key/value heads (divides `attentionHeads`); default = heads.
    public var kvHeads: Int
    /// Per-head width; default hiddenSize / attentionHeads.
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var vocabularySize: Int
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case hiddenLayers = "num_hidden_layers"
        case attentionHeads = "num_attention_heads"
        case kvHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case vocabularySize = "vocab_size"
        case tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings"
        case hiddenAct = "hidden_act"
        case attentionBias = "attention_bias"
        case mlpBias = "mlp_bias"
        case bosTokenId = "bos_token_id"
        case eosTokenId = "eos_token_id"
    }

    struct RopeParameters: Codable {
        var ropeTheta: Float?
        var ropeType: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type" }
    }

    /// A configuration from values (for tests and synthetic models); validated like a file.
    public init(hiddenSize: Int, intermediateSize: Int, hiddenLayers: Int, attentionHeads: Int,
                kvHeads: Int? = nil, headDim: Int? = nil, rmsNormEps: Float = 1e-6, ropeTheta: Float = 10000,
                vocabularySize: Int, tieWordEmbeddings: Bool = false, maxPositionEmbeddings: Int = 2048,
                bosTokenId: Int? = 1, eosTokenIds: [Int] = [2]) throws {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.hiddenLayers = hiddenLayers
        self.attentionHeads = attentionHeads
        self.kvHeads = kvHeads ?? attentionHeads
        self.headDim = headDim ?? (attentionHeads > 0 ? hiddenSize / attentionHeads : 0)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.vocabularySize = vocabularySize
        self.tieWordEmbeddings = tieWordEmbeddings
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.bosTokenId = bosTokenId
        self.eosTokenIds = eosTokenIds
        try validate(explicitHeadDim: headDim != nil)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func required(_ key: CodingKeys) throws -> Int {
            guard c.contains(key) else { throw LlamaError.invalidConfig(path: "", key: key.rawValue, reason: "missing") }
            guard let v = try? c.decode(Int.self, forKey: key) else {
                throw LlamaError.invalidConfig(path: "", key: key.rawValue, reason: "not an integer")
            }
            return v
        }
        func optional<T: Decodable>(_ type: T.Type, _ key: CodingKeys) throws -> T? {
            guard c.contains(key), !((try? c.decodeNil(forKey: key)) ?? false) else { return nil }
            guard let v = try? c.decode(T.self, forKey: key) else {
                throw LlamaError.invalidConfig(path: "", key: key.rawValue, reason: "has the wrong type (expected \(T.self))")
            }
            return v
        }
        hiddenSize = try required(.hiddenSize)
        intermediateSize = try required(.intermediateSize)
        hiddenLayers = try required(.hiddenLayers)
        attentionHeads = try required(.attentionHeads)
        vocabularySize = try required(.vocabularySize)
        kvHeads = try optional(Int.self, .kvHeads) ?? attentionHeads
        let explicitHeadDim = try optional(Int.self, .headDim)
        headDim = explicitHeadDim ?? (attentionHeads > 0 ? hiddenSize / attentionHeads : 0)
        rmsNormEps = try optional(Float.self, .rmsNormEps) ?? 1e-6
        tieWordEmbeddings = try optional(Bool.self, .tieWordEmbeddings) ?? false
        maxPositionEmbeddings = try optional(Int.self, .maxPositionEmbeddings) ?? 2048
        bosTokenId = try optional(Int.self, .bosTokenId)
        if let one = try? c.decode(Int.self, forKey: .eosTokenId) {
            eosTokenIds = [one]
        } else {
            eosTokenIds = try optional([Int].self, .eosTokenId) ?? []
        }
        var theta = try optional(Float.self, .ropeTheta)
        if let rp = try optional(RopeParameters.self, .ropeParameters) {
            if let t = rp.ropeTheta { theta = t }
            if let type = rp.ropeType, type != "default" {
                throw LlamaError.invalidConfig(path: "", key: "rope_parameters.rope_type",
                                               reason: "\"\(type)\" rotary scaling is not supported (only \"default\")")
            }
        }
        if c.contains(.ropeScaling), !((try? c.decodeNil(forKey: .ropeScaling)) ?? true) {
            throw LlamaError.invalidConfig(path: "", key: "rope_scaling", reason: "rotary scaling is not supported (must be null)")
        }
        ropeTheta = theta ?? 10000
        if let act = try optional(String.self, .hiddenAct), act != "silu" {
            throw LlamaError.invalidConfig(path: "", key: "hidden_act", reason: "\"\(act)\" is not supported (Llama uses \"silu\")")
        }
        if try optional(Bool.self, .attentionBias) == true {
            throw LlamaError.invalidConfig(path: "", key: "attention_bias", reason: "biases are not supported (must be false)")
        }
        if try optional(Bool.self, .mlpBias) == true {
            throw LlamaError.invalidConfig(path: "", key: "mlp_bias", reason: "biases are not supported (must be false)")
        }
        try validate(explicitHeadDim: explicitHeadDim != nil)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(hiddenLayers, forKey: .hiddenLayers)
        try c.encode(attentionHeads, forKey: .attentionHeads)
        try c.encode(kvHeads, forKey: .kvHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(vocabularySize, forKey: .vocabularySize)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
        try c.encode("silu", forKey: .hiddenAct)
        try c.encodeIfPresent(bosTokenId, forKey: .bosTokenId)
        if eosTokenIds.count == 1 { try c.encode(eosTokenIds[0], forKey: .eosTokenId) }
        else if !eosTokenIds.isEmpty { try c.encode(eosTokenIds, forKey: .eosTokenId) }
    }

    private func validate(explicitHeadDim: Bool) throws {
        func bad(_ key: String, _ reason: String) -> LlamaError { .invalidConfig(path: "", key: key, reason: reason) }
        for (key, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                         ("num_hidden_layers", hiddenLayers), ("num_attention_heads", attentionHeads),
                         ("num_key_value_heads", kvHeads), ("vocab_size", vocabularySize),
                         ("max_position_embeddings", maxPositionEmbeddings)] where v <= 0 {
            throw bad(key, "\(v) must be positive")
        }
        if attentionHeads % kvHeads != 0 {
            throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(attentionHeads)")
        }
        if !explicitHeadDim && hiddenSize % attentionHeads != 0 {
            throw bad("num_attention_heads", "\(attentionHeads) does not divide hidden_size \(hiddenSize)")
        }
        if headDim <= 0 || headDim % 2 != 0 { throw bad("head_dim", "\(headDim) must be positive and even (rotary pairs)") }
        if !(rmsNormEps > 0) || !rmsNormEps.isFinite { throw bad("rms_norm_eps", "\(rmsNormEps) must be positive") }
        if !(ropeTheta > 1) || !ropeTheta.isFinite { throw bad("rope_theta", "\(ropeTheta) must be greater than 1") }
        for id in eosTokenIds + [bosTokenId].compactMap({ $0 }) where id < 0 || id >= vocabularySize {
            throw bad(id == bosTokenId ? "bos_token_id" : "eos_token_id", "\(id) is outside the vocabulary 0..<\(vocabularySize)")
        }
    }

    /// Reads and validates `config.json` in `directory`.
    /// - Throws: `LlamaError.missingConfig`, `.unreadableConfig`, `.invalidConfig` (with the path).
    public static func load(directory: URL) throws -> LlamaConfiguration {
        let url = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else { throw LlamaError.missingConfig(path: directory.path) }
        let data: Data
        do { data = try readSmallFile(url) } catch {
            throw LlamaError.unreadableConfig(path: url.path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(LlamaConfiguration.self, from: data)
        } catch let LlamaError.invalidConfig(_, key, reason) {
            throw LlamaError.invalidConfig(path: url.path, key: key, reason: reason)
        } catch let DecodingError.dataCorrupted(context) {
            throw LlamaError.unreadableConfig(path: url.path, reason: "not valid JSON (\(context.debugDescription))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw LlamaError.unreadableConfig(path: url.path, reason: "not a JSON object (\(context.debugDescription))")
        } catch {
            throw LlamaError.unreadableConfig(path: url.path, reason: "\(error)")
        }
    }

    /// Number of weights (embeddings counted once when tied).
    public var parameterCount: Int {
        let d = hiddenSize, q = attentionHeads * headDim, kv = kvHeads * headDim
        let layer = d * q + 2 * d * kv + q * d + 3 * d * intermediateSize + 2 * d
        return vocabularySize * d * (tieWordEmbeddings ? 1 : 2) + hiddenLayers * layer + d
    }
}
