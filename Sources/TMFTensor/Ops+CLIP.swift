import CKernels
import Foundation

// Ops for vision and text transformers (CLIP): patch unfolding for a convolution-as-matmul
// patch embedding, and multi-head self-attention over projections laid out [N, T, heads · Dh].

extension Tensor {
    /// Non-overlapping square patches of images, each flattened in a Conv2d weight's order.
    ///
    /// - `self`: [N, C, H, W] images.
    /// - `patchSize` P: the patch side and stride. The grid is ⌊H/P⌋ × ⌊W/P⌋ (as a stride-P
    ///   convolution: a remainder at the bottom or right edge is dropped).
    /// - Returns: [N, ⌊H/P⌋·⌊W/P⌋, C·P·P]; patch (gy, gx) is row gy·⌊W/P⌋ + gx, and its features
    ///   are ordered (c, ky, kx), as a weight [D, C, P, P] flattens to [D, C·P·P]. So
    ///   `linear(x.unfoldedPatches(P), weight: w.reshaped([D, C·P·P]))` equals PyTorch's
    ///   `conv2d(x, w, stride=P).flatten(2).transpose(1, 2)`: [N, patches, D].
    ///
    /// Backward scatters the gradient back to the pixels (dropped edge pixels get zero).
    public func unfoldedPatches(_ patchSize: Int) -> Tensor {
        precondition(rank == 4, "unfoldedPatches needs [N, C, H, W], got \(shape)")
        precondition(patchSize >= 1, "patch size must be positive")
        let n = shape[0], c = shape[1], h = shape[2], w = shape[3], p = patchSize
        let gh = h / p, gw = w / p
        let features = c * p * p
        let out = Tensor(uninitialized: [n, gh * gw, features])
        // Visits every (image, patch, channel, patch row): a run of P contiguous pixels.
        func forEachRun(_ body: (_ pixel: Int, _ feature: Int) -> Void) {
            for b in 0..<n {
                for gy in 0..<gh {
                    for gx in 0..<gw {
                        let row = (b * gh * gw + gy * gw + gx) * features  // (image, patch) row of out
                        for ch in 0..<c {
                            for ky in 0..<p {
                                // pixel (b, ch, gy·P + ky, gx·P) → feature (ch, ky, 0)
                                body(((b * c + ch) * h + gy * p + ky) * w + gx * p, row + (ch * p + ky) * p)
                            }
                        }
                    }
                }
            }
        }
        let src = pointer, dst = out.pointer
        forEachRun { (dst + $1).update(from: src + $0, count: p) }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer, gp = g.pointer
            forEachRun { pixel, feature in
                for j in 0..<p { gb[pixel + j] += gp[feature + j] }
            }
        }
    }

    /// Multi-head scaled-dot-product attention, for inference (records no tape).
    ///
    /// - `query`: [N, Tq, H·Dh]; `key`, `value`: [N, Tk, H·Dh]: the outputs of the q/k/v
    ///   projections, head h in columns h·Dh ..< (h+1)·Dh (PyTorch's `view(N, T, H, Dh)` layout).
    ///   No copies or permutes are made: each head is read in place through BLAS leading dimensions.
    /// - `heads` H (must divide the last dimension); `scale` multiplies q·kᵀ (usually Dh^-½).
    /// - `queryPositions`: [N][Tq], the key-axis position of each query (for `causal`); default
    ///   0 ..< Tq (self-attention, Tq = Tk). Passing a subset of positions computes just those
    ///   rows of the full self-attention (e.g. only the pooled token of a last layer).
    /// - `causal`: the query at position p sees key j only when j ≤ p.
    /// - `keyMask`: [N][Tk]; key j of sequence n is visible only when `keyMask[n][j]` (padding).
    /// - Returns: [N, Tq, H·Dh] with the heads side by side (ready for the output projection).
    ///   A query that sees no key at all (e.g. a left-padding position under a causal mask)
    ///   gets a zero row instead of PyTorch's NaN, so nothing undefined reaches later layers;
    ///   visible positions are unaffected, as masked keys get weight exactly 0.
    ///
    /// Precondition: not recording gradients for these inputs (wrap training in a differentiable
    /// composition of `matmul` and `softmax` instead).
    public static func multiHeadAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float,
                                          causal: Bool = false, keyMask: [[Bool]]? = nil,
                                          queryPositions: [[Int]]? = nil) -> Tensor {
        precondition(query.rank == 3 && key.rank == 3 && value.shape == key.shape && query.shape[0] == key.shape[0]
                     && query.shape[2] == key.shape[2],
                     "multiHeadAttention needs q [N, Tq, D], k and v [N, Tk, D]; got \(query.shape), \(key.shape), \(value.shape)")
        precondition(!(GradMode.isEnabled && (query.requiresGrad || key.requiresGrad || value.requiresGrad)),
                     "multiHeadAttention is inference-only: call it inside withNoGrad")
        let n = query.shape[0], tq = query.shape[1], tk = key.shape[1], d = query.shape[2]
        precondition(heads >= 1 && d % heads == 0, "\(heads) heads do not divide width \(d)")
        if let keyMask {
            precondition(keyMask.count == n && keyMask.allSatisfy { $0.count == tk }, "keyMask must be [\(n)][\(tk)]")
        }
        if let queryPositions {
            precondition(queryPositions.count == n && queryPositions.allSatisfy { $0.count == tq },
                         "queryPositions must be [\(n)][\(tq)]")
        } else {
            precondition(tq == tk, "without queryPositions, queries and keys must have the same length")
        }
        let dh = d / heads
        let out = Tensor(uninitialized: [n, tq, d])
        let scores = Tensor(uninitialized: [tq, tk])  // (query, key) of one sequence and head
        let sp = scores.pointer
        for b in 0..<n {
            // visible[i * tk + j]: may query i see key j (same for every head of sequence b).
            var visible = [Bool](repeating: true, count: tq * tk)
            var anyVisible = [Bool](repeating: true, count: tq)
            for i in 0..<tq {
                let position = queryPositions?[b][i] ?? i
                var any = false
                for j in 0..<tk {
                    let v = (!causal || j <= position) && (keyMask?[b][j] ?? true)
                    visible[i * tk + j] = v
                    any = any || v
                }
                anyVisible[i] = any
            }
            for h in 0..<heads {
                let q = query.pointer + b * tq * d + h * dh, o = out.pointer + b * tq * d + h * dh
                let k = key.pointer + b * tk * d + h * dh, v = value.pointer + b * tk * d + h * dh
                // scores[Tq, Tk] = scale · q[Tq, Dh] · k[Tk, Dh]ᵀ (rows of q, k strided by D)
                BLAS.sgemm(transA: false, transB: true, m: tq, n: tk, k: dh, alpha: scale,
                           a: q, lda: d, b: k, ldb: d, beta: 0, c: sp, ldc: tk)
                for i in 0..<tq * tk where !visible[i] { sp[i] = -.infinity }
                for i in 0..<tq where !anyVisible[i] { (sp + i * tk).update(repeating: 0, count: tk) }
                tmf_softmax_rows(sp, sp, tq, tk)
                // A row with no visible key contributes nothing.
                for i in 0..<tq where !anyVisible[i] { (sp + i * tk).update(repeating: 0, count: tk) }
                // o[Tq, Dh] = softmax[Tq, Tk] · v[Tk, Dh] (written into its head's columns of out)
                BLAS.sgemm(transA: false, transB: false, m: tq, n: dh, k: tk,
                           a: sp, lda: tk, b: v, ldb: d, beta: 0, c: o, ldc: d)
            }
        }
        return out
    }
}
