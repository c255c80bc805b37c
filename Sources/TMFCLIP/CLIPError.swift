import Foundation

/// Everything a user or a file can get wrong with a CLIP model: its config.json and its inputs.
/// (Checkpoint problems are `CheckpointError`s from TMFCheckpoint, e.g. `.keyMismatch`.)
public enum CLIPError: Error, LocalizedError, Equatable {
    /// config.json could not be read or is not a JSON object.
    case cannotReadConfig(file: String, reason: String)
    /// A key that has no default is absent (`key` is a dotted path, e.g. `vision_config`).
    case missingConfigKey(key: String, file: String)
    /// A key has a value of the wrong type or out of range.
    case invalidConfigValue(key: String, value: String, reason: String, file: String)
    /// `hidden_act` names an activation this implementation does not have.
    case unsupportedActivation(key: String, value: String, file: String)
    /// Pixels handed to the vision transformer do not have the configured shape.
    case invalidPixels(expected: [Int], got: [Int])
    /// Token ids handed to the text transformer are unusable (empty, ragged, too long, out of range).
    case invalidTokens(reason: String)

    /// One paragraph: what is wrong, where, and what to do.
    public var errorDescription: String? {
        switch self {
        case let .cannotReadConfig(file, reason):
            return "Cannot read CLIP config \(file): \(reason). Point --clip at a Hugging Face CLIPModel "
                + "folder (config.json + model.safetensors)."
        case let .missingConfigKey(key, file):
            return "CLIP config \(file) has no '\(key)'. A Hugging Face CLIPModel config.json has "
                + "'text_config' and 'vision_config' sections; check the folder holds a CLIP model "
                + "(not a text-only or vision-only one) and download config.json again."
        case let .invalidConfigValue(key, value, reason, file):
            return "CLIP config \(file): '\(key)' is \(value), but \(reason). Fix config.json or download it again."
        case let .unsupportedActivation(key, value, file):
            return "CLIP config \(file): '\(key)' is \"\(value)\", which tmf does not implement; supported "
                + "activations are \"quick_gelu\" (OpenAI CLIP) and \"gelu\" (exact erf GELU)."
        case let .invalidPixels(expected, got):
            return "CLIP images must be preprocessed pixels of shape \(expected) ([N, channels, size, size] "
                + "with N ≥ 1), got \(got). Preprocess with the model's image size (TMFImage)."
        case let .invalidTokens(reason):
            return "CLIP token ids are unusable: \(reason). Tokenize with the model's CLIP tokenizer and "
                + "truncate to max_position_embeddings tokens."
        }
    }
}
