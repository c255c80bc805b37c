import CKernels
import Foundation

// MARK: - Gather / scatter

extension Tensor {
    /// Embedding lookup: rows `indices` of `self` [V, D...] → [indices.count, D...].
    /// Backward scatter-adds into the selected rows.
    public func gatherRows(_ indices: [Int]) -> Tensor {
        precondition(rank >= 1, "gatherRows needs a table")
        let v = shape[0], d = count / max(v, 1)
        let out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && r < v, "row \(r) out of range 0..<\(v)")
            (out.pointer + i * d).update(from: pointer + r * d, count: d)
        }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer
            for (i, r) in indices.enumerated() {
                let s = g.pointer + i * d, t = gb + r * d
                for j in 0..<d { t[j] += s[j] }
            }
        }
    }

    /// Scatter-add: a [rows, D...] tensor of zeros with `self`'s row i added into row
    /// `indices[i]` (self is [indices.count, D...]). Backward gathers.
    public func scatterAddRows(_ indices: [Int], rows: Int) -> Tensor {
        precondition(shape.first == indices.count, "scatterAddRows: \(indices.count) indices for \(shape)")
        let d = count / max(indices.count, 1)
        let out = Tensor(zeros: [rows] + shape.dropFirst())
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && r < rows, "row \(r) out of range 0..<\(rows)")
            let s = pointer + i * d, t = out.pointer + r * d
            for j in 0..<d { t[j] += s[j] }
        }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer
            for (i, r) in indices.enumerated() {
                let s = g.pointer + r * d, t = gb + i * d
                for j in 0..<d { t[j] += s[j] }
            }
        }
    }
}

// MARK: - Softmax family

extension Tensor {
    /// Numerically stable softmax over the last axis (vectorised exp). A row that is entirely
    /// −∞ gives NaN, as in PyTorch.
    public func softmax() -> Tensor {
        let cols = shape.last ?? 1, rows = count / max(cols, 1)
        let out = Tensor(uninitialized: shape)
        tmf_softmax_rows(pointer, out.pointer, rows, cols)
        let saved = out.storage  // not `out`: the closure must not retain its own owner
        return out.record([self]) { [self] g in
            // dx = y ⊙ (dy − Σ dy⊙y)
            tmf_softmax_backward_rows(saved.pointer, g.pointer, self.gradBuffer().pointer, rows, cols)
        }
    }

    /// Log-softmax over the last axis.
    public func logSoftmax() -> Tensor {
        let cols = shape.last ?? 1, rows = count / max(cols, 1)
        let out = Tensor(uninitialized: shape)
        tmf_log_softmax_rows(pointer, out.pointer, rows, cols)
        let saved = out.storage  // not `out`: the closure must not retain its own owner
        return out.record([self]) { [self] g in
            // dx = dy − softmax · Σ dy
            let gb = self.gradBuffer().pointer
            let p = Tensor(uninitialized: [cols])
            for r in 0..<rows {
                let y = saved.pointer + r * cols, dy = g.pointer + r * cols, dx = gb + r * cols
                var s: Float = 0
                for j in 0..<cols { s += dy[j] }
                tmf_vexp(y, p.pointer, cols)
                for j in 0..<cols { dx[j] += dy[j] - p.pointer[j] * s }
            }
        }
    }

    /// Attention masking of scores [..., T, S]: query i (0-based within T) may see key j only
    /// when `j <= i + causalOffset` (causal; `causalOffset = S - T` with a KV cache), and only
    /// when `keyMask[b][j]` is true (left padding), where b indexes the leading dimension.
    /// Masked scores become −∞; their gradient is zero.
    public func attentionMasked(causalOffset: Int? = 0, keyMask: [[Bool]]? = nil) -> Tensor {
        precondition(rank >= 2, "attentionMasked needs [..., T, S]")
        let t = shape[rank - 2], s = shape[rank - 1]
        let perBatch = rank >= 3 ? count / shape[0] : count
        if let keyMask { precondition(rank >= 3 && keyMask.count == shape[0] && keyMask.allSatisfy { $0.count == s },
                                      "keyMask must be [batch][S]") }
        let out = copy()
        let op = out.pointer
        let blocks = count / (t * s)
        func visible(_ block: Int, _ i: Int, _ j: Int) -> Bool {
            if let c = causalOffset, j > i + c { return false }
            if let keyMask, !keyMask[(block * t * s) / perBatch][j] { return false }
            return true
        }
        for b in 0..<blocks {
            for i in 0..<t {
                let row = op + (b * t + i) * s
                for j in 0..<s where !visible(b, i, j) { row[j] = -.infinity }
            }
        }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer
            for b in 0..<blocks {
                for i in 0..<t {
                    let base = (b * t + i) * s
                    for j in 0..<s where visible(b, i, j) { gb[base + j] += g.pointer[base + j] }
                }
            }
        }
    }
}

// MARK: - Normalisation

extension Tensor {
    /// RMSNorm over the last axis (Llama): y = x / sqrt(mean(x²) + eps) · weight, weight [D].
    public static func rmsNorm(_ x: Tensor, weight: Tensor, eps: Float) -> Tensor {
        let d = x.shape.last!, rows = x.count / max(d, 1)
        precondition(weight.shape == [d], "rmsNorm weight \(weight.shape) for rows of \(d)")
        let out = Tensor(uninitialized: x.shape)
        let xp = x.pointer, wp = weight.pointer
        guard Tensor.needsGrad(x, weight) else {
            tmf_rmsnorm_rows(xp, wp, out.pointer, nil, rows, d, eps)
            return out
        }
        var inv = [Float](repeating: 0, count: rows)
        inv.withUnsafeMutableBufferPointer { tmf_rmsnorm_rows(xp, wp, out.pointer, $0.baseAddress, rows, d, eps) }
        return out.record([x, weight]) { g in
            let gx = x.requiresGrad ? x.gradBuffer().pointer : nil
            let gw = weight.requiresGrad ? weight.gradBuffer().pointer : nil
            // dx = iv · (dy⊙w − x · iv² · mean(dy⊙w⊙x)); dw = Σ_rows dy⊙x·iv
            inv.withUnsafeBufferPointer {
                tmf_rmsnorm_backward_rows(xp, wp, $0.baseAddress, g.pointer, gx, gw, rows, d)
            }
        }
    }

    /// LayerNorm over the last axis: y = (x − mean) / sqrt(var + eps) · weight + bias
    /// (biased variance, as PyTorch). weight, bias: [D].
    public static func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
        let d = x.shape.last!, rows = x.count / max(d, 1)
        precondition(weight.shape == [d] && bias.shape == [d], "layerNorm parameters must be [\(d)]")
        let out = Tensor(uninitialized: x.shape)
        let xhat = Tensor(uninitialized: x.shape)
        var inv = [Float](repeating: 0, count: rows)
        let xp = x.pointer, wp = weight.pointer, bp = bias.pointer, op = out.pointer, hp = xhat.pointer
        for r in 0..<rows {
            let row = xp + r * d
            var mean: Float = 0
            for j in 0..<d { mean += row[j] }
            mean /= Float(d)
            var v: Float = 0
            for j in 0..<d { let c = row[j] - mean; v += c * c }
            let iv = 1 / (v / Float(d) + eps).squareRoot()
            inv[r] = iv
            let o = op + r * d, h = hp + r * d
            for j in 0..<d { h[j] = (row[j] - mean) * iv; o[j] = h[j] * wp[j] + bp[j] }
        }
        return out.record([x, weight, bias]) { g in
            let hp = xhat.pointer  // keeps x̂ alive as long as the tape
            let gp = g.pointer
            let gx = x.requiresGrad ? x.gradBuffer().pointer : nil
            let gw = weight.requiresGrad ? weight.gradBuffer().pointer : nil
            let gbias = bias.requiresGrad ? bias.gradBuffer().pointer : nil
            for r in 0..<rows {
                let dy = gp + r * d, h = hp + r * d
                if let gw { for j in 0..<d { gw[j] += dy[j] * h[j] } }
                if let gbias { for j in 0..<d { gbias[j] += dy[j] } }
                if let gx {
                    var m1: Float = 0, m2: Float = 0
                    for j in 0..<d { let a = dy[j] * wp[j]; m1 += a; m2 += a * h[j] }
                    m1 /= Float(d); m2 /= Float(d)
                    let dx = gx + r * d, iv = inv[r]
                    for j in 0..<d { dx[j] += iv * (dy[j] * wp[j] - m1 - h[j] * m2) }
                }
            }
        }
    }
}

// MARK: - Rotary position embedding

/// Rotary position embedding tables in Hugging Face's rotate-half layout: for head size D and
/// frequency i < D/2, dimensions i and i + D/2 rotate together by angle pos · θ^(−2i/D).
public struct RotaryEmbedding: Sendable {
    /// Head size D.
    public let headDim: Int
    /// θ (rope_theta).
    public let theta: Float
    /// Inverse frequencies [D/2], computed in Float32 as transformers does.
    public let inverseFrequencies: [Float]

    public init(headDim: Int, theta: Float = 10000) {
        precondition(headDim % 2 == 0, "rotary head size must be even")
        self.headDim = headDim
        self.theta = theta
        inverseFrequencies = (0..<(headDim / 2)).map { i in
            1 / Foundation.pow(theta, Float(2 * i) / Float(headDim))
        }
    }

    /// Rotates one head vector x [D] into y [D] (rotate-half layout): y = x·cos + rotate_half(x)·sin,
    /// with the angle's sign flipped for `sign` −1 (the inverse rotation, used by backward).
    @inline(__always)
    static func rotate(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, cos c: UnsafePointer<Float>,
                       sin s: UnsafePointer<Float>, half: Int, sign: Float) {
        for i in 0..<half {
            let x1 = x[i], x2 = x[i + half], si = sign * s[i]
            y[i] = x1 * c[i] - x2 * si
            y[i + half] = x2 * c[i] + x1 * si
        }
    }
}

extension Tensor {
    /// Applies rotary embedding to x [B, H, T, D]: y = x·cos + rotate_half(x)·sin, with
    /// rotate_half(x) = cat(−x[D/2:], x[:D/2]). `positions` is [T] (shared by the batch) or
    /// [B·T] (per sequence, e.g. with left padding).
    public func rotaryEmbedded(_ rope: RotaryEmbedding, positions: [Int]) -> Tensor {
        precondition(rank == 4 && shape[3] == rope.headDim, "rotary input must be [B, H, T, \(rope.headDim)], got \(shape)")
        let (b, h, t, d) = (shape[0], shape[1], shape[2], shape[3])
        precondition(positions.count == t || positions.count == b * t, "positions must be [T] or [B·T]")
        let half = d / 2
        let perBatch = positions.count == b * t
        let (cosT, sinT) = rope.tables(perBatch ? positions : (0..<b).flatMap { _ in positions })  // [B·T, D/2]
        func apply(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, sign: Float) {
            cosT.withUnsafeBufferPointer { cp in
                sinT.withUnsafeBufferPointer { sp in
                    for bi in 0..<b {
                        for hi in 0..<h {
                            for ti in 0..<t {
                                let row = bi * t + ti, off = ((bi * h + hi) * t + ti) * d
                                RotaryEmbedding.rotate(src + off, into: dst + off, cos: cp.baseAddress! + row * half,
                                                       sin: sp.baseAddress! + row * half, half: half, sign: sign)
                            }
                        }
                    }
                }
            }
        }
        let out = Tensor(uninitialized: shape)
        apply(pointer, out.pointer, sign: 1)
        return out.record([self]) { [self] g in
            // The inverse rotation (angle −θ) is the transpose.
            let back = Tensor(uninitialized: self.shape)
            apply(g.pointer, back.pointer, sign: -1)
            self.accumulateGrad(back, owned: true)
        }
    }
}

// MARK: - Dropout and losses

extension Tensor {
    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// 1/(1−p). Identity when `p == 0` or `training` is false. Draws from `rng`.
    ///
    /// `part`: this tensor holds rows `rows` (of its leading axis) of a batch of `total` rows
    /// whose other rows other data-parallel ranks hold. The generator then draws the whole
    /// batch's mask and uses this part's rows, so each rank drops exactly what one process
    /// running the whole batch would, and `rng` ends in the same state.
    public func dropout(_ p: Float, training: Bool = true, rng: inout SeededRNG,
                        part: (rows: Range<Int>, total: Int)? = nil) -> Tensor {
        if !training || p == 0 { return self }
        precondition(p > 0 && p < 1, "dropout probability must be in [0, 1)")
        let scale = 1 / (1 - p)
        let mask = Tensor(uninitialized: shape)
        let mp = mask.pointer
        let perRow = shape.isEmpty || shape[0] == 0 ? 0 : count / shape[0]
        let (before, after): (Int, Int)
        if let part {
            precondition(part.rows.count == (shape.first ?? 0) && part.rows.upperBound <= part.total,
                         "dropout part \(part.rows) of \(part.total) rows does not match shape \(shape)")
            (before, after) = (part.rows.lowerBound * perRow, (part.total - part.rows.upperBound) * perRow)
        } else {
            (before, after) = (0, 0)
        }
        for _ in 0..<before { _ = rng.next() }
        for i in 0..<count { mp[i] = rng.nextFloat() < p ? 0 : scale }
        for _ in 0..<after { _ = rng.next() }
        let out = Tensor.pointwise(self, mask, MulKernel.self)
        return out.record([self]) { [self] g in
            self.accumulateGrad(Tensor.pointwise(g, mask, MulKernel.self), owned: true)
        }
    }

    /// Mean cross-entropy of logits [N, C] against class `targets` [N]; targets equal to
    /// `ignoreIndex` are skipped and the mean is over the kept ones (PyTorch's convention;
    /// all ignored gives NaN as PyTorch does). Returns a scalar.
    public static func crossEntropy(_ logits: Tensor, targets: [Int], ignoreIndex: Int = -100) -> Tensor {
        precondition(logits.rank == 2 && logits.shape[0] == targets.count, "crossEntropy needs [N, C] logits and N targets")
        let n = logits.shape[0], c = logits.shape[1]
        let logp = Tensor(uninitialized: logits.shape)
        tmf_log_softmax_rows(logits.pointer, logp.pointer, n, c)
        var total: Double = 0
        var kept = 0
        for i in 0..<n where targets[i] != ignoreIndex {
            precondition(targets[i] >= 0 && targets[i] < c, "target \(targets[i]) out of 0..<\(c)")
            total -= Double(logp.pointer[i * c + targets[i]])
            kept += 1
        }
        let out = Tensor(scalar: kept == 0 ? .nan : Float(total / Double(kept)))
        return out.record([logits]) { g in
            guard kept > 0 else { return }
            let scale = g.pointer[0] / Float(kept)
            let gb = logits.gradBuffer().pointer
            for i in 0..<n where targets[i] != ignoreIndex {
                let lp = logp.pointer + i * c, d = gb + i * c
                for j in 0..<c { d[j] += Foundation.exp(lp[j]) * scale }
                d[targets[i]] -= scale
            }
        }
    }
}

// MARK: - Row replacement (embedding injection)

extension Tensor {
    /// `self` [N, D...] with row `rows[i]` replaced by row i of `values` [rows.count, D...]
    /// (rows distinct). Gradients: `values` gets the output gradient's replaced rows, `self`
    /// the rest (replaced rows get zero). Used to put adaptor outputs at the positions of
    /// modality tokens in a prompt's token embeddings.
    public func replacingRows(_ rows: [Int], with values: Tensor) -> Tensor {
        let n = shape[0], d = count / max(n, 1)
        precondition(values.shape.first == rows.count && values.count == rows.count * d,
                     "replacingRows: \(rows.count) rows of width \(d) from \(values.shape)")
        precondition(Set(rows).count == rows.count && rows.allSatisfy { $0 >= 0 && $0 < n }, "replacingRows: rows must be distinct and in 0..<\(n)")
        let out = copy()
        for (i, r) in rows.enumerated() { (out.pointer + r * d).update(from: values.pointer + i * d, count: d) }
        return out.record([self, values]) { [self] g in
            if self.requiresGrad {
                let gb = self.gradBuffer().pointer
                var replaced = [Bool](repeating: false, count: n)
                for r in rows { replaced[r] = true }
                for r in 0..<n where !replaced[r] {
                    let s = g.pointer + r * d, t = gb + r * d
                    for j in 0..<d { t[j] += s[j] }
                }
            }
            if values.requiresGrad {
                let gv = values.gradBuffer().pointer
                for (i, r) in rows.enumerated() {
                    let s = g.pointer + r * d, t = gv + i * d
                    for j in 0..<d { t[j] += s[j] }
                }
            }
        }
    }
}
