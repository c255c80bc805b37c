import Foundation
import TMFCheckpoint

/// The activation between a CLIP MLP's two layers (`hidden_act`).
public enum CLIPActivation: String, Codable, Sendable {
    /// x·σ(1.702x), OpenAI CLIP's activation (transformers' `quick_gelu`).
    case quickGELU = "quick_gelu"
    /// Exact GELU, x·Φ(x) (transformers' `gelu`).
    case gelu
}

/// The text transformer's part of a Hugging Face `CLIPModel` config.json (`text_config`).
/// Absent keys take transformers' `CLIPTextConfig` defaults (those of ViT-B/32).
public struct CLIPTextConfiguration: Codable, Sendable, Equatable {
    /// Token-embedding rows (`vocab_size`, default 49408).
    public var vocabSize = 49408
    /// Width D (`hidden_size`, default 512).
    public var hiddenSize = 512
    /// MLP width (`intermediate_size`, default 2048).
    public var intermediateSize = 2048
    /// Encoder layers (`num_hidden_layers`, default 12).
    public var hiddenLayers = 12
    /// Attention heads; must divide `hiddenSize` (`num_attention_heads`, default 8).
    public var attentionHeads = 8
    /// Longest token sequence (`max_position_embeddings`, default 77).
    public var maxPositionEmbeddings = 77
    /// MLP activation (`hidden_act`, default `quick_gelu`).
    public var hiddenAct = CLIPActivation.quickGELU
    /// LayerNorm epsilon (`layer_norm_eps`, default 1e-5).
    public var layerNormEps: Float = 1e-5
    /// End-of-text id, where the text embedding is pooled (`eos_token_id`, default 49407).
    /// The legacy value 2 means "pool at the highest id" (transformers' rule for old configs).
    public var eosTokenID = 49407

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case hiddenLayers = "num_hidden_layers", attentionHeads = "num_attention_heads"
        case maxPositionEmbeddings = "max_position_embeddings", hiddenAct = "hidden_act"
        case layerNormEps = "layer_norm_eps", eosTokenID = "eos_token_id"
    }

    /// ViT-B/32's text transformer (transformers' defaults).
    public init() {}

    /// Decodes with defaults for absent keys; throws `CLIPError` naming the key for a bad value.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let r = ConfigReader(container: c, decoder: decoder)
        vocabSize = try r.positive(.vocabSize, default: vocabSize)
        hiddenSize = try r.positive(.hiddenSize, default: hiddenSize)
        intermediateSize = try r.positive(.intermediateSize, default: intermediateSize)
        hiddenLayers = try r.positive(.hiddenLayers, default: hiddenLayers)
        attentionHeads = try r.heads(.attentionHeads, default: attentionHeads, width: hiddenSize)
        maxPositionEmbeddings = try r.positive(.maxPositionEmbeddings, default: maxPositionEmbeddings)
        hiddenAct = try r.activation(.hiddenAct, default: hiddenAct)
        layerNormEps = try r.epsilon(.layerNormEps, default: layerNormEps)
        eosTokenID = try r.nonNegative(.eosTokenID, default: eosTokenID)
    }
}

/// The vision transformer's part of a Hugging Face `CLIPModel` config.json (`vision_config`).
/// Absent keys take transformers' `CLIPVisionConfig` defaults (those of ViT-B/32).
public struct CLIPVisionConfiguration: Codable, Sendable, Equatable {
    /// Width D (`hidden_size`, default 768).
    public var hiddenSize = 768
    /// MLP width (`intermediate_size`, default 3072).
    public var intermediateSize = 3072
    /// Encoder layers (`num_hidden_layers`, default 12).
    public var hiddenLayers = 12
    /// Attention heads; must divide `hiddenSize` (`num_attention_heads`, default 12).
    public var attentionHeads = 12
    /// Image channels (`num_channels`, default 3).
    public var channels = 3
    /// Square input side in pixels (`image_size`, default 224; `[s, s]` is accepted).
    public var imageSize = 224
    /// Square patch side and stride (`patch_size`, default 32; `[p, p]` is accepted).
    public var patchSize = 32
    /// MLP activation (`hidden_act`, default `quick_gelu`).
    public var hiddenAct = CLIPActivation.quickGELU
    /// LayerNorm epsilon (`layer_norm_eps`, default 1e-5).
    public var layerNormEps: Float = 1e-5

    enum CodingKeys: String, CodingKey {
        case hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case hiddenLayers = "num_hidden_layers", attentionHeads = "num_attention_heads"
        case channels = "num_channels", imageSize = "image_size", patchSize = "patch_size"
        case hiddenAct = "hidden_act", layerNormEps = "layer_norm_eps"
    }

    /// Patches per side, ⌊image_size / patch_size⌋ (as transformers' stride-P convolution).
    public var gridSize: Int { imageSize / patchSize }
    /// Tokens per image: the class token and one per patch.
    public var tokenCount: Int { gridSize * gridSize + 1 }

    /// ViT-B/32's vision transformer (transformers' defaults).
    public init() {}

    /// Decodes with defaults for absent keys; throws `CLIPError` naming the key for a bad value.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let r = ConfigReader(container: c, decoder: decoder)
        hiddenSize = try r.positive(.hiddenSize, default: hiddenSize)
        intermediateSize = try r.positive(.intermediateSize, default: intermediateSize)
        hiddenLayers = try r.positive(.hiddenLayers, default: hiddenLayers)
        attentionHeads = try r.heads(.attentionHeads, default: attentionHeads, width: hiddenSize)
        channels = try r.positive(.channels, default: channels)
        imageSize = try r.squareSide(.imageSize, default: imageSize)
        patchSize = try r.squareSide(.patchSize, default: patchSize)
        if patchSize > imageSize {
            throw r.invalid(.patchSize, "\(patchSize)", "it must not exceed image_size (\(imageSize))")
        }
        hiddenAct = try r.activation(.hiddenAct, default: hiddenAct)
        layerNormEps = try r.epsilon(.layerNormEps, default: layerNormEps)
    }
}

/// A Hugging Face `CLIPModel` config.json: both towers and the shared projection width.
///
/// Absent keys inside `text_config` / `vision_config` take transformers' defaults; the two
/// sections themselves are required (without them the folder is not a CLIP model). Values of
/// the wrong type, non-positive sizes, heads that do not divide the width, and activations
/// other than `quick_gelu` and `gelu` are rejected with a `CLIPError` naming the key.
public struct CLIPConfiguration: Codable, Sendable, Equatable {
    /// The text transformer (`text_config`; legacy `text_config_dict` is read when it is absent).
    public var text: CLIPTextConfiguration
    /// The vision transformer (`vision_config`; legacy `vision_config_dict` likewise).
    public var vision: CLIPVisionConfiguration
    /// Width of both embeddings (`projection_dim`, default 512).
    public var projectionDim = 512

    enum CodingKeys: String, CodingKey {
        case text = "text_config", vision = "vision_config", projectionDim = "projection_dim"
        case modelType = "model_type", textLegacy = "text_config_dict", visionLegacy = "vision_config_dict"
    }

    /// A configuration from parts (ViT-B/32 defaults).
    public init(text: CLIPTextConfiguration = .init(), vision: CLIPVisionConfiguration = .init(),
                projectionDim: Int = 512) {
        self.text = text
        self.vision = vision
        self.projectionDim = projectionDim
    }

    /// Decodes a CLIPModel config; see the type's documentation for what is rejected.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let r = ConfigReader(container: c, decoder: decoder)
        if let type = try? c.decodeIfPresent(String.self, forKey: .modelType), type != "clip" {
            throw r.invalid(.modelType, "\"\(type)\"", "tmf reads CLIPModel checkpoints (model_type \"clip\")")
        }
        func section<T: Decodable>(_ key: CodingKeys, legacy: CodingKeys) throws -> T {
            do {
                if let v = try c.decodeIfPresent(T.self, forKey: key) { return v }
                if let v = try c.decodeIfPresent(T.self, forKey: legacy) { return v }
            } catch let e as DecodingError {
                throw r.invalid(key, "not an object", "it must be a JSON object (\(e.shortDescription))")
            }
            throw CLIPError.missingConfigKey(key: key.stringValue, file: r.file)
        }
        text = try section(.text, legacy: .textLegacy)
        vision = try section(.vision, legacy: .visionLegacy)
        projectionDim = try r.positive(.projectionDim, default: projectionDim)
    }

    /// Encodes the keys this type reads, under transformers' names.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("clip", forKey: .modelType)
        try c.encode(text, forKey: .text)
        try c.encode(vision, forKey: .vision)
        try c.encode(projectionDim, forKey: .projectionDim)
    }

    /// Reads `config.json` at `url`.
    /// - Throws: `CLIPError.cannotReadConfig` (unreadable, not JSON), `.missingConfigKey`,
    ///   `.invalidConfigValue`, `.unsupportedActivation`; each names the file and the key.
    public static func load(contentsOf url: URL) throws -> CLIPConfiguration {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CLIPError.cannotReadConfig(file: url.path, reason: "the file does not exist")
        }
        let data: Data
        do { data = try readSmallFile(url) } catch {
            throw CLIPError.cannotReadConfig(file: url.path, reason: "it cannot be read (\(error.localizedDescription))")
        }
        return try decode(data, file: url.path)
    }

    /// Decodes config.json bytes; `file` names the source in errors.
    public static func decode(_ data: Data, file: String = "config.json") throws -> CLIPConfiguration {
        let decoder = JSONDecoder()
        decoder.userInfo[configFileKey] = file
        do {
            return try decoder.decode(CLIPConfiguration.self, from: data)
        } catch let e as CLIPError {
            throw e
        } catch let e as DecodingError {
            if case .typeMismatch = e {
                throw CLIPError.cannotReadConfig(file: file, reason: "the top level is not a JSON object")
            }
            throw CLIPError.cannotReadConfig(file: file, reason: "not valid JSON (\(e.shortDescription))")
        } catch {
            throw CLIPError.cannotReadConfig(file: file, reason: "\(error)")
        }
    }
}

/// The decoder's `userInfo` key for the config file's path (for messages).
let configFileKey = CodingUserInfoKey(rawValue: "tmf.clip.configFile")!

/// Reads config values with defaults, turning every problem into a `CLIPError` naming the
/// dotted key (`vision_config.patch_size`) and the file.
struct ConfigReader<K: CodingKey> {

    let container: KeyedDecodingContainer<K>
    let decoder: Decoder

    var file: String { decoder.userInfo[configFileKey] as? String ?? "config.json" }

    func path(_ key: K) -> String {
        (decoder.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
    }

    func invalid(_ key: K, _ value: String, _ reason: String) -> CLIPError {
        .invalidConfigValue(key: path(key), value: value, reason: reason, file: file)
    }

    /// The raw JSON value of `key` for messages, e.g. `"abc"` or `[1, 2]`.
    func shown(_ key: K) -> String {
        if let s = try? container.decode(String.self, forKey: key) { return "\"\(s)\"" }
        if let d = try? container.decode(Double.self, forKey: key) { return "\(d)" }
        if let a = try? container.decode([Double].self, forKey: key) { return "\(a)" }
        if let b = try? container.decode(Bool.self, forKey: key) { return "\(b)" }
        return "not a number"
    }

    func int(_ key: K, default value: Int) throws -> Int {
        do { return try container.decodeIfPresent(Int.self, forKey: key) ?? value } catch {
            throw invalid(key, shown(key), "it must be an integer")
        }
    }

    func positive(_ key: K, default value: Int) throws -> Int {
        let v = try int(key, default: value)
        if v < 1 { throw invalid(key, "\(v)", "it must be a positive integer") }
        return v
    }

    func nonNegative(_ key: K, default value: Int) throws -> Int {
        let v = try int(key, default: value)
        if v < 0 { throw invalid(key, "\(v)", "it must be a non-negative integer") }
        return v
    }

    func heads(_ key: K, default value: Int, width: Int) throws -> Int {
        let v = try positive(key, default: value)
        if width % v != 0 { throw invalid(key, "\(v)", "it must divide hidden_size (\(width))") }
        return v
    }

    /// A positive side length, given as `s` or as a square `[s, s]`.
    func squareSide(_ key: K, default value: Int) throws -> Int {
        let v: Int
        if let s = try? container.decodeIfPresent(Int.self, forKey: key) {
            v = s
        } else if let pair = try? container.decodeIfPresent([Int].self, forKey: key) {
            guard pair.count == 2, pair[0] == pair[1] else {
                throw invalid(key, "\(pair)", "only square sizes (s or [s, s]) are supported")
            }
            v = pair[0]
        } else if container.contains(key), (try? container.decodeNil(forKey: key)) != true {
            throw invalid(key, shown(key), "it must be an integer or [s, s]")
        } else {
            v = value
        }
        if v < 1 { throw invalid(key, "\(v)", "it must be a positive integer") }
        return v
    }

    func epsilon(_ key: K, default value: Float) throws -> Float {
        let v: Double
        do { v = try container.decodeIfPresent(Double.self, forKey: key) ?? Double(value) } catch {
            throw invalid(key, shown(key), "it must be a number")
        }
        if !(v > 0 && v < 1) { throw invalid(key, "\(v)", "it must be a small positive number such as 1e-5") }
        return Float(v)
    }

    func activation(_ key: K, default value: CLIPActivation) throws -> CLIPActivation {
        let name: String
        do {
            guard let s = try container.decodeIfPresent(String.self, forKey: key) else { return value }
            name = s
        } catch {
            throw invalid(key, shown(key), "it must be a string such as \"quick_gelu\"")
        }
        guard let act = CLIPActivation(rawValue: name) else {
            throw CLIPError.unsupportedActivation(key: path(key), value: name, file: file)
        }
        return act
    }
}

extension DecodingError {
    /// The debug description of the error's context, for messages.
    var shortDescription: String {
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .keyNotFound(_, c), let .dataCorrupted(c):
            return c.debugDescription
        @unknown default:
            return "\(self)"
        }
    }
}
