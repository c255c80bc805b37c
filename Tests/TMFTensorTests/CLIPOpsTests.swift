import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// `unfoldedPatches` and `multiHeadAttention` (Ops+CLIP.swift) against plain reference loops
/// and a composition of the tape's own ops.
final class CLIPOpsTests: XCTestCase {
    /// Direct stride-P convolution without bias: (N, C, H, W) · (D, C, P, P) → (N, G², D).
    func referenceConv(_ x: Tensor, _ w: Tensor, _ p: Int) -> [Float] {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3], d = w.shape[0]
        let gh = h / p, gw = wd / p
        let xs = x.scalars, ws = w.scalars
        var out = [Float](repeating: 0, count: n * gh * gw * d)
        for b in 0..<n { for gy in 0..<gh { for gx in 0..<gw { for o in 0..<d {
            var s: Float = 0
            for ch in 0..<c { for ky in 0..<p { for kx in 0..<p {
                s += xs[((b * c + ch) * h + gy * p + ky) * wd + gx * p + kx] * ws[((o * c + ch) * p + ky) * p + kx]
            } } }
            out[((b * gh * gw) + gy * gw + gx) * d + o] = s
        } } } }
        return out
    }

    func testUnfoldThenLinearIsStridedConvolution() {
        var rng = SeededRNG(seed: 7)
        // 10×13 images with 4-pixel patches: the grid is 2×3, the edge remainder is dropped.
        let x = Tensor.normal([2, 3, 10, 13], rng: &rng)
        let w = Tensor.normal([5, 3, 4, 4], rng: &rng)
        let unfolded = x.unfoldedPatches(4)
        XCTAssertEqual(unfolded.shape, [2, 6, 48])
        let y = Tensor.linear(unfolded, weight: w.reshaped([5, 48]))
        XCTAssertEqual(y.shape, [2, 6, 5])
        assertClose(y.scalars, referenceConv(x, w, 4), rtol: 1e-5, atol: 1e-5)
    }

    func testUnfoldGradient() {
        var rng = SeededRNG(seed: 8)
        let x = Tensor.normal([1, 2, 5, 4], rng: &rng)
        gradCheck([x]) { $0[0].unfoldedPatches(2) }
        // Pixels of the dropped bottom row get zero gradient.
        XCTAssertTrue(x.grad!.scalars[16..<20].allSatisfy { $0 == 0 })
    }

    /// The same attention from taped ops: split heads by permute, q·kᵀ, mask, softmax, ·v.
    func referenceAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, scale: Float,
                            causal: Bool, keyMask: [[Bool]]?) -> Tensor {
        let n = q.shape[0], t = q.shape[1], d = q.shape[2], dh = d / heads
        func split(_ x: Tensor) -> Tensor { x.reshaped([n, t, heads, dh]).permuted([0, 2, 1, 3]) }  // (N, H, T, Dh)
        let scores = Tensor.matmul(split(q), split(k), transposeB: true).scale(scale)  // (N, H, T, T)
        let masked = scores.attentionMasked(causalOffset: causal ? 0 : nil, keyMask: keyMask)
        let o = Tensor.matmul(masked.softmax(), split(v))  // (N, H, T, Dh)
        return o.permuted([0, 2, 1, 3]).reshaped([n, t, d])
    }

    func testAttentionMatchesComposition() {
        var rng = SeededRNG(seed: 9)
        let q = Tensor.normal([3, 7, 12], rng: &rng), k = Tensor.normal([3, 7, 12], rng: &rng)
        let v = Tensor.normal([3, 7, 12], rng: &rng)
        // Right padding (row 0), none (row 1), left padding only hidden from queries that see
        // other keys (row 2 keeps key 0 so every causal query sees something).
        let mask: [[Bool]] = [[true, true, true, true, true, false, false], Array(repeating: true, count: 7),
                              [true, false, false, true, true, true, true]]
        for (causal, keyMask) in [(false, nil), (true, nil), (true, mask), (false, mask)] as [(Bool, [[Bool]]?)] {
            let got = withNoGrad {
                Tensor.multiHeadAttention(query: q, key: k, value: v, heads: 3, scale: 0.5, causal: causal, keyMask: keyMask)
            }
            let want = referenceAttention(q, k, v, heads: 3, scale: 0.5, causal: causal, keyMask: keyMask)
            XCTAssertEqual(got.shape, [3, 7, 12])
            assertClose(got.scalars, want.scalars, rtol: 1e-5, atol: 1e-6, "causal \(causal) mask \(keyMask != nil)")
        }
    }

    /// A query that sees no key (left padding under a causal mask) gets zeros, not NaN, and
    /// the other queries are unaffected by the masked keys.
    func testQueryWithoutVisibleKeysIsZero() {
        var rng = SeededRNG(seed: 10)
        let q = Tensor.normal([1, 4, 4], rng: &rng), k = Tensor.normal([1, 4, 4], rng: &rng)
        let v = Tensor.normal([1, 4, 4], rng: &rng)
        let mask = [[false, false, true, true]]
        let out = withNoGrad {
            Tensor.multiHeadAttention(query: q, key: k, value: v, heads: 2, scale: 1, causal: true, keyMask: mask)
        }
        XCTAssertEqual(Array(out.scalars[0..<8]), [Float](repeating: 0, count: 8))
        XCTAssertTrue(out.scalars.allSatisfy { $0.isFinite })
        // Queries 2 and 3 equal attention over keys 2...3 alone.
        let tail = { (x: Tensor) in x.slice(axis: 1, 2..<4) }
        let ref = referenceAttention(tail(q), tail(k), tail(v), heads: 2, scale: 1, causal: true, keyMask: nil)
        assertClose(Array(out.scalars[8..<16]), ref.scalars, rtol: 1e-5, atol: 1e-6)
    }

    /// Queries at chosen positions give those rows of the full self-attention.
    func testQueryPositionsPickRowsOfFullAttention() {
        var rng = SeededRNG(seed: 11)
        let q = Tensor.normal([2, 6, 8], rng: &rng), k = Tensor.normal([2, 6, 8], rng: &rng)
        let v = Tensor.normal([2, 6, 8], rng: &rng)
        let mask: [[Bool]] = [[true, true, true, false, false, false], [false, true, true, true, true, true]]
        let positions = [[2, 0], [5, 3]]
        for causal in [false, true] {
            withNoGrad {
                let full = Tensor.multiHeadAttention(query: q, key: k, value: v, heads: 2, scale: 0.3,
                                                     causal: causal, keyMask: mask)  // (2, 6, 8)
                let rows = positions.enumerated().flatMap { b, ps in ps.map { b * 6 + $0 } }
                let picked = q.reshaped([12, 8]).gatherRows(rows).reshaped([2, 2, 8])
                let some = Tensor.multiHeadAttention(query: picked, key: k, value: v, heads: 2, scale: 0.3,
                                                     causal: causal, keyMask: mask, queryPositions: positions)
                XCTAssertEqual(some.shape, [2, 2, 8])
                assertClose(some.scalars, full.reshaped([12, 8]).gatherRows(rows).scalars, rtol: 1e-5, atol: 1e-6,
                            "causal \(causal)")
            }
        }
    }
}
