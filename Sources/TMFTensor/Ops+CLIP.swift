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

    /// Multi-head scaled-dot-product self-attention, for inference (records no tape).
    ///
    /// - `query`, `key`, `value`: [N, T, H·Dh], the outputs of the q/k/v projections, head h in
    ///   columns h·Dh ..< (h+1)·Dh (PyTorch's `view(N, T, H, Dh)` layout). No copies or permutes
    ///   are made: each head is read in place through BLAS leading dimensions.
    /// - `heads` H (must divide the last dimension); `scale` multiplies q·kᵀ (usually Dh^-½).
    /// - `causal`: query i sees key j only when j ≤ i.
    /// - `keyMask`: [N][T]; key j of sequence n is visible only when `keyMask[n][j]` (padding).
    /// - Returns: [N, T, H·Dh] with the heads side by side (ready for the output projection).
    ///   A query that sees no key at all (e.g. a left-padding position under a causal mask)
    ///   gets a zero row instead of PyTorch's NaN, so nothing undefined reaches later layers;
    ///   visible positions are unaffected, as masked keys get weight exactly 0.
    ///
    /// Precondition: not recording gradients for these inputs (wrap training in a differentiable
    /// composition of `matmul` and `softmax` instead).
    public static func multiHeadAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float,
                                          causal: Bool = false, keyMask: [[Bool]]? = nil) -> Tensor {
        precondition(query.rank == 3 && key.shape == query.shape && value.shape == query.shape,
                     "multiHeadAttention needs equal [N, T, D] q, k, v; got \(query.shape), \(key.shape), \(value.shape)")
        precondition(!(GradMode.isEnabled && (query.requiresGrad || key.requiresGrad || value.requiresGrad)),
                     "multiHeadAttention is inference-only: call it inside withNoGrad")
        let n = query.shape[0], t = query.shape[1], d = query.shape[2]
        precondition(heads >= 1 && d % heads == 0, "\(heads) heads do not divide width \(d)")
        if let keyMask {
            precondition(keyMask.count == n && keyMask.allSatisfy { $0.count == t }, "keyMask must be [\(n)][\(t)]")
        }
        let dh = d / heads
        let out = Tensor(uninitialized: [n, t, d])
        let scores = Tensor(uninitialized: [t, t])  // (query, key) of one sequence and head
        let sp = scores.pointer
        for b in 0..<n {
            // visible[i * t + j]: may query i see key j (same for every head of sequence b).
            var visible = [Bool](repeating: true, count: t * t)
            var anyVisible = [Bool](repeating: true, count: t)
            for i in 0..<t {
                var any = false
                for j in 0..<t {
                    let v = (!causal || j <= i) && (keyMask?[b][j] ?? true)
                    visible[i * t + j] = v
                    any = any || v
                }
                anyVisible[i] = any
            }
            let base = b * t * d
            for h in 0..<heads {
                let q = query.pointer + base + h * dh, k = key.pointer + base + h * dh
                let v = value.pointer + base + h * dh, o = out.pointer + base + h * dh
                // scores[T, T] = scale · q[T, Dh] · k[T, Dh]ᵀ (rows of q, k strided by D)
                BLAS.sgemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: scale,
                           a: q, lda: d, b: k, ldb: d, beta: 0, c: sp, ldc: t)
                for i in 0..<t * t where !visible[i] { sp[i] = -.infinity }
                for i in 0..<t where !anyVisible[i] { (sp + i * t).update(repeating: 0, count: t) }
                tmf_softmax_rows(sp, sp, t, t)
                // A row with no visible key contributes nothing.
                for i in 0..<t where !anyVisible[i] { (sp + i * t).update(repeating: 0, count: t) }
                // o[T, Dh] = softmax[T, T] · v[T, Dh] (written into its head's columns of out)
                BLAS.sgemm(transA: false, transB: false, m: t, n: dh, k: t,
                           a: sp, lda: t, b: v, ldb: d, beta: 0, c: o, ldc: d)
            }
        }
        return out
    }
}
