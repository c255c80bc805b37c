import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// Ops+Llama: the permute-free attention, rotary on [rows, H·D] and SwiGLU, checked against
/// compositions of the already tested ops (which are checked against PyTorch) and against
/// finite differences.
final class LlamaOpsTests: XCTestCase {
    /// Reference attention built from permutes, batched matmul, attentionMasked and softmax.
    func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, kvHeads: Int,
                            causalOffset: Int?, keyMask: [[Bool]]?) -> Tensor {
        let b = q.shape[0], t = q.shape[1], d = q.shape[2] / heads, s = k.shape[1]
        let qh = q.reshaped([b, t, heads, d]).permuted([0, 2, 1, 3])            // (B, H, T, D)
        func expand(_ x: Tensor) -> Tensor {
            let xh = x.reshaped([b, s, kvHeads, d]).permuted([0, 2, 1, 3])      // (B, KV, S, D)
            let group = heads / kvHeads
            return Tensor.concat((0..<heads).map { xh.slice(axis: 1, ($0 / group)..<($0 / group + 1)) }, axis: 1)
        }
        let scores = Tensor.matmul(qh, expand(k), transposeB: true).scale(1 / Float(d).squareRoot())
        let p = scores.attentionMasked(causalOffset: causalOffset, keyMask: keyMask).softmax()
        return Tensor.matmul(p, expand(v)).permuted([0, 2, 1, 3]).reshaped([b, t, heads * d])
    }

    func testAttentionMatchesComposedOpsWithGQAAndMasks() {
        var rng = SeededRNG(seed: 1)
        let (b, t, s, heads, kv, d) = (2, 3, 5, 4, 2, 8)
        let q = Tensor.normal([b, t, heads * d], rng: &rng)
        let k = Tensor.normal([b, s, kv * d], rng: &rng), v = Tensor.normal([b, s, kv * d], rng: &rng)
        let keyMask = [[true, false, true, true, true], [true, true, true, false, true]]
        for (offset, mask) in [(Int?(2), [[Bool]]?(keyMask)), (nil, nil), (2, nil)] {
            let ours = Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: heads, kvHeads: kv,
                                                    mask: AttentionMask(causalOffset: offset, keyMask: mask))
            let ref = referenceAttention(q, k, v, heads: heads, kvHeads: kv, causalOffset: offset, keyMask: mask)
            assertClose(ours.scalars, ref.scalars, rtol: 1e-5, atol: 1e-6)
        }
    }

    func testAttentionGradientsMatchComposedOps() {
        var rng = SeededRNG(seed: 2)
        let (b, t, heads, kv, d) = (2, 4, 4, 2, 4)
        let q = Tensor.normal([b, t, heads * d], rng: &rng, requiresGrad: true)
        let k = Tensor.normal([b, t, kv * d], rng: &rng, requiresGrad: true)
        let v = Tensor.normal([b, t, kv * d], rng: &rng, requiresGrad: true)
        let keyMask = [[true, true, false, true], [true, true, true, true]]
        let w = Tensor.normal([b, t, heads * d], rng: &rng)
        (Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: heads, kvHeads: kv,
                                      mask: AttentionMask(causalOffset: 0, keyMask: keyMask)) * w).sum().backward()
        let ours = [q, k, v].map { $0.grad!.scalars }
        for x in [q, k, v] { x.grad = nil }
        (referenceAttention(q, k, v, heads: heads, kvHeads: kv, causalOffset: 0, keyMask: keyMask) * w).sum().backward()
        for (i, x) in [q, k, v].enumerated() { assertClose(ours[i], x.grad!.scalars, rtol: 1e-4, atol: 1e-5, "input \(i)") }
        gradCheck([q, k, v]) { xs in
            Tensor.groupedQueryAttention(q: xs[0], k: xs[1], v: xs[2], heads: heads, kvHeads: kv,
                                         mask: AttentionMask(causalOffset: 0, keyMask: keyMask))
        }
    }

    /// A long causal pass (heads side by side, row blocks against their visible keys only):
    /// equal to the composed reference, with and without a tape, with padding, a causal offset, a
    /// cache longer than the keys used, and rows that see nothing; and its gradients equal the
    /// reference's.
    func testLongCausalPassMatchesReferenceWithAndWithoutTape() {
        var rng = SeededRNG(seed: 4)
        let (b, heads, kv, d) = (2, 4, 2, 8)
        for (t, s, offset) in [(200, 200, 0), (150, 170, 20), (130, 130, -1)] {
            let q = Tensor.normal([b, t, heads * d], rng: &rng)
            let k = Tensor.normal([b, s + 7, kv * d], rng: &rng), v = Tensor.normal([b, s + 7, kv * d], rng: &rng)
            var keyMask = [[Bool]](repeating: [Bool](repeating: true, count: s), count: b)
            keyMask[0][0] = false; keyMask[0][1] = false; keyMask[1][s - 1] = false
            let mask = AttentionMask(causalOffset: offset, keyMask: keyMask)
            let fast = Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: heads, kvHeads: kv, keyLength: s, mask: mask)
            let ref = referenceAttention(q, k.slice(axis: 1, 0..<s), v.slice(axis: 1, 0..<s), heads: heads, kvHeads: kv,
                                         causalOffset: offset, keyMask: keyMask)
            let taped = Tensor.normal([1], rng: &rng, requiresGrad: true)
            let qt = q + taped * Tensor(zeros: [1])  // the same values, on a tape
            let slow = Tensor.groupedQueryAttention(q: qt, k: k, v: v, heads: heads, kvHeads: kv, keyLength: s, mask: mask)
            XCTAssertFalse(fast.scalars.contains { $0.isNaN }, "t \(t)")
            // Rows that see no key (the first rows, with offset 0 or -1 and the masked first
            // keys) are zero, as the taped path makes them; the reference's softmax of nothing
            // gives NaN there.
            for bi in 0..<b {
                for i in 0..<t {
                    let seesNothing = !(0..<max(0, min(s, i + offset + 1))).contains { keyMask[bi][$0] }
                    let row = (bi * t + i) * heads * d
                    let f = Array(fast.scalars[row..<(row + heads * d)]), sl = Array(slow.scalars[row..<(row + heads * d)])
                    assertClose(f, sl, rtol: 1e-5, atol: 1e-6, "taped path, t \(t) batch \(bi) row \(i)")
                    if seesNothing {
                        XCTAssertEqual(f, [Float](repeating: 0, count: heads * d), "row \(i)")
                    } else {
                        assertClose(f, Array(ref.scalars[row..<(row + heads * d)]), rtol: 1e-5, atol: 1e-6,
                                    "reference, t \(t) batch \(bi) row \(i)")
                    }
                }
            }
            guard offset == 20 else { continue }  // every row sees a key: the reference has no NaN
            let (qg, kg, vg) = (q.copy(), k.slice(axis: 1, 0..<s).copy(), v.slice(axis: 1, 0..<s).copy())
            for x in [qg, kg, vg] { x.requiresGrad = true }
            let w = Tensor.normal([b, t, heads * d], rng: &rng)
            (Tensor.groupedQueryAttention(q: qg, k: kg, v: vg, heads: heads, kvHeads: kv, mask: mask) * w).sum().backward()
            let ours = [qg, kg, vg].map { $0.grad!.scalars }
            for x in [qg, kg, vg] { x.grad = nil }
            (referenceAttention(qg, kg, vg, heads: heads, kvHeads: kv, causalOffset: offset, keyMask: keyMask) * w).sum().backward()
            for (i, x) in [qg, kg, vg].enumerated() { assertClose(ours[i], x.grad!.scalars, rtol: 1e-4, atol: 1e-5, "gradient \(i)") }
        }
    }

    func testAttentionKeyLengthAndFullyMaskedRows() {
        var rng = SeededRNG(seed: 3)
        let q = Tensor.normal([1, 2, 8], rng: &rng)
        let k = Tensor.normal([1, 6, 8], rng: &rng), v = Tensor.normal([1, 6, 8], rng: &rng)
        // Using the first 3 of 6 cached rows equals passing those 3 rows.
        let a = Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: 2, kvHeads: 2, keyLength: 3,
                                             mask: AttentionMask(causalOffset: 1))
        let b = Tensor.groupedQueryAttention(q: q, k: k.slice(axis: 1, 0..<3), v: v.slice(axis: 1, 0..<3),
                                             heads: 2, kvHeads: 2, mask: AttentionMask(causalOffset: 1))
        assertClose(a.scalars, b.scalars)
        // One query (the decoding path, matrix-vector products) equals the last row of a full pass.
        let full = Tensor.groupedQueryAttention(q: Tensor.concat([k.slice(axis: 1, 0..<3), q.slice(axis: 1, 0..<1)], axis: 1),
                                                k: k.slice(axis: 1, 0..<4), v: v.slice(axis: 1, 0..<4),
                                                heads: 2, kvHeads: 2, mask: AttentionMask(causalOffset: 0))
        let one = Tensor.groupedQueryAttention(q: q.slice(axis: 1, 0..<1), k: k, v: v, heads: 2, kvHeads: 2, keyLength: 4,
                                               mask: AttentionMask(causalOffset: 3))
        assertClose(one.scalars, Array(full.scalars[24..<32]), rtol: 1e-5, atol: 1e-6)
        // A query that sees no key gets zeros, not NaN.
        let z = Tensor.groupedQueryAttention(q: q, k: k, v: v, heads: 2, kvHeads: 1 * 2, keyLength: 3,
                                             mask: AttentionMask(causalOffset: 0, keyMask: [[false, true, true]]))
        XCTAssertEqual(Array(z.scalars[0..<8]), [Float](repeating: 0, count: 8))
        XCTAssertFalse(z.scalars.contains { $0.isNaN })
    }

    func testRotaryHeadsMatchesRotaryEmbedded() {
        var rng = SeededRNG(seed: 4)
        let (b, t, h, d) = (2, 3, 2, 8)
        let rope = RotaryEmbedding(headDim: d, theta: 500)
        let x = Tensor.normal([b, t, h * d], rng: &rng)
        let positions = [0, 1, 2, 1, 1, 0]
        let ours = x.rotaryEmbeddedHeads(rope, heads: h, positions: positions)
        let ref = x.reshaped([b, t, h, d]).permuted([0, 2, 1, 3]).rotaryEmbedded(rope, positions: positions)
            .permuted([0, 2, 1, 3]).reshaped([b, t, h * d])
        assertClose(ours.scalars, ref.scalars)
        gradCheck([x]) { $0[0].rotaryEmbeddedHeads(rope, heads: h, positions: positions) }
    }

    func testSwiGLUMatchesSiluTimesUp() {
        var rng = SeededRNG(seed: 5)
        let g = Tensor.normal([3, 7], rng: &rng, requiresGrad: true), u = Tensor.normal([3, 7], rng: &rng, requiresGrad: true)
        assertClose(Tensor.swiGLU(g, u).scalars, (g.silu() * u).scalars)
        gradCheck([g, u]) { Tensor.swiGLU($0[0], $0[1]) }
    }
}
