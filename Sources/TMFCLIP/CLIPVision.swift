import TMFTensor

/// `CLIPVisionTransformer` (checkpoint prefix `vision_model`): a ViT over square patches.
///
/// pixels (N, C, S, S) → patch embedding (a stride-P convolution, computed as one matmul over
/// unfolded patches) → class token + positions → `pre_layrnorm` → encoder → `post_layernorm`
/// of the class token → (N, D).
public struct CLIPVisionTransformer: Sendable {
    /// The configuration it was built from.
    public let configuration: CLIPVisionConfiguration
    let classEmbedding: Tensor        // embeddings.class_embedding: (D)
    let patchEmbedding: Tensor        // embeddings.patch_embedding.weight: (D, C, P, P), no bias
    let positionEmbedding: Tensor     // embeddings.position_embedding.weight: (1 + G², D)
    let preLayerNorm: CLIPLayerNorm   // pre_layrnorm (sic, HF's spelling): (D), (D)
    let encoder: CLIPEncoder          // encoder.layers.{i}
    let postLayerNorm: CLIPLayerNorm  // post_layernorm: (D), (D)

    /// A zero-initialised transformer (load weights with `CLIPModel.load`).
    public init(configuration c: CLIPVisionConfiguration) {
        configuration = c
        let d = c.hiddenSize
        classEmbedding = Tensor(zeros: [d])
        patchEmbedding = Tensor(zeros: [d, c.channels, c.patchSize, c.patchSize])
        positionEmbedding = Tensor(zeros: [c.tokenCount, d])
        preLayerNorm = CLIPLayerNorm(d, eps: c.layerNormEps)
        encoder = CLIPEncoder(layers: c.hiddenLayers, width: d, intermediate: c.intermediateSize,
                              heads: c.attentionHeads, activation: c.hiddenAct, eps: c.layerNormEps)
        postLayerNorm = CLIPLayerNorm(d, eps: c.layerNormEps)
    }

    var namedParameters: [(String, Tensor)] {
        [("embeddings.class_embedding", classEmbedding), ("embeddings.patch_embedding.weight", patchEmbedding),
         ("embeddings.position_embedding.weight", positionEmbedding)]
            + preLayerNorm.parameters(under: "pre_layrnorm") + encoder.parameters(under: "encoder")
            + postLayerNorm.parameters(under: "post_layernorm")
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
            let kernel = patchEmbedding.reshaped([d, c.channels * c.patchSize * c.patchSize])  // (D, C·P·P)
            let patchTokens = Tensor.linear(unfolded, weight: kernel)               // (N, G², D)
            let cls = classEmbedding.reshaped([1, 1, d])                            // (1, 1, D)
            let classTokens = Tensor.concat(Array(repeating: cls, count: n), axis: 0)  // (N, 1, D)
            let tokens = Tensor.concat([classTokens, patchTokens], axis: 1)         // (N, 1 + G², D)
            precondition(tokens.shape[1] == patches + 1)
            var h = tokens + positionEmbedding                                      // (N, T, D), T = 1 + G²
            h = preLayerNorm(h)
            // Only the class token's final state is used: the last layer computes that row alone.
            let first = encoder.pooled(h, at: Array(repeating: 0, count: n), causal: false, keyMask: nil)  // (N, D)
            return postLayerNorm(first)                                             // (N, D)
        }
    }
}
