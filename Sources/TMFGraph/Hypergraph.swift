import TMFTensor

/// The hypergraph MBHT builds over one sequence (paper §3.3; reference `build_Gs_unique`).
///
/// Nodes are the sequence's positions 0..<n (masked positions included). Hyperedges:
/// - one **item-wise** hyperedge per distinct item token of the sequence (the mask token is one
///   such token), edges 0..<uniqueItems.count in ascending token order. Position i belongs to
///   its own item's hyperedge with weight 1 and, if it is not masked, to the hyperedges of the
///   items at its `hyperLength` most similar positions (learned similarity), weighted by that
///   similarity (negative similarities become 0.01). A masked position among those stands for
///   i's own item with weight 1.
/// - one **cross-behavior** hyperedge per item occurring at two or more positions (the same item
///   under different behaviors), joining those positions with weight 1; edges after the
///   item-wise ones, in ascending token order.
///
/// Propagation is the normalised incidence product G = Dv⁻¹ H De⁻¹ Hᵀ (row-stochastic), with
/// Dv, De the node and hyperedge degrees (sums of H's rows and columns).
public struct SequenceHypergraph: Sendable, Equatable {
    /// The weight of one incidence entry.
    public enum Weight: Sendable, Equatable {
        /// A fixed weight.
        case constant(Float)
        /// The learned similarity of the node's position with position `j` (differentiable).
        case similarity(Int)
    }

    /// One nonzero of the incidence matrix H [nodes, edges].
    public struct Entry: Sendable, Equatable {
        public var node: Int
        public var edge: Int
        public var weight: Weight
    }

    /// Number of nodes n (positions).
    public let nodeCount: Int
    /// Number of hyperedges.
    public let edgeCount: Int
    /// Distinct item tokens, ascending; item-wise hyperedge e joins token `uniqueItems[e]`.
    public let uniqueItems: [Int]
    /// Items with a cross-behavior hyperedge, ascending; edge `uniqueItems.count + k`.
    public let repeatedItems: [Int]
    /// Nonzeros of H, at most one per (node, edge), sorted by node then edge.
    public let entries: [Entry]

    /// Builds the hypergraph of `items` (n ≥ 1 tokens; `maskToken` marks masked positions).
    ///
    /// - Parameters:
    ///   - similarity: similarity[i][j] for positions i, j < n (learned, before clamping).
    ///   - hyperLength: hyperedge size (the reference's `hyper_len`); capped at n.
    public init(items: [Int], maskToken: Int, similarity: [[Float]], hyperLength: Int) {
        let n = items.count
        precondition(n >= 1 && similarity.count == n && similarity.allSatisfy { $0.count >= n },
                     "hypergraph: similarity must be n × n for n = \(n)")
        let unique = Array(Set(items)).sorted()
        var edgeOfItem: [Int: Int] = [:]
        for (e, x) in unique.enumerated() { edgeOfItem[x] = e }
        var counts: [Int: Int] = [:]
        for x in items where x != maskToken { counts[x, default: 0] += 1 }
        let repeated = counts.filter { $0.value >= 2 }.map(\.key).sorted()
        var repeatedEdge: [Int: Int] = [:]
        for (k, x) in repeated.enumerated() { repeatedEdge[x] = unique.count + k }

        var table: [Int: (value: Float, weight: Weight)] = [:]  // key node * edges + edge
        let edges = unique.count + repeated.count
        let k = min(hyperLength, n)
        for i in 0..<n where items[i] != maskToken {
            let clamped = (0..<n).map { j -> Float in let s = similarity[i][j]; return s < 0 ? 0.01 : s }
            // Top-k positions by clamped similarity; ties by position.
            let top = (0..<n).sorted { clamped[$0] != clamped[$1] ? clamped[$0] > clamped[$1] : $0 < $1 }.prefix(k)
            for j in top {
                let item: Int, value: Float, weight: Weight
                if items[j] == maskToken {
                    item = items[i]; value = 1; weight = .constant(1)
                } else {
                    item = items[j]; value = clamped[j]
                    weight = similarity[i][j] < 0 ? .constant(0.01) : .similarity(j)
                }
                let key = i * edges + edgeOfItem[item]!
                // Several top positions with the same item: keep the largest weight.
                if let old = table[key], old.value >= value { continue }
                table[key] = (value, weight)
            }
        }
        for i in 0..<n {
            table[i * edges + edgeOfItem[items[i]]!] = (1, .constant(1))
            if let e = repeatedEdge[items[i]] { table[i * edges + e] = (1, .constant(1)) }
        }
        nodeCount = n
        edgeCount = edges
        uniqueItems = unique
        repeatedItems = repeated
        entries = table.keys.sorted().map { key in
            Entry(node: key / edges, edge: key % edges, weight: table[key]!.weight)
        }
    }

    /// The dense incidence matrix H [n][edges] for the given similarity values.
    public func incidence(similarity: [[Float]]) -> [[Float]] {
        var h = [[Float]](repeating: [Float](repeating: 0, count: edgeCount), count: nodeCount)
        for e in entries {
            switch e.weight {
            case .constant(let v): h[e.node][e.edge] = v
            case .similarity(let j): h[e.node][e.edge] = similarity[e.node][j]
            }
        }
        return h
    }

    /// The propagation matrix G = Dv⁻¹ H De⁻¹ Hᵀ [n][n] (no autograd; for checks and tests).
    public func propagation(similarity: [[Float]]) -> [[Float]] {
        let h = incidence(similarity: similarity)
        let dv = h.map { $0.reduce(0, +) }
        var de = [Float](repeating: 0, count: edgeCount)
        for row in h { for e in 0..<edgeCount { de[e] += row[e] } }
        var g = [[Float]](repeating: [Float](repeating: 0, count: nodeCount), count: nodeCount)
        for i in 0..<nodeCount {
            for j in 0..<nodeCount {
                var s: Float = 0
                for e in 0..<edgeCount where de[e] > 0 { s += h[i][e] * h[j][e] / de[e] }
                g[i][j] = dv[i] > 0 ? s / dv[i] : 0
            }
        }
        return g
    }
}

/// The hypergraph read-out at masked positions (reference `forward`, sliding windows): the
/// convolved embedding of a masked position is replaced by the mean over a window of its
/// neighbours' embeddings, expressed as a linear map R [n][n] (out = R · embeddings).
enum HypergraphReadout {
    /// Training: each masked position p in `positions` (in order, each replacement seeing the
    /// earlier ones, as the reference's in-place loop) reads the mean of positions
    /// [p − before, p) ∪ (p, end) with end = p + after, or n − 1 when that reaches past n.
    /// Inference (`after == nil`): the mean of [p − before, p). An empty window reads zeros.
    static func matrix(n: Int, positions: [Int], before: Int, after: Int?) -> [[Float]] {
        var r = [[Float]](repeating: [Float](repeating: 0, count: n), count: n)
        for i in 0..<n { r[i][i] = 1 }
        for p in positions where p < n {
            var window = Array(max(0, p - before)..<p)
            if let after {
                let end = p + after < n ? p + after : n - 1
                if p + 1 < end { window += Array((p + 1)..<end) }
            }
            var row = [Float](repeating: 0, count: n)
            if !window.isEmpty {
                let w = 1 / Float(window.count)
                for q in window { for j in 0..<n { row[j] += r[q][j] * w } }
            }
            r[p] = row
        }
        return r
    }
}
