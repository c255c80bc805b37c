/// Ops for graph models (MBHT's hypergraph branch in TMFGraph).
extension Tensor {
    /// Sparse placement: a zero tensor of `shape` whose flat element `destinations[k]` is
    /// `self`'s flat element `sources[k]` (a differentiable gather of scattered elements, e.g.
    /// similarity values into a hypergraph incidence matrix).
    ///
    /// - `sources`: flat indices into `self` (any shape); may repeat.
    /// - `destinations`: flat indices into the result, same count as `sources`, all distinct.
    /// - Backward: `grad(self)[sources[k]] += grad(out)[destinations[k]]`.
    public func placed(into shape: [Int], sources: [Int], destinations: [Int]) -> Tensor {
        precondition(sources.count == destinations.count,
                     "placed: \(sources.count) sources for \(destinations.count) destinations")
        let out = Tensor(zeros: shape)
        let n = out.count, sp = pointer, dp = out.pointer
        for k in sources.indices {
            let s = sources[k], d = destinations[k]
            precondition(s >= 0 && s < count, "placed: source \(s) out of 0..<\(count)")
            precondition(d >= 0 && d < n, "placed: destination \(d) out of 0..<\(n)")
            dp[d] = sp[s]
        }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer, gp = g.pointer
            for k in sources.indices { gb[sources[k]] += gp[destinations[k]] }
        }
    }

    /// L2-normalises the last axis: y = x / max(‖x‖, eps) (PyTorch's `F.normalize`, p = 2).
    /// A row with ‖x‖ < eps is divided by eps (gradient 1/eps, no NaN for zero rows).
    public func l2Normalized(eps: Float = 1e-12) -> Tensor {
        let cols = shape.last ?? 1, rows = count / max(cols, 1)
        let out = Tensor(uninitialized: shape)
        var norms = [Float](repeating: 0, count: rows)
        let xp = pointer, yp = out.pointer
        for r in 0..<rows {
            var s: Float = 0
            for j in 0..<cols { s += xp[r * cols + j] * xp[r * cols + j] }
            let nrm = s.squareRoot()
            norms[r] = nrm
            let inv = 1 / max(nrm, eps)
            for j in 0..<cols { yp[r * cols + j] = xp[r * cols + j] * inv }
        }
        let saved = out.storage
        return out.record([self]) { [self] g in
            // ‖x‖ ≥ eps: dx = (dy − y·(dy·y)) / ‖x‖; otherwise dx = dy / eps.
            let gb = self.gradBuffer().pointer, gp = g.pointer, y = saved.pointer
            for r in 0..<rows {
                let nrm = norms[r]
                if nrm >= eps {
                    var dot: Float = 0
                    for j in 0..<cols { dot += gp[r * cols + j] * y[r * cols + j] }
                    let inv = 1 / nrm
                    for j in 0..<cols { gb[r * cols + j] += (gp[r * cols + j] - y[r * cols + j] * dot) * inv }
                } else {
                    for j in 0..<cols { gb[r * cols + j] += gp[r * cols + j] / eps }
                }
            }
        }
    }
}
