import TMFTensor

/// `CLIPVisionTransformer` (checkpoint prefix `vision_model`): a ViT over square patches.
///
/// pixels (N, C, S, S) → patch embedding (a stride-P convolution, computed as one matmul over
/// unfolded patches) → class token + positions → `pre_layrnorm` → encoder → `post_layernorm`
/// of the class token → (N, D).
public struct CLIPVisionTransformer: Module, Sendable {
    /// The configuration it was built from.
    public let configuration: CLIPVisionConfiguration
    let classEmbedding: Weight        // embeddings.class_embedding: (D), Float32
    let patchEmbedding: Weight        // embeddings.patch_embedding.weight: (D, C, P, P), no bias, Float32
    let positionEmbedding: Weight     // embeddings.position_embedding.weight: (1 + G², D), Float32
    let preLayerNorm: LayerNorm       // pre_layrnorm (sic, HF's spelling): (D), (D)
    let encoder: CLIPEncoder          // encoder.layers.{i}
    let postLayerNorm: LayerNorm      // post_layernorm: (D), (D)

    /// A transformer whose weights `load` supplies by key relative to `vision_model` (see
    /// `CLIPModel.init(configuration:_:)`). The class, patch and position embeddings are asked
    /// for with role `.vector`: they are used as Float32 tensors.
    public init(configuration c: CLIPVisionConfiguration, _ load: WeightLoader) throws {
        configuration = c
        let d = c.hiddenSize
        classEmbedding = try load("embeddings.class_embedding", shape: [d], role: .vector)
        patchEmbedding = try load("embeddings.patch_embedding.weight", shape: [d, c.channels, c.patchSize, c.patchSize], role: .vector)
        positionEmbedding = try load("embeddings.position_embedding.weight", shape: [c.tokenCount, d], role: .vector)
        preLayerNorm = try LayerNorm(dim: d, eps: c.layerNormEps, load.scoped("pre_layrnorm"))
        encoder = try CLIPEncoder(layers: c.hiddenLayers, width: d, intermediate: c.intermediateSize, heads: c.attentionHeads,
                                  activation: c.hiddenAct, eps: c.layerNormEps, load.scoped("encoder"))
        postLayerNorm = try LayerNorm(dim: d, eps: c.layerNormEps, load.scoped("post_layernorm"))
    }

    /// `embeddings.class_embedding` (D), `embeddings.patch_embedding.weight` (D, C, P, P),
    /// `embeddings.position_embedding.weight` (1 + G², D).
    public var ownWeights: [(String, Weight)] {
        [("embeddings.class_embedding", classEmbedding), ("embeddings.patch_embedding.weight", patchEmbedding),
         ("embeddings.position_embedding.weight", positionEmbedding)]
    }

    /// `pre_layrnorm` (D), `encoder`, `post_layernorm` (D).
    public var children: [(String, any Module)] {
        [("pre_layrnorm", preLayerNorm), ("encoder", encoder), ("post_layernorm", postLayerNorm)]
    }

    /// The expected pixel shape for `n` images: (n, C, S, S).
    public func pixelShape(count n: Int) -> [Int] {
        [n, configuration.channels, configuration.imageSize, configuration.imageSize]
    }

    /// Pooled output (transformers' `vision_model(...).pooler_output`): the class token's final
    /// state after `post_layernorm`, not projected.
    /// - Parameter pixels: (N, C, S, S) preprocessed images, N ≥ 1.
    /// - Returns: (N, D).
    /// - Throws: `CLIPError.invalidPixels` if the shape is not (N, C, S, S).
    public func pooled(_ pixels: Tensor) throws -> Tensor {
        let c = configuration
        guard pixels.rank == 4, pixels.shape[0] >= 1, pixels.shape == pixelShape(count: pixels.shape[0]) else {
            throw CLIPError.invalidPixels(expected: pixelShape(count: pixels.rank == 4 ? max(pixels.shape[0], 1) : 1),
                                          got: pixels.shape)
        }
        let n = pixels.shape[0], d = c.hiddenSize, patches = c.gridSize * c.gridSize
        return withNoGrad {
            let unfolded = pixels.unfoldedPatches(c.patchSize)                      // (N, G², C·P·P)
            let kernel = patchEmbedding.tensor.reshaped([d, c.channels * c.patchSize * c.patchSize])  // (D, C·P·P)
            let patchTokens = Tensor.linear(unfolded, weight: kernel)               // (N, G², D)
            let cls = classEmbedding.tensor.reshaped([1, 1, d])                     // (1, 1, D)
            let classTokens = Tensor.concat(Array(repeating: cls, count: n), axis: 0)  // (N, 1, D)
            let tokens = Tensor.concat([classTokens, patchTokens], axis: 1)         // (N, 1 + G², D)
            precondition(tokens.shape[1] == patches + 1)
            var h = tokens + positionEmbedding.tensor                               // (N, T, D), T = 1 + G²
            h = preLayerNorm(h)
            // Only the class token's final state is used: the last layer computes that row alone.
            let first = encoder.pooled(h, at: Array(repeating: 0, count: n), causal: false, keyMask: nil)  // (N, D)
            return postLayerNorm(first)                                             // (N, D)
        }
    }
}
