import Foundation
import XCTest
@testable import TMFGraph
import TMFTensor
import TMFTestSupport

/// Hypergraph construction and read-out on hand-made sequences, values worked out by hand.
final class HypergraphTests: XCTestCase {
    // Sequence A B A [mask] with A = 3, B = 5, mask = 9.
    let items = [3, 5, 3, 9]
    let similarity: [[Float]] = [
        [1.0, 0.5, 0.8, 0.2],
        [0.5, 1.0, -0.3, 0.4],
        [0.8, -0.3, 1.0, 0.6],
        [0.2, 0.4, 0.6, 1.0],
    ]

    func testIncidenceByHand() {
        let g = SequenceHypergraph(items: items, maskToken: 9, similarity: similarity, hyperLength: 3)
        // Item-wise edges for tokens 3, 5, 9 (ascending), then the cross-behavior edge of A.
        XCTAssertEqual(g.uniqueItems, [3, 5, 9])
        XCTAssertEqual(g.repeatedItems, [3])
        XCTAssertEqual(g.nodeCount, 4)
        XCTAssertEqual(g.edgeCount, 4)
        // Row 0 (A): top-3 positions 0 (1.0), 2 (0.8), 1 (0.5) → A's edge (own: 1), B's edge 0.5
        //   (learned, sim[0][1]); cross-behavior edge of A: 1.
        // Row 1 (B): top-3 1 (1.0), 0 (0.5), 3 (0.4, masked → B itself, 1) → A's edge 0.5
        //   (sim[1][0]), B's edge 1.
        // Row 2 (A): top-3 2 (1.0), 0 (0.8), 3 (masked → A) → A's edge 1, cross-behavior 1.
        // Row 3 (mask): only the mask token's edge.
        let h = g.incidence(similarity: similarity)
        XCTAssertEqual(h, [
            [1, 0.5, 0, 1],
            [0.5, 1, 0, 0],
            [1, 0, 0, 1],
            [0, 0, 1, 0],
        ])
        XCTAssertTrue(g.entries.contains(.init(node: 0, edge: 1, weight: .similarity(1))))
        XCTAssertTrue(g.entries.contains(.init(node: 1, edge: 0, weight: .similarity(0))))
        XCTAssertTrue(g.entries.contains(.init(node: 0, edge: 0, weight: .constant(1))))
    }

    func testNormalisedPropagationByHand() {
        let g = SequenceHypergraph(items: items, maskToken: 9, similarity: similarity, hyperLength: 3)
        // Dv = [2.5, 1.5, 2, 1], De = [2.5, 1.5, 1, 2]; G = Dv⁻¹ H De⁻¹ Hᵀ, e.g.
        // G[0][0] = (1/2.5)(1/2.5 + 0.25/1.5 + 1/2) = 0.426667.
        let expected: [[Float]] = [
            [0.426667, 0.213333, 0.36, 0],
            [0.355556, 0.511111, 0.133333, 0],
            [0.45, 0.1, 0.45, 0],
            [0, 0, 0, 1],
        ]
        let p = g.propagation(similarity: similarity)
        assertClose(p.flatMap { $0 }, expected.flatMap { $0 }, rtol: 1e-4, atol: 1e-5)
        for row in p { XCTAssertEqual(row.reduce(0, +), 1, accuracy: 1e-5) }
    }

    func testNegativeSimilarityBecomesConstant() {
        // With hyper_len 4, row 1 also reaches position 2 (sim −0.3 → 0.01) for A's edge, but A's
        // edge already has 0.5 from position 0: the larger weight is kept.
        let g = SequenceHypergraph(items: items, maskToken: 9, similarity: similarity, hyperLength: 4)
        XCTAssertEqual(g.incidence(similarity: similarity)[1], [0.5, 1, 0, 0])
        // A sequence B A with a negative similarity: A's edge in row 0 is the constant 0.01.
        let g2 = SequenceHypergraph(items: [5, 3], maskToken: 9, similarity: [[1, -0.2], [-0.2, 1]], hyperLength: 2)
        XCTAssertEqual(g2.incidence(similarity: [[1, -0.2], [-0.2, 1]]), [[0.01, 1], [1, 0.01]])
        XCTAssertTrue(g2.entries.allSatisfy { if case .constant = $0.weight { return true } else { return false } })
    }

    func testTensorPropagationMatchesReference() throws {
        // The batched, differentiable G equals the per-sequence construction, padding rows zero.
        var c = tinyConfiguration()
        c.maxSequenceLength = 8
        let model = try MBHTModel(configuration: c, seed: 3)
        let histories: [ArraySlice<GraphEvent>] = [
            [GraphEvent(item: 1, behavior: 0), GraphEvent(item: 2, behavior: 1), GraphEvent(item: 1, behavior: 1)][...],
            [GraphEvent(item: 4, behavior: 0), GraphEvent(item: 5, behavior: 0), GraphEvent(item: 6, behavior: 1),
             GraphEvent(item: 4, behavior: 1), GraphEvent(item: 0, behavior: 0)][...],
        ]
        let batch = model.inferenceBatch(histories)
        var rng = SeededRNG(seed: 4)
        let raw = Tensor.normal([2, 8, 4], rng: &rng).l2Normalized()
        let sim = Tensor.matmul(raw, raw, transposeB: true)
        let g = model.propagation(similarity: sim, batch)
        XCTAssertEqual(g.shape, [2, 8, 8])
        for s in 0..<2 {
            let n = batch.lengths[s]
            let rows = (0..<n).map { i in (0..<n).map { j in sim.pointer[(s * 8 + i) * 8 + j] } }
            let seq = (0..<n).map { batch.items[s * 8 + $0] }
            let ref = SequenceHypergraph(items: seq, maskToken: model.maskToken, similarity: rows, hyperLength: c.hyperLength)
                .propagation(similarity: rows)
            for i in 0..<8 {
                for j in 0..<8 {
                    let v = g.pointer[(s * 8 + i) * 8 + j]
                    XCTAssertEqual(v, i < n && j < n ? ref[i][j] : 0, accuracy: 1e-5, "seq \(s) G[\(i)][\(j)]")
                }
            }
        }
    }

    func testPropagationFiniteDifferences() throws {
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 3)
        let batch = model.inferenceBatch([
            [GraphEvent(item: 1, behavior: 0), GraphEvent(item: 2, behavior: 1), GraphEvent(item: 1, behavior: 1),
             GraphEvent(item: 3, behavior: 0)][...],
        ])
        // Well-separated similarity values, so ±eps never changes the top-k selection.
        var values = [Float](repeating: 0, count: 64)
        var rng = SeededRNG(seed: 5)
        var pool = (0..<64).map { Float($0) / 64 - 0.3 }
        pool.shuffle(using: &rng)
        for i in 0..<64 { values[i] = pool[i] }
        let sim = Tensor(values, shape: [1, 8, 8])
        gradCheck([sim], eps: 1e-3) { t in model.propagation(similarity: t[0], batch) }
    }

    func testReadoutWindows() {
        // Training: p = 2 reads [0, 1] ∪ (2, 4) = {0, 1, 3}; p = 5 reads [3, 5) (end capped at n − 1).
        let r = HypergraphReadout.matrix(n: 6, positions: [2, 5], before: 2, after: 2)
        assertClose(r[2], [1.0 / 3, 1.0 / 3, 0, 1.0 / 3, 0, 0].map { Float($0) })
        assertClose(r[5], [0, 0, 0, 0.5, 0.5, 0])
        XCTAssertEqual(r[1], [0, 1, 0, 0, 0, 0])
        // Inference: the mean of the `before` positions preceding the slot.
        let q = HypergraphReadout.matrix(n: 4, positions: [3], before: 2, after: nil)
        XCTAssertEqual(q[3], [0, 0.5, 0.5, 0])
        // Sequential replacement (the reference's in-place loop): p = 2 reads the replaced p = 1.
        let s = HypergraphReadout.matrix(n: 4, positions: [1, 2], before: 1, after: 1)
        XCTAssertEqual(s[1], [1, 0, 0, 0])
        XCTAssertEqual(s[2], [1, 0, 0, 0])
        // Empty window (history of nothing): zeros, not NaN.
        XCTAssertEqual(HypergraphReadout.matrix(n: 1, positions: [0], before: 3, after: nil)[0], [0])
    }
}

/// A tiny configuration for unit tests: d = 4, T = 8, scales [3, 2, 4].
func tinyConfiguration(items: Int = 7, behaviors: Int = 2) -> MBHTConfiguration {
    var c = MBHTConfiguration(numItems: items, numBehaviors: behaviors, targetBehavior: behaviors - 1, maxSequenceLength: 8)
    c.hiddenSize = 4
    c.heads = 2
    c.innerSize = 8
    c.scales = [3, 2, 4]
    c.hyperLength = 3
    c.windowBefore = 3
    c.windowAfter = 2
    return c
}
