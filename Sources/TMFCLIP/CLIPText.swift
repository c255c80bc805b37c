import TMFTensor

/// `CLIPTextTransformer` (checkpoint prefix `text_model`): a causal transformer over token ids,
/// pooled at the end-of-text token.
///
/// ids (N, T) → token + position embeddings → encoder (causal, optional padding mask) →
/// `final_layer_norm` → the state at the pooled position → (N, D).
public struct CLIPTextTransformer: Module, Sendable {
    /// The configuration it was built from.
    public let configuration: CLIPTextConfiguration
    let tokenEmbedding: Embedding        // embeddings.token_embedding: (V, D)
    let positionEmbedding: Weight        // embeddings.position_embedding.weight: (maxT, D), Float32
    let encoder: CLIPEncoder             // encoder.layers.{i}
    let finalLayerNorm: LayerNorm        // final_layer_norm: (D), (D)

    /// A transformer whose weights `load` supplies by key relative to `text_model` (see
    /// `CLIPModel.init(configuration:_:)`). The position table is asked for with role `.vector`:
    /// it is used as a Float32 tensor.
    public init(configuration c: CLIPTextConfiguration, _ load: WeightLoader) throws {
        configuration = c
        let d = c.hiddenSize
        tokenEmbedding = try Embedding(count: c.vocabSize, width: d, load.scoped("embeddings.token_embedding"))
        positionEmbedding = try load("embeddings.position_embedding.weight", shape: [c.maxPositionEmbeddings, d], role: .vector)
        encoder = try CLIPEncoder(layers: c.hiddenLayers, width: d, intermediate: c.intermediateSize, heads: c.attentionHeads,
                                  activation: c.hiddenAct, eps: c.layerNormEps, load.scoped("encoder"))
        finalLayerNorm = try LayerNorm(dim: d, eps: c.layerNormEps, load.scoped("final_layer_norm"))
    }

    /// `embeddings.position_embedding.weight` (maxT, D).
    public var ownWeights: [(String, Weight)] { [("embeddings.position_embedding.weight", positionEmbedding)] }

    /// `embeddings.token_embedding` (V, D), `encoder`, `final_layer_norm` (D).
    public var children: [(String, any Module)] {
        [("embeddings.token_embedding", tokenEmbedding), ("encoder", encoder), ("final_layer_norm", finalLayerNorm)]
    }

    /// The position each sequence is pooled at, exactly as transformers' `CLIPTextTransformer`:
    /// with the legacy `eos_token_id == 2`, the first position of the largest id (OpenAI's
    /// end-of-text has the largest id); otherwise the first position of `eos_token_id`, or 0 if
    /// the sequence has none.
    public func pooledPositions(_ ids: [[Int]]) -> [Int] {
        let eos = configuration.eosTokenID
        return ids.map { row in
            if eos == 2 {
                var best = 0
                for (i, id) in row.enumerated() where id > row[best] { best = i }
                return best
            }
            return row.firstIndex(of: eos) ?? 0
        }
    }

    /// Pooled output (transformers' `text_model(...).pooler_output`), not projected.
    /// - Parameters:
    ///   - ids: N ≥ 1 sequences of equal length T, 1 ≤ T ≤ `max_position_embeddings`, ids in
    ///     0 ..< `vocab_size`.
    ///   - attentionMask: optional (N, T): 1 for real tokens, 0 for padding (keys at 0 are
    ///     hidden from every query, on top of the causal mask), as transformers' `attention_mask`.
    /// - Returns: (N, D).
    /// - Throws: `CLIPError.invalidTokens` for empty, ragged, too long or out-of-vocabulary
    ///   input, or a mask of another shape.
    public func pooled(_ ids: [[Int]], attentionMask: [[Int]]? = nil) throws -> Tensor {
        let c = configuration
        let n = ids.count, t = ids.first?.count ?? 0, d = c.hiddenSize
        guard n >= 1, t >= 1 else { throw CLIPError.invalidTokens(reason: "no tokens (\(n) sequences of \(t))") }
        guard ids.allSatisfy({ $0.count == t }) else {
            throw CLIPError.invalidTokens(reason: "sequences have different lengths \(Set(ids.map(\.count)).sorted()); pad them to one length")
        }
        guard t <= c.maxPositionEmbeddings else {
            throw CLIPError.invalidTokens(reason: "\(t) tokens, more than max_position_embeddings (\(c.maxPositionEmbeddings))")
        }
        if let bad = ids.lazy.flatMap({ $0 }).first(where: { $0 < 0 || $0 >= c.vocabSize }) {
            throw CLIPError.invalidTokens(reason: "id \(bad) is outside the vocabulary 0..<\(c.vocabSize)")
        }
        var keyMask: [[Bool]]?
        if let attentionMask {
            guard attentionMask.count == n, attentionMask.allSatisfy({ $0.count == t }) else {
                throw CLIPError.invalidTokens(reason: "the attention mask is not \(n) rows of \(t)")
            }
            keyMask = attentionMask.map { $0.map { $0 != 0 } }
            if keyMask!.allSatisfy({ $0.allSatisfy { $0 } }) { keyMask = nil }  // nothing hidden
        }
        let positions = pooledPositions(ids)
        return withNoGrad {
            let tokens = tokenEmbedding.rows(ids.flatMap { $0 }).reshaped([n, t, d])       // (N, T, D)
            let h0 = tokens + positionEmbedding.tensor.slice(axis: 0, 0..<t)                // (N, T, D)
            // Only the pooled positions are used: the last layer computes those rows alone, and
            // final_layer_norm acts per position, so norming only them is the same.
            let rows = encoder.pooled(h0, at: positions, causal: true, keyMask: keyMask)     // (N, D)
            return finalLayerNorm(rows)                                                      // (N, D)
        }
    }
}
