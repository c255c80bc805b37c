/// Shape ops: reshape shares storage; permute, slice and concat copy into a contiguous result.
extension Tensor {
    /// The same elements viewed with another shape (no copy). One dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            s[i] = count / known
        }
        precondition(Tensor.elementCount(s) == count, "cannot reshape \(shape) to \(newShape)")
        let out = Tensor(shape: s, storage: storage)
        return out.record([self]) { [self] g in self.accumulateGrad(g) }
    }

    /// Reorders dimensions: result dimension i is input dimension `order[i]` (copies).
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.count == rank && Set(order) == Set(0..<rank), "bad permutation \(order) for \(shape)")
        let outShape = order.map { shape[$0] }
        let out = Tensor(uninitialized: outShape)
        Tensor.permuteCopy(from: self, order: order, into: out)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.record([self]) { [self] g in
            let back = Tensor(uninitialized: self.shape)
            Tensor.permuteCopy(from: g, order: inverse, into: back)
            self.accumulateGrad(back, owned: true)
        }
    }

    /// Swaps two dimensions (copies).
    public func transposed(_ d0: Int = -2, _ d1: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(normalizedAxis(d0), normalizedAxis(d1))
        return permuted(order)
    }

    static func permuteCopy(from src: Tensor, order: [Int], into dst: Tensor) {
        let r = src.rank
        if r == 0 { dst.pointer[0] = src.pointer[0]; return }
        var inStrides = [Int](repeating: 1, count: r)
        for i in stride(from: r - 2, through: 0, by: -1) { inStrides[i] = inStrides[i + 1] * src.shape[i + 1] }
        let srcStrides = order.map { inStrides[$0] }  // stride in src for each output dim
        let zero = [Int](repeating: 0, count: r)
        let sp = src.pointer, dp = dst.pointer
        Broadcast.rows(dst.shape, srcStrides, zero) { o, oa, _, n, ia, _ in
            if ia == 1 { for j in 0..<n { dp[o + j] = sp[oa + j] } }
            else { for j in 0..<n { dp[o + j] = sp[oa + j * ia] } }
        }
    }

    /// Elements `range` of dimension `axis` (copies).
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let ax = normalizedAxis(axis)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[ax], "slice \(range) out of \(shape) at axis \(ax)")
        var outShape = shape
        outShape[ax] = range.count
        let outer = shape[..<ax].reduce(1, *), inner = shape[(ax + 1)...].reduce(1, *)
        let out = Tensor(uninitialized: outShape)
        let src = pointer, dst = out.pointer
        let w = range.count * inner, sw = shape[ax] * inner, off = range.lowerBound * inner
        for o in 0..<outer { (dst + o * w).update(from: src + o * sw + off, count: w) }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer, gp = g.pointer
            for o in 0..<outer {
                let d = gb + o * sw + off, s = gp + o * w
                for j in 0..<w { d[j] += s[j] }
            }
        }
    }

    /// Joins tensors along `axis`; all other dimensions must agree.
    public static func concat(_ parts: [Tensor], axis: Int) -> Tensor {
        precondition(!parts.isEmpty, "concat of nothing")
        let first = parts[0]
        let ax = first.normalizedAxis(axis)
        for p in parts {
            precondition(p.rank == first.rank && (0..<p.rank).allSatisfy { $0 == ax || p.shape[$0] == first.shape[$0] },
                         "concat shapes differ: \(parts.map(\.shape)) at axis \(ax)")
        }
        var outShape = first.shape
        outShape[ax] = parts.reduce(0) { $0 + $1.shape[ax] }
        let outer = first.shape[..<ax].reduce(1, *), inner = first.shape[(ax + 1)...].reduce(1, *)
        let out = Tensor(uninitialized: outShape)
        let ow = outShape[ax] * inner
        var offset = 0
        var offsets: [Int] = []
        for p in parts {
            offsets.append(offset)
            let w = p.shape[ax] * inner
            for o in 0..<outer { (out.pointer + o * ow + offset).update(from: p.pointer + o * w, count: w) }
            offset += w
        }
        return out.record(parts) { g in
            for (p, off) in zip(parts, offsets) where p.requiresGrad {
                let w = p.shape[ax] * inner
                let gb = p.gradBuffer().pointer
                for o in 0..<outer {
                    let s = g.pointer + o * ow + off, d = gb + o * w
                    for j in 0..<w { d[j] += s[j] }
                }
            }
        }
    }

    /// Splits dimension `axis` into consecutive pieces of the given sizes (which sum to it).
    public func split(axis: Int, sizes: [Int]) -> [Tensor] {
        let ax = normalizedAxis(axis)
        precondition(sizes.reduce(0, +) == shape[ax], "split sizes \(sizes) do not sum to \(shape[ax])")
        var start = 0
        return sizes.map { n in
            defer { start += n }
            return slice(axis: ax, start..<(start + n))
        }
    }

    /// Inserts a dimension of size 1 at `axis` (no copy).
    public func unsqueezed(_ axis: Int) -> Tensor {
        var s = shape
        s.insert(1, at: axis < 0 ? axis + rank + 1 : axis)
        return reshaped(s)
    }
}

// MARK: - Reductions

extension Tensor {
    /// Sum over `axis` (keeping it as size 1 when `keepDim`).
    public func sum(axis: Int, keepDim: Bool = false) -> Tensor {
        let ax = normalizedAxis(axis)
        let outer = shape[..<ax].reduce(1, *), n = shape[ax], inner = shape[(ax + 1)...].reduce(1, *)
        var outShape = shape
        if keepDim { outShape[ax] = 1 } else { outShape.remove(at: ax) }
        let out = Tensor(zeros: outShape)
        let src = pointer, dst = out.pointer
        for o in 0..<outer {
            let d = dst + o * inner
            for k in 0..<n {
                let s = src + (o * n + k) * inner
                for j in 0..<inner { d[j] += s[j] }
            }
        }
        return out.record([self]) { [self] g in
            let gb = self.gradBuffer().pointer
            for o in 0..<outer {
                let s = g.pointer + o * inner
                for k in 0..<n {
                    let d = gb + (o * n + k) * inner
                    for j in 0..<inner { d[j] += s[j] }
                }
            }
        }
    }

    /// Mean over `axis`.
    public func mean(axis: Int, keepDim: Bool = false) -> Tensor {
        sum(axis: axis, keepDim: keepDim).scale(1 / Float(shape[normalizedAxis(axis)]))
    }

    /// Sum of all elements (a scalar tensor), accumulated in Double.
    public func sum() -> Tensor {
        var s: Double = 0
        let p = pointer
        for i in 0..<count { s += Double(p[i]) }
        let out = Tensor(scalar: Float(s))
        return out.record([self]) { [self] g in
            let v = g.pointer[0]
            let gb = self.gradBuffer().pointer
            for i in 0..<self.count { gb[i] += v }
        }
    }

    /// Mean of all elements (a scalar tensor).
    public func mean() -> Tensor { sum().scale(1 / Float(max(count, 1))) }
}
