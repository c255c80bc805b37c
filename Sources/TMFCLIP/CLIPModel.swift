import Foundation
import TMFCheckpoint
import TMFTensor

/// A Hugging Face `CLIPModel` (both towers and their projections) for inference on CPUs.
///
/// Weights keep transformers' names (`vision_model.…`, `text_model.…`, `visual_projection.weight`,
/// `text_projection.weight`, `logit_scale`) and load strictly. Embeddings are projected but not
/// normalised, like transformers' `get_image_features` / `get_text_features`.
///
/// ```swift
/// let clip = try CLIPModel.load(directory: url)
/// let images = try clip.imageEmbeddings(pixels)          // (N, P)
/// let texts = try clip.textEmbeddings(ids, attentionMask: mask)  // (N, P)
/// ```
public final class CLIPModel: Sendable {
    /// The configuration the model was built from.
    public let configuration: CLIPConfiguration
    /// `vision_model`.
    public let vision: CLIPVisionTransformer
    /// `text_model`.
    public let text: CLIPTextTransformer
    let visualProjection: Tensor  // visual_projection.weight: (P, Dv), no bias
    let textProjection: Tensor    // text_projection.weight: (P, Dt), no bias
    /// `logit_scale`: a scalar (the log of the contrastive temperature's inverse).
    public let logitScale: Tensor  // ()

    /// Checkpoint keys that older transformers versions saved and that carry no weights:
    /// the `position_ids` buffers (int64 aranges). Ignored when loading.
    public static let ignoredCheckpointKeys: [KeyPattern] = [
        .exact("text_model.embeddings.position_ids"), .exact("vision_model.embeddings.position_ids"),
    ]

    /// A zero-initialised model of `configuration` (fill it with `load(from:)`).
    public init(configuration: CLIPConfiguration) {
        self.configuration = configuration
        vision = CLIPVisionTransformer(configuration: configuration.vision)
        text = CLIPTextTransformer(configuration: configuration.text)
        visualProjection = Tensor(zeros: [configuration.projectionDim, configuration.vision.hiddenSize])
        textProjection = Tensor(zeros: [configuration.projectionDim, configuration.text.hiddenSize])
        logitScale = Tensor(scalar: 0)
    }

    /// Every parameter under its Hugging Face checkpoint name.
    public var parameters: [String: Tensor] {
        var all: [String: Tensor] = [:]
        for (name, tensor) in vision.namedParameters { all["vision_model." + name] = tensor }
        for (name, tensor) in text.namedParameters { all["text_model." + name] = tensor }
        all["visual_projection.weight"] = visualProjection
        all["text_projection.weight"] = textProjection
        all["logit_scale"] = logitScale
        return all
    }

    /// Copies a checkpoint's tensors into the parameters, strictly (every parameter present with
    /// its shape, nothing unexpected except `ignoredCheckpointKeys`). F32, F16 and BF16 are read.
    /// - Throws: `CheckpointError.keyMismatch` listing every missing, unexpected and wrongly shaped
    ///   key; other `CheckpointError`s for unreadable tensors. Nothing is copied on a mismatch.
    public func load(from source: some TensorSource) throws {
        try loadStrict(parameters, from: source, allowUnexpected: Self.ignoredCheckpointKeys)
    }

    /// Reads a Hugging Face CLIP folder: `config.json` and `model.safetensors` (or a sharded index).
    /// - Throws: `CLIPError` for config.json problems, `CheckpointError` for the weights.
    public static func load(directory: URL) throws -> CLIPModel {
        let configuration = try CLIPConfiguration.load(contentsOf: directory.appendingPathComponent("config.json"))
        let model = CLIPModel(configuration: configuration)
        try model.load(from: CheckpointFolder(directory: directory))
        return model
    }

    /// Image embeddings, transformers' `get_image_features` (projected, not normalised).
    /// - Parameter pixels: (N, C, S, S) preprocessed images (S = `vision_config.image_size`).
    /// - Returns: (N, projection_dim).
    /// - Throws: `CLIPError.invalidPixels` for another shape.
    public func imageEmbeddings(_ pixels: Tensor) throws -> Tensor {
        let pooled = try vision.pooled(pixels)  // (N, Dv)
        return withNoGrad { Tensor.linear(pooled, weight: visualProjection) }  // (N, P)
    }

    /// Text embeddings, transformers' `get_text_features` (projected, not normalised).
    /// - Parameters:
    ///   - ids: N sequences of T token ids (equal lengths; pad them), T ≤ max_position_embeddings.
    ///   - attentionMask: optional (N, T) of 1 (token) / 0 (padding).
    /// - Returns: (N, projection_dim).
    /// - Throws: `CLIPError.invalidTokens` for unusable ids or mask.
    public func textEmbeddings(_ ids: [[Int]], attentionMask: [[Int]]? = nil) throws -> Tensor {
        let pooled = try text.pooled(ids, attentionMask: attentionMask)  // (N, Dt)
        return withNoGrad { Tensor.linear(pooled, weight: textProjection) }  // (N, P)
    }
}
