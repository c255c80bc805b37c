import Foundation
import TMFCheckpoint
import TMFTensor

/// A Hugging Face `CLIPModel` (both towers and their projections) for inference on CPUs.
///
/// Built from the module layer (TMFTensor/Module.swift): its weights keep transformers' names
/// (`vision_model.…`, `text_model.…`, `visual_projection.weight`, `text_projection.weight`,
/// `logit_scale`), read off the modules (`namedWeights()`), and load strictly. The linear
/// layers' matrices and the token table are Float32 or 16-bit (`load(directory:dtype:)`), the
/// rest Float32. Embeddings are projected but not normalised, like transformers'
/// `get_image_features` / `get_text_features`.
///
/// ```swift
/// let clip = try CLIPModel.load(directory: url)
/// let images = try clip.imageEmbeddings(pixels)          // (N, P)
/// let texts = try clip.textEmbeddings(ids, attentionMask: mask)  // (N, P)
/// ```
public final class CLIPModel: Module, Sendable {
    /// The configuration it was built from.
    public let configuration: CLIPConfiguration
    /// `vision_model`.
    public let vision: CLIPVisionTransformer
    /// `text_model`.
    public let text: CLIPTextTransformer
    /// `visual_projection`: (P, Dv), no bias.
    public let visualProjection: Linear
    /// `text_projection`: (P, Dt), no bias.
    public let textProjection: Linear
    let logitScaleWeight: Weight  // logit_scale: (), Float32

    /// Checkpoint keys that older transformers versions saved and that carry no weights:
    /// the `position_ids` buffers (int64 aranges). Ignored when loading.
    public static let ignoredCheckpointKeys: [KeyPattern] = [
        .exact("text_model.embeddings.position_ids"), .exact("vision_model.embeddings.position_ids"),
    ]

    /// Builds the model, asking `load` for every weight by its transformers key: the matrices of
    /// the linear layers and the token embedding table with role `.matrix`; biases, LayerNorm
    /// weights and the tensors used as plain Float32 (class, patch and position embeddings,
    /// `logit_scale`) with role `.vector`, which must come as Float32 (or `.meta`, for listing
    /// keys). `load(directory:dtype:)` gives the matrices in the storage it chooses.
    public init(configuration: CLIPConfiguration, _ load: WeightLoader) throws {
        self.configuration = configuration
        vision = try CLIPVisionTransformer(configuration: configuration.vision, load.scoped("vision_model"))
        text = try CLIPTextTransformer(configuration: configuration.text, load.scoped("text_model"))
        visualProjection = try Linear(inFeatures: configuration.vision.hiddenSize, outFeatures: configuration.projectionDim,
                                      load.scoped("visual_projection"))
        textProjection = try Linear(inFeatures: configuration.text.hiddenSize, outFeatures: configuration.projectionDim,
                                    load.scoped("text_projection"))
        logitScaleWeight = try load("logit_scale", shape: [], role: .vector)
    }

    /// A zero-initialised model of `configuration`, LayerNorm weights one (fill it with `load(from:)`).
    public convenience init(configuration: CLIPConfiguration) {
        try! self.init(configuration: configuration, WeightLoader { key, shape, _ in
            .float(CLIPModel.isLayerNormWeight(key) ? Tensor(repeating: 1, shape: shape) : Tensor(zeros: shape))
        })
    }

    /// Whether `key` is a LayerNorm weight (`….layer_norm1.weight`, `….pre_layrnorm.weight`, …).
    static func isLayerNormWeight(_ key: String) -> Bool {
        let parts = key.split(separator: ".")
        return parts.count >= 2 && parts[parts.count - 1] == "weight" && parts[parts.count - 2].contains("norm")
    }

    /// `logit_scale`: a scalar (the log of the contrastive temperature's inverse), shape ().
    public var logitScale: Tensor { logitScaleWeight.tensor }

    /// `logit_scale` ().
    public var ownWeights: [(String, Weight)] { [("logit_scale", logitScaleWeight)] }

    /// `vision_model`, `text_model`, `visual_projection` (P, Dv), `text_projection` (P, Dt).
    public var children: [(String, any Module)] {
        [("vision_model", vision), ("text_model", text), ("visual_projection", visualProjection),
         ("text_projection", textProjection)]
    }

    /// Every weight name of configuration `c` with its shape (what a checkpoint must hold), read
    /// off a meta model (no memory).
    public static func expectedWeights(_ c: CLIPConfiguration) -> [String: [Int]] {
        try! CLIPModel(configuration: c, .meta).weightShapes()
    }

    /// Every parameter under its Hugging Face checkpoint name.
    public var parameters: [String: Tensor] { Dictionary(uniqueKeysWithValues: namedParameters()) }

    /// Copies a checkpoint's tensors into the parameters, strictly (every parameter present with
    /// its shape, nothing unexpected except `ignoredCheckpointKeys`). F32, F16 and BF16 are read.
    /// - Throws: `CheckpointError.keyMismatch` listing every missing, unexpected and wrongly shaped
    ///   key; other `CheckpointError`s for unreadable tensors. Nothing is copied on a mismatch.
    public func load(from source: some TensorSource) throws {
        try loadStrict(parameters, from: source, allowUnexpected: Self.ignoredCheckpointKeys)
    }

    /// Reads a Hugging Face CLIP folder: `config.json` and `model.safetensors` (or a sharded
    /// index). The checkpoint must hold exactly `expectedWeights` (plus `ignoredCheckpointKeys`).
    /// - Parameter dtype: how to hold the linear layers' matrices and the token table: `.bf16` /
    ///   `.f16` in 16 bits (in place when stored so), `.f32` widened; nil: as the checkpoint
    ///   stores its matrices. Everything else (biases, norms, patch and position embeddings) is
    ///   Float32.
    /// - Throws: `CLIPError` for config.json problems; `CheckpointError` for a missing checkpoint
    ///   or shard, unreadable files, (in one `.keyMismatch`) every missing, unexpected or wrongly
    ///   shaped tensor, and `.cannotConvertToFloat32` for integer data.
    public static func load(directory: URL, dtype: WeightStorageType? = nil) throws -> CLIPModel {
        let configuration = try CLIPConfiguration.load(contentsOf: directory.appendingPathComponent("config.json"))
        let folder = try CheckpointFolder(directory: directory)
        let expected = expectedWeights(configuration)
        try checkStrict(expected, in: folder, allowUnexpected: ignoredCheckpointKeys)
        let storage = try dtype ?? folder.matrixStorageType(of: expected.keys)
        return try CLIPModel(configuration: configuration, folder.weightLoader(dtype: storage))
    }

    /// Image embeddings, transformers' `get_image_features` (projected, not normalised).
    /// - Parameter pixels: (N, C, S, S) preprocessed images (S = `vision_config.image_size`).
    /// - Returns: (N, projection_dim).
    /// - Throws: `CLIPError.invalidPixels` for another shape.
    public func imageEmbeddings(_ pixels: Tensor) throws -> Tensor {
        let pooled = try vision.pooled(pixels)  // (N, Dv)
        return withNoGrad { visualProjection(pooled) }  // (N, P)
    }

    /// Text embeddings, transformers' `get_text_features` (projected, not normalised).
    /// - Parameters:
    ///   - ids: N sequences of T token ids (equal lengths; pad them), T ≤ max_position_embeddings.
    ///   - attentionMask: optional (N, T) of 1 (token) / 0 (padding).
    /// - Returns: (N, projection_dim).
    /// - Throws: `CLIPError.invalidTokens` for unusable ids or mask.
    public func textEmbeddings(_ ids: [[Int]], attentionMask: [[Int]]? = nil) throws -> Tensor {
        let pooled = try text.pooled(ids, attentionMask: attentionMask)  // (N, Dt)
        return withNoGrad { textProjection(pooled) }  // (N, P)
    }
}
