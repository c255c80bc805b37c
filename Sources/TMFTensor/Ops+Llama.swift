import CKernels
import Foundation

// Ops for decoder-only transformers that work on the projections' own [B, T, H·D] layout, so
// that attention needs no head permutes: every head is a strided view (leading dimension H·D)
// handed straight to sgemm, and grouped-query attention indexes the shared KV head.

// MARK: - Rotary embedding on [rows, H·D]

extension RotaryEmbedding {
    /// cos and sin tables for each position, each [positions.count, D/2] row-major, computed in
    /// Float32 as transformers does (angle = Float(pos) · inverse frequency).
    public func tables(_ positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: positions.count * half), s = c
        for (r, p) in positions.enumerated() {
            for i in 0..<half {
                let a = Float(p) * inverseFrequencies[i]
                c[r * half + i] = Foundation.cos(a)
                s[r * half + i] = Foundation.sin(a)
            }
        }
        return (c, s)
    }
}

extension Tensor {
    /// Rotary embedding (Hugging Face rotate-half layout) of x [..., H·D] whose rows are
    /// tokens and whose last axis holds `heads` heads of size D = `rope.headDim` side by side
    /// (the output layout of q_proj / k_proj). `positions` has one entry per row (the product of
    /// the leading dimensions, e.g. B·T). Backward applies the inverse rotation.
    public func rotaryEmbeddedHeads(_ rope: RotaryEmbedding, heads: Int, positions: [Int]) -> Tensor {
        let d = rope.headDim, half = d / 2
        let width = shape.last ?? 0
        precondition(width == heads * d, "rotaryEmbeddedHeads: last axis \(width) is not \(heads) heads × \(d)")
        let rows = count / max(width, 1)
        precondition(positions.count == rows, "rotaryEmbeddedHeads: \(positions.count) positions for \(rows) rows")
        let (cosT, sinT) = rope.tables(positions)
        func apply(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, sign: Float) {
            cosT.withUnsafeBufferPointer { cp in
                sinT.withUnsafeBufferPointer { sp in
                    for r in 0..<rows {
                        let c = cp.baseAddress! + r * half, s = sp.baseAddress! + r * half
                        for h in 0..<heads {
                            RotaryEmbedding.rotate(src + r * width + h * d, into: dst + r * width + h * d,
                                                   cos: c, sin: s, half: half, sign: sign)
                        }
                    }
                }
            }
        }
        let out = Tensor(uninitialized: shape)
        apply(pointer, out.pointer, sign: 1)
        return out.record([self]) { [self] g in
            let back = Tensor(uninitialized: self.shape)
            apply(g.pointer, back.pointer, sign: -1)
            self.accumulateGrad(back, owned: true)
        }
    }
}

// MARK: - SwiGLU

extension Tensor {
    /// silu(gate) ⊙ up, elementwise (Llama's MLP), in one pass. Same shapes.
    public static func swiGLU(_ gate: Tensor, _ up: Tensor) -> Tensor {
        precondition(gate.shape == up.shape, "swiGLU: \(gate.shape) vs \(up.shape)")
        let n = gate.count
        let out = Tensor(uninitialized: gate.shape)
        tmf_silu(gate.pointer, out.pointer, n)
        let op = out.pointer, up_ = up.pointer
        for i in 0..<n { op[i] *= up_[i] }
        return out.record([gate, up]) { g in
            let gp = g.pointer, xp = gate.pointer, up_ = up.pointer
            if gate.requiresGrad {
                let d = Tensor(uninitialized: gate.shape), dp = d.pointer
                for i in 0..<n {
                    let x = xp[i], sg = 1 / (1 + Foundation.exp(-x))
                    dp[i] = gp[i] * up_[i] * sg * (1 + x * (1 - sg))
                }
                gate.accumulateGrad(d, owned: true)
            }
            if up.requiresGrad {
                let d = Tensor(uninitialized: up.shape), dp = d.pointer
                tmf_silu(xp, dp, n)
                for i in 0..<n { dp[i] *= gp[i] }
                up.accumulateGrad(d, owned: true)
            }
        }
    }
}

// MARK: - Grouped-query attention on [B, T, H·D]

/// How the keys of an attention call may be seen by its queries.
public struct AttentionMask: Sendable {
    /// Query i (0-based among the T queries) sees key j only if `j <= i + causalOffset`
    /// (`causalOffset` = number of cached keys before the queries); `nil` means no causal mask.
    public var causalOffset: Int?
    /// Per batch row, per key: false hides the key (left padding). `nil`: all keys visible.
    public var keyMask: [[Bool]]?

    public init(causalOffset: Int? = 0, keyMask: [[Bool]]? = nil) {
        self.causalOffset = causalOffset
        self.keyMask = keyMask
    }
}

extension Tensor {
    /// Scaled dot-product attention with grouped-query heads, computed per (batch, head) with
    /// strided sgemm on the projections' own layout (no permutes, no KV-head copies).
    ///
    /// - Parameters:
    ///   - q: [B, T, H·D] (rotary already applied).
    ///   - k, v: [B, S_cap, KV·D]; only the first `keyLength` rows (default S_cap) are used, so a
    ///     preallocated KV cache can be passed as is. Query head h uses KV head h / (H / KV).
    ///   - heads: H; `kvHeads`: KV (divides H).
    ///   - mask: causal offset and key padding mask ([B][keyLength]).
    ///   - scale: score scale, default 1/√D.
    /// - Returns: [B, T, H·D]. A query that sees no key gets a zero output (and zero gradient).
    public static func groupedQueryAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, kvHeads: Int,
                                             keyLength: Int? = nil, mask: AttentionMask = AttentionMask(),
                                             scale: Float? = nil) -> Tensor {
        precondition(q.rank == 3 && k.rank == 3 && v.rank == 3, "attention needs [B, T, H·D] operands")
        let b = q.shape[0], t = q.shape[1], hd = q.shape[2]
        precondition(heads > 0 && kvHeads > 0 && heads % kvHeads == 0 && hd % heads == 0, "bad head counts")
        let d = hd / heads, kvd = kvHeads * d
        precondition(k.shape[0] == b && k.shape[2] == kvd && v.shape == k.shape,
                     "attention k/v must be [\(b), S, \(kvd)], got \(k.shape) and \(v.shape)")
        let sCap = k.shape[1], s = keyLength ?? sCap
        precondition(s <= sCap, "keyLength \(s) beyond \(sCap) cached rows")
        if let km = mask.keyMask { precondition(km.count == b && km.allSatisfy { $0.count >= s }, "keyMask must be [B][S]") }
        let group = heads / kvHeads
        let alpha = scale ?? 1 / Float(d).squareRoot()
        let keep = GradMode.isEnabled && (q.requiresGrad || k.requiresGrad || v.requiresGrad)

        // Visible keys per (batch, query): a prefix bound (causal) plus the padding mask.
        func limit(_ i: Int) -> Int {
            guard let c = mask.causalOffset else { return s }
            return max(0, min(s, i + c + 1))
        }
        let out = Tensor(uninitialized: [b, t, hd])
        let qp = q.pointer, kp = k.pointer, vp = v.pointer, op = out.pointer
        // A causal pass of many rows skips the scores no query can see: rows in blocks of 64,
        // each against its visible keys (256 rows: 5/8 of the products). The probabilities past
        // a row's visible keys are zero either way, so the backward is unchanged.
        let causalBlock = mask.causalOffset != nil && t >= 128 ? 64 : t
        // One (batch, head): its rows, a block at a time, into p [T, S] (scores, then
        // probabilities), and its slice of `out`.
        func head(_ bi: Int, _ h: Int, _ p: UnsafeMutablePointer<Float>) {
            let km = mask.keyMask?[bi]
            let kvh = h / group
            let qh = qp + bi * t * hd + h * d
            let kh = kp + bi * sCap * kvd + kvh * d
            let vh = vp + bi * sCap * kvd + kvh * d
            for i0 in stride(from: 0, to: t, by: causalBlock) {
                let i1 = min(t, i0 + causalBlock), seen = causalBlock < t ? limit(i1 - 1) : s
                // scores [rows, seen] = α · Q_h [rows, D] · K_hᵀ [D, seen] (one query: a matrix-vector product)
                if t == 1 {
                    tmf_rows_dot(kh, kvd, qh, s, d, alpha, p)
                } else {
                    BLAS.sgemm(transA: false, transB: true, m: i1 - i0, n: seen, k: d, alpha: alpha, a: qh + i0 * hd,
                               lda: hd, b: kh, ldb: kvd, beta: 0, c: p + i0 * s, ldc: s)
                }
                for i in i0..<i1 {
                    let row = p + i * s, lim = limit(i)
                    if let km { for j in 0..<lim where !km[j] { row[j] = -.infinity } }
                    var anyVisible = lim > 0
                    if anyVisible, let km { anyVisible = km[0..<lim].contains(true) }
                    if anyVisible {
                        tmf_softmax_rows(row, row, 1, lim)
                        for j in lim..<s { row[j] = 0 }
                    } else {
                        for j in 0..<s { row[j] = 0 }
                    }
                }
                // out_h [rows, D] = P [rows, seen] · V_h [seen, D] (no key seen: zeros)
                if t == 1 {
                    tmf_rows_axpy(vh, kvd, p, s, d, op + bi * hd + h * d)
                } else {
                    BLAS.sgemm(transA: false, transB: false, m: i1 - i0, n: d, k: seen, a: p + i0 * s, lda: s, b: vh,
                               ldb: kvd, beta: 0, c: op + (bi * t + i0) * hd + h * d, ldc: hd)
                }
            }
        }
        // Probabilities [B, H, T, S], kept for backward.
        let probs = keep ? Tensor(uninitialized: [b, heads, t, s]) : nil
        // Some (batch, head) jobs: each writes only its heads' slices of `out` and of the kept
        // probabilities, or its own scratch.
        func run(_ jobs: Range<Int>) {
            let scratch = probs == nil ? Tensor(uninitialized: [t, s]) : nil
            for job in jobs { head(job / heads, job % heads, probs.map { $0.pointer + job * t * s } ?? scratch!.pointer) }
        }
        if t > 1 && Kernels.threads > 1 {
            // Heads side by side on the kernel threads, each product on one OpenBLAS thread: one
            // small sgemm per head split over OpenBLAS's threads spent much of its time packing
            // and waiting. (The backward stays serial: spread over KV heads the same way, it was
            // slower here.)
            BLAS.withOneThread { Kernels.parallelFor(b * heads, run) }
        } else {
            run(0..<(b * heads))
        }
        guard keep else { return out }
        return out.record([q, k, v]) { g in
            let gp = g.pointer
            let gq = q.requiresGrad ? q.gradBuffer().pointer : nil
            let gk = k.requiresGrad ? k.gradBuffer().pointer : nil
            let gv = v.requiresGrad ? v.gradBuffer().pointer : nil
            let dS = Tensor(uninitialized: [t, s]), ds = dS.pointer, kept = probs!.pointer
            for bi in 0..<b {
                for h in 0..<heads {
                    let kvh = h / group
                    let p = kept + (bi * heads + h) * t * s
                    let qh = qp + bi * t * hd + h * d, goh = gp + bi * t * hd + h * d
                    let kh = kp + bi * sCap * kvd + kvh * d
                    let vh = vp + bi * sCap * kvd + kvh * d
                    if let gv {
                        // dV_h [S, D] += Pᵀ [S, T] · dO_h [T, D]
                        BLAS.sgemm(transA: true, transB: false, m: s, n: d, k: t, a: p, lda: s, b: goh, ldb: hd,
                                   beta: 1, c: gv + bi * sCap * kvd + kvh * d, ldc: kvd)
                    }
                    guard gq != nil || gk != nil else { continue }
                    // dP [T, S] = dO_h · V_hᵀ; dS = α · P ⊙ (dP − Σ_j dP⊙P)
                    BLAS.sgemm(transA: false, transB: true, m: t, n: s, k: d, a: goh, lda: hd, b: vh, ldb: kvd,
                               beta: 0, c: ds, ldc: s)
                    for i in 0..<t {
                        let pr = p + i * s, dr = ds + i * s
                        var dot: Float = 0
                        for j in 0..<s { dot += pr[j] * dr[j] }
                        for j in 0..<s { dr[j] = alpha * pr[j] * (dr[j] - dot) }
                    }
                    if let gq {
                        // dQ_h [T, D] += dS [T, S] · K_h [S, D]
                        BLAS.sgemm(transA: false, transB: false, m: t, n: d, k: s, a: ds, lda: s, b: kh, ldb: kvd,
                                   beta: 1, c: gq + bi * t * hd + h * d, ldc: hd)
                    }
                    if let gk {
                        // dK_h [S, D] += dSᵀ [S, T] · Q_h [T, D]
                        BLAS.sgemm(transA: true, transB: false, m: s, n: d, k: t, a: ds, lda: s, b: qh, ldb: hd,
                                   beta: 1, c: gk + bi * sCap * kvd + kvh * d, ldc: kvd)
                    }
                }
            }
        }
    }
}

// MARK: - Row selection

extension Tensor {
    /// Rows `rows` of x viewed as [N, W] (W = last axis): [rows.count, W], with backward.
    /// (`gatherRows` on a reshaped view; named for selecting hidden states before the LM head.)
    public func selectingRows(_ rows: [Int]) -> Tensor {
        let w = shape.last ?? 1
        return reshaped([count / max(w, 1), w]).gatherRows(rows)
    }
}
