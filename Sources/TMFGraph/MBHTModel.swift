import Foundation
import TMFTensor

/// A batch of sequences laid out for MBHT: right-padded to T positions (reference layout: the
/// events, then the masked slot, then padding).
struct MBHTBatch {
    let size: Int                 // B
    let length: Int               // T
    var items: [Int]              // (B·T) rows of the item table (mask / padding rows included)
    var types: [Int]              // (B·T) rows of the type table (0 = masked or padding)
    var lengths: [Int]            // n_b: non-padding positions of each sequence
    var readout: [[Int]]          // masked positions whose hypergraph embedding is read out
    var training: Bool            // training read-out windows (before and after) or inference
    var lossRows: [Int] = []      // flat b·T + p rows predicted in training
    var lossTargets: [Int] = []   // their true items
    var queryRows: [Int] = []     // inference: the flat row of each sequence's masked slot

    /// The training batch of sequences `range` only (a data-parallel rank's part).
    func sequences(_ range: Range<Int>) -> MBHTBatch {
        let t = length, lo = range.lowerBound * t, hi = range.upperBound * t
        var part = MBHTBatch(size: range.count, length: t, items: Array(items[lo..<hi]), types: Array(types[lo..<hi]),
                             lengths: Array(lengths[range]), readout: Array(readout[range]), training: training)
        for (row, target) in zip(lossRows, lossTargets) where (lo..<hi).contains(row) {
            part.lossRows.append(row - lo); part.lossTargets.append(target)
        }
        return part
    }
}

/// MBHT (Yang et al., KDD'22): multi-scale transformer and multi-behavior hypergraph views of a
/// user's (item, behavior) sequence, fused by attention; trained by Cloze masked-item prediction
/// with cross-entropy over all items; scores an item by the dot product of the fused
/// representation at the masked last slot with the item's embedding.
///
/// Item table rows: 0..<numItems are items, `numItems` is the mask token, `numItems + 1`
/// padding (kept zero). Behavior table rows: 0 is masked/padding (kept zero), b + 1 is behavior b.
///
/// Differences from the reference code (yuh-yang/MBHT-KDD22, `mbht.py`, `layers.py`), and why:
/// - Coarser scales mean-pool *consecutive* windows of s positions, as the paper describes; the
///   reference's `reshape(B, s, T/s, d).mean(1)` averages positions T/s apart instead.
/// - The sequence-axis layers (E, F, `out_fc`) are sized by T; the reference hard-codes 200.
/// - The cross-entropy runs over the real items only; the reference's also covers the padding
///   and mask rows, which can never be a target.
/// - A masked position 0 is read out like any other (the reference skips index 0, its padding
///   sentinel); an empty read-out window gives zeros (the reference gives NaN).
/// - Ties: top-k positions tie-break by position; an item reached twice keeps the larger weight
///   (the reference keeps whichever write comes last in an unspecified order).
/// - `gating_bias` starts at zero (the reference leaves it uninitialised); the unused
///   `hg_type_embedding` is omitted; the behavior table has numBehaviors + 1 rows (reference: 6).
/// - The read-out windows (`sw_before`, `sw_follow`) are configuration (reference: hard-coded per
///   dataset; the default here is its Tmall setting, 20 / 12).
public final class MBHTModel: Module, @unchecked Sendable {
    public let configuration: MBHTConfiguration

    let itemEmbedding: Tensor      // (N + 2, d)
    let positionEmbedding: Tensor  // (T, d)
    let typeEmbedding: Tensor      // (nb + 1, d)
    let inputNorm: LayerNorm
    let layers: [TransformerLayer]
    let hypergraph: HypergraphNetwork
    let gatingWeight: Tensor       // (d, d), applied as x · W
    let gatingBias: Tensor         // (1, d)
    let metricW1, metricW2: Tensor // (1, d)
    let attnWeights: Tensor        // (d, d)
    let attn: Tensor               // (1, d)

    /// Mask token row of the item table.
    public var maskToken: Int { configuration.numItems }
    /// Padding row of the item table.
    var paddingToken: Int { configuration.numItems + 1 }

    /// A freshly initialised model (the reference's initialisation: N(0, initializer_range) for
    /// embeddings, linear layers and the gating / metric / fusion weights; zero biases; padding
    /// rows zero).
    /// - Throws: `GraphError.invalidConfiguration`.
    public init(configuration c: MBHTConfiguration, seed: UInt64 = 0) throws {
        try c.validate()
        configuration = c
        var rng = SeededRNG(seed: seed, key: ["mbht-init"])
        let d = c.hiddenSize, std = c.initializerRange
        typeEmbedding = Tensor.normal([c.numBehaviors + 1, d], std: std, rng: &rng, requiresGrad: true)
        itemEmbedding = Tensor.normal([c.numItems + 2, d], std: std, rng: &rng, requiresGrad: true)
        positionEmbedding = Tensor.normal([c.maxSequenceLength, d], std: std, rng: &rng, requiresGrad: true)
        layers = (0..<c.layers).map { _ in TransformerLayer(c, rng: &rng) }
        hypergraph = HypergraphNetwork(c, rng: &rng)
        inputNorm = LayerNorm(d, eps: c.layerNormEps)
        metricW1 = Tensor.normal([1, d], std: std, rng: &rng, requiresGrad: true)
        metricW2 = Tensor.normal([1, d], std: std, rng: &rng, requiresGrad: true)
        gatingWeight = Tensor.normal([d, d], std: std, rng: &rng, requiresGrad: true)
        gatingBias = Tensor(zeros: [1, d], requiresGrad: true)
        attnWeights = Tensor.normal([d, d], std: std, rng: &rng, requiresGrad: true)
        attn = Tensor.normal([1, d], std: std, rng: &rng, requiresGrad: true)
        zeroFrozenRows()
    }

    /// `item_embedding.weight` (N + 2, d), `position_embedding.weight` (T, d),
    /// `type_embedding.weight` (nb + 1, d).
    public var ownWeights: [(String, Weight)] {
        [("item_embedding.weight", .float(itemEmbedding)), ("position_embedding.weight", .float(positionEmbedding)),
         ("type_embedding.weight", .float(typeEmbedding))]
    }

    /// `LayerNorm` (d), `trm_encoder.layer.{i}`; with the hypergraph view, `hgnn_layer` and then
    /// the top-level `gating_weight` (d, d), `gating_bias` (1, d), `metric_w1`, `metric_w2` (1, d),
    /// `attn_weights` (d, d), `attn` (1, d) (the plain variant has none of these).
    public var children: [(String, any Module)] {
        var out: [(String, any Module)] = [("LayerNorm", inputNorm)]
        out += layers.enumerated().map { ("trm_encoder.layer.\($0.offset)", $0.element) }
        if configuration.hypergraph {
            out.append(("hgnn_layer", hypergraph))
            out.append(("", WeightGroup(ownWeights: [
                ("gating_weight", .float(gatingWeight)), ("gating_bias", .float(gatingBias)),
                ("metric_w1", .float(metricW1)), ("metric_w2", .float(metricW2)),
                ("attn_weights", .float(attnWeights)), ("attn", .float(attn)),
            ])))
        }
        return out
    }

    /// Every parameter under its checkpoint key (the reference's module names), read off the
    /// modules (`namedWeights()`).
    public var namedParameters: [(name: String, tensor: Tensor)] {
        namedWeights().map { (name: $0.0, tensor: $0.1.tensor) }
    }

    /// The trainable tensors.
    public var parameters: [Tensor] { namedParameters.map(\.tensor) }

    /// Keeps the padding item row and the masked/padding behavior row at zero (padding_idx).
    func zeroFrozenRows() {
        let d = configuration.hiddenSize
        (itemEmbedding.pointer + paddingToken * d).update(repeating: 0, count: d)
        typeEmbedding.pointer.update(repeating: 0, count: d)
    }

    /// Clears the gradients of the frozen rows (call before the optimiser step).
    func zeroFrozenGradients() {
        let d = configuration.hiddenSize
        if let g = itemEmbedding.grad { (g.pointer + paddingToken * d).update(repeating: 0, count: d) }
        if let g = typeEmbedding.grad { g.pointer.update(repeating: 0, count: d) }
    }

    // MARK: embeddings for the fusion stage

    /// v_graph^i: the learnt item embeddings [numItems, d] (a copy, without mask and padding rows).
    public func itemEmbeddings() -> Tensor {
        withNoGrad { itemEmbedding.slice(axis: 0, 0..<configuration.numItems) }.detached()
    }

    /// v_graph^b: the learnt behavior-type embeddings [numBehaviors, d] (a copy, row b is behavior b).
    public func behaviorEmbeddings() -> Tensor {
        withNoGrad { typeEmbedding.slice(axis: 0, 1..<(configuration.numBehaviors + 1)) }.detached()
    }

    // MARK: batches

    /// The last T − 1 events of a history.
    func truncated(_ history: ArraySlice<GraphEvent>) -> ArraySlice<GraphEvent> {
        history.suffix(configuration.maxSequenceLength - 1)
    }

    /// Cloze training batch: each history (≤ T − 1 events) with its target appended as a masked
    /// last position; every history position is masked with probability `maskRatio`. The loss
    /// covers the last ⌊maskRatio · T⌋ masked positions (at least the target), as the reference.
    func trainingBatch(_ examples: [(history: ArraySlice<GraphEvent>, target: Int)], rng: inout SeededRNG) -> MBHTBatch {
        let t = configuration.maxSequenceLength, b = examples.count
        var batch = MBHTBatch(size: b, length: t, items: [Int](repeating: paddingToken, count: b * t),
                              types: [Int](repeating: 0, count: b * t), lengths: [], readout: [], training: true)
        let maxMasked = max(1, Int(configuration.maskRatio * Float(t)))
        for (s, ex) in examples.enumerated() {
            let h = truncated(ex.history)
            var masked: [Int] = []
            var truth: [Int] = []
            for (p, e) in h.enumerated() {
                if rng.nextFloat() < configuration.maskRatio {
                    batch.items[s * t + p] = maskToken
                    masked.append(p); truth.append(e.item)
                } else {
                    batch.items[s * t + p] = e.item
                    batch.types[s * t + p] = e.behavior + 1
                }
            }
            let last = h.count
            batch.items[s * t + last] = maskToken
            masked.append(last); truth.append(ex.target)
            let kept = max(0, masked.count - maxMasked)
            batch.lengths.append(last + 1)
            batch.readout.append(Array(masked[kept...]))
            for (p, y) in zip(masked[kept...], truth[kept...]) {
                batch.lossRows.append(s * t + p); batch.lossTargets.append(y)
            }
        }
        return batch
    }

    /// Inference batch: each history (last T − 1 events) followed by the masked slot.
    func inferenceBatch(_ histories: [ArraySlice<GraphEvent>]) -> MBHTBatch {
        let t = configuration.maxSequenceLength, b = histories.count
        var batch = MBHTBatch(size: b, length: t, items: [Int](repeating: paddingToken, count: b * t),
                              types: [Int](repeating: 0, count: b * t), lengths: [], readout: [], training: false)
        for (s, full) in histories.enumerated() {
            let h = truncated(full)
            for (p, e) in h.enumerated() {
                batch.items[s * t + p] = e.item
                batch.types[s * t + p] = e.behavior + 1
            }
            batch.items[s * t + h.count] = maskToken
            batch.lengths.append(h.count + 1)
            batch.readout.append([h.count])
            batch.queryRows.append(s * t + h.count)
        }
        return batch
    }

    // MARK: forward

    /// The fused sequence representation [B, T, d].
    func forward(_ batch: MBHTBatch, _ ctx: inout ForwardContext) -> Tensor {
        let c = configuration
        let b = batch.size, t = batch.length, d = c.hiddenSize
        let itemEmb = itemEmbedding.gatherRows(batch.items).reshaped([b, t, d])          // (B, T, d)
        let typeEmb = typeEmbedding.gatherRows(batch.types).reshaped([b, t, d])          // (B, T, d)
        var x = inputNorm(itemEmb + positionEmbedding + typeEmb)
        x = ctx.dropout(x, c.hiddenDropout)

        var keepValues = [Float](repeating: 0, count: b * t)
        var keyMask = [[Bool]](repeating: [Bool](repeating: false, count: t), count: b)
        for s in 0..<b { for p in 0..<batch.lengths[s] { keepValues[s * t + p] = 1; keyMask[s][p] = true } }
        let keep = Tensor(keepValues, shape: [b, 1, t, 1])
        for layer in layers { x = layer(x, keep: keep, keyMask: keyMask, &ctx) }
        guard c.hypergraph else { return x }

        let graphView = hypergraphView(itemEmb, batch, &ctx)                            // (B, T, d)
        // Attention fusion of the two views: softmax over views of (v · W_a) · a.
        let wSeq = (Tensor.matmul(x, attnWeights) * attn).sum(axis: -1, keepDim: true)  // (B, T, 1)
        let wGraph = (Tensor.matmul(graphView, attnWeights) * attn).sum(axis: -1, keepDim: true)
        let alpha = Tensor.concat([wSeq, wGraph], axis: -1).softmax()                    // (B, T, 2)
        let parts = alpha.split(axis: -1, sizes: [1, 1])
        return x * parts[0] + graphView * parts[1]
    }

    /// The hypergraph view [B, T, d] of the item embeddings [B, T, d].
    func hypergraphView(_ itemEmb: Tensor, _ batch: MBHTBatch, _ ctx: inout ForwardContext) -> Tensor {
        // Gated item embeddings and the learnt metric.
        let gated = itemEmb * (Tensor.matmul(itemEmb, gatingWeight) + gatingBias).sigmoid()  // (B, T, d)
        let metric = gated * (metricW1 + metricW2).scale(0.5)
        let unit = metric.l2Normalized()
        let sim = Tensor.matmul(unit, unit, transposeB: true)                             // (B, T, T)
        let g = propagation(similarity: sim, batch)                                      // (B, T, T)
        let conv = hypergraph(gated, g, &ctx)                                              // (B, T, d)
        return Tensor.matmul(readoutMatrix(batch), conv)                                   // (B, T, d)
    }

    /// The read-out maps of the batch [B, T, T] (identity except at the read-out positions).
    func readoutMatrix(_ batch: MBHTBatch) -> Tensor {
        let c = configuration, b = batch.size, t = batch.length
        var readout = [Float](repeating: 0, count: b * t * t)
        for s in 0..<b {
            let n = batch.lengths[s]
            let r = HypergraphReadout.matrix(n: n, positions: batch.readout[s], before: c.windowBefore,
                                             after: batch.training ? c.windowAfter : nil)
            for i in 0..<n { for j in 0..<n { readout[(s * t + i) * t + j] = r[i][j] } }
        }
        return Tensor(readout, shape: [b, t, t])
    }

    /// The hypergraph propagation matrices G = Dv⁻¹ H De⁻¹ Hᵀ [B, T, T] of the batch's sequences
    /// from the similarity [B, T, T] (zero rows and columns at padding). The hyperedge selection
    /// is not differentiated; the similarity weights in H are, through `placed`.
    func propagation(similarity sim: Tensor, _ batch: MBHTBatch) -> Tensor {
        let c = configuration
        let b = batch.size, t = batch.length
        var graphs: [SequenceHypergraph] = []
        graphs.reserveCapacity(b)
        let sp = sim.pointer
        for s in 0..<b {
            let n = batch.lengths[s]
            let rows = (0..<n).map { i in Array(UnsafeBufferPointer(start: sp + (s * t + i) * t, count: n)) }
            let items = (0..<n).map { batch.items[s * t + $0] }
            graphs.append(SequenceHypergraph(items: items, maskToken: maskToken, similarity: rows,
                                             hyperLength: c.hyperLength))
        }
        let edges = max(1, graphs.map(\.edgeCount).max() ?? 1)
        var sources: [Int] = [], destinations: [Int] = []
        var constants = [Float](repeating: 0, count: b * t * edges)
        var rowPad = [Float](repeating: 0, count: b * t)       // 1 on padding rows (avoid 0/0)
        var edgePad = [Float](repeating: 0, count: b * edges)  // 1 on unused edges
        for (s, g) in graphs.enumerated() {
            for e in g.entries {
                let dst = (s * t + e.node) * edges + e.edge
                switch e.weight {
                case .constant(let v): constants[dst] = v
                case .similarity(let j):
                    sources.append((s * t + e.node) * t + j); destinations.append(dst)
                }
            }
            for p in g.nodeCount..<t { rowPad[s * t + p] = 1 }
            for e in g.edgeCount..<edges { edgePad[s * edges + e] = 1 }
        }
        let h = sim.placed(into: [b, t, edges], sources: sources, destinations: destinations)
            + Tensor(constants, shape: [b, t, edges])                                       // (B, T, E)
        let dv = h.sum(axis: 2, keepDim: true) + Tensor(rowPad, shape: [b, t, 1])         // (B, T, 1)
        let de = h.sum(axis: 1, keepDim: true) + Tensor(edgePad, shape: [b, 1, edges])    // (B, 1, E)
        return Tensor.matmul(h / dv, h / de, transposeB: true)
    }

    /// Mean cross-entropy over all items at the batch's masked positions.
    func loss(_ batch: MBHTBatch, _ ctx: inout ForwardContext) -> Tensor {
        let out = forward(batch, &ctx)
        let rows = out.reshaped([batch.size * batch.length, configuration.hiddenSize]).gatherRows(batch.lossRows)
        let table = itemEmbedding.slice(axis: 0, 0..<configuration.numItems)             // (N, d)
        let logits = Tensor.matmul(rows, table, transposeB: true)                          // (M, N)
        return Tensor.crossEntropy(logits, targets: batch.lossTargets)
    }

    /// The fused representation at the masked slot of each history [B, d] (eval mode).
    func queryVectors(_ histories: [ArraySlice<GraphEvent>]) -> Tensor {
        withNoGrad {
            var ctx = ForwardContext(training: false, rng: SeededRNG(seed: 0))
            let batch = inferenceBatch(histories)
            let out = forward(batch, &ctx)
            return out.reshaped([batch.size * batch.length, configuration.hiddenSize]).gatherRows(batch.queryRows)
        }
    }

    // MARK: scoring

    func checkHistory(_ h: [GraphEvent]) throws {
        for e in h {
            guard (0..<configuration.numItems).contains(e.item) else {
                throw GraphError.invalidInput("item index \(e.item) is not in 0..<\(configuration.numItems)")
            }
            guard (0..<configuration.numBehaviors).contains(e.behavior) else {
                throw GraphError.invalidInput("behavior index \(e.behavior) is not in 0..<\(configuration.numBehaviors)")
            }
        }
    }

    /// MBHT's score of each candidate for the next target-behavior item after each history:
    /// the dot product of the fused representation at the appended masked slot with the
    /// candidate's item embedding (eval mode, deterministic).
    ///
    /// - Parameters:
    ///   - histories: per query, the events in time order (the last T − 1 are used; may be empty).
    ///   - candidates: per query, item indices to score.
    ///   - batchSize: queries per forward pass.
    /// - Returns: per query, one score per candidate (higher is better).
    /// - Throws: `GraphError.invalidInput` for out-of-range indices.
    public func scores(histories: [[GraphEvent]], candidates: [[Int]], batchSize: Int = 256) throws -> [[Float]] {
        precondition(histories.count == candidates.count, "one candidate list per history")
        for h in histories { try checkHistory(h) }
        for c in candidates {
            for i in c where !(0..<configuration.numItems).contains(i) {
                throw GraphError.invalidInput("candidate item index \(i) is not in 0..<\(configuration.numItems)")
            }
        }
        let d = configuration.hiddenSize
        var result: [[Float]] = []
        result.reserveCapacity(histories.count)
        var start = 0
        while start < histories.count {
            let end = min(start + max(1, batchSize), histories.count)
            let q = queryVectors(histories[start..<end].map { $0[...] })
            for (k, i) in (start..<end).enumerated() {
                let qp = q.pointer + k * d
                result.append(candidates[i].map { c in
                    let ep = itemEmbedding.pointer + c * d
                    var s: Float = 0
                    for j in 0..<d { s += qp[j] * ep[j] }
                    return s
                })
            }
            start = end
        }
        return result
    }

    /// Scores of the candidates after one history (see `scores(histories:candidates:)`).
    public func score(history: [GraphEvent], candidates: [Int]) throws -> [Float] {
        try scores(histories: [history], candidates: [candidates])[0]
    }

    /// Scores of every item after each history: [histories.count, numItems] (for top-K
    /// candidate generation).
    public func scoresOverAllItems(histories: [[GraphEvent]], batchSize: Int = 256) throws -> Tensor {
        for h in histories { try checkHistory(h) }
        var parts: [Tensor] = []
        var start = 0
        while start < histories.count {
            let end = min(start + max(1, batchSize), histories.count)
            let q = queryVectors(histories[start..<end].map { $0[...] })
            parts.append(withNoGrad {
                Tensor.matmul(q, itemEmbedding.slice(axis: 0, 0..<configuration.numItems), transposeB: true)
            })
            start = end
        }
        if parts.isEmpty { return Tensor(zeros: [0, configuration.numItems]) }
        return withNoGrad { Tensor.concat(parts, axis: 0) }.detached()
    }

    /// The `k` highest-scoring items after a history, best first, skipping `excluding`.
    public func topK(history: [GraphEvent], k: Int, excluding: Set<Int> = []) throws -> [(item: Int, score: Float)] {
        let s = try scoresOverAllItems(histories: [history]).scalars
        let ranked = s.indices.filter { !excluding.contains($0) }.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }
        return ranked.prefix(k).map { (item: $0, score: s[$0]) }
    }

    /// HitRate@1 over ranking examples (see `hitRateAt1`). With a data-parallel `group`, each
    /// rank scores its whole batches (`DataParallelGroup.blocks`) and the hits are summed, so
    /// every rank gets one process's figure.
    public func hitRate(_ examples: [MBHTRankingExample], batchSize: Int = 256,
                        group: (any DataParallelGroup)? = nil) throws -> Double {
        guard let group, group.isDistributed else {
            let s = try scores(histories: examples.map(\.history), candidates: examples.map(\.candidates), batchSize: batchSize)
            return hitRateAt1(scores: s, candidates: examples.map(\.candidates), groundTruths: examples.map(\.groundTruth))
        }
        var hits = 0.0
        for block in group.blocks(of: examples.count, block: batchSize) {
            let part = Array(examples[block])
            let s = try scores(histories: part.map(\.history), candidates: part.map(\.candidates), batchSize: batchSize)
            hits += hitsAt1(scores: s, candidates: part.map(\.candidates), groundTruths: part.map(\.groundTruth))
        }
        let total = group.allReduceSum([hits])[0]
        return examples.isEmpty ? 0 : total / Double(examples.count)
    }
}
