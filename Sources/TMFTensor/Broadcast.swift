/// Broadcasting in NumPy/PyTorch's rules: shapes align at the right; a dimension of 1 (or a
/// missing one) stretches.
enum Broadcast {
    /// The broadcast result shape of `a` and `b`.
    static func shape(_ a: [Int], _ b: [Int]) -> [Int] {
        let r = max(a.count, b.count)
        var out = [Int](repeating: 1, count: r)
        for i in 0..<r {
            let da = i < r - a.count ? 1 : a[i - (r - a.count)]
            let db = i < r - b.count ? 1 : b[i - (r - b.count)]
            precondition(da == db || da == 1 || db == 1, "shapes \(a) and \(b) do not broadcast")
            out[i] = da == 1 ? db : da
        }
        return out
    }

    /// Whether `small`, without its leading 1s, is the trailing dimensions of `shape`, so that it is
    /// one contiguous block repeated along the leading dimensions (false when it is empty).
    static func isTrailingBlock(_ small: [Int], of shape: [Int]) -> Bool {
        let dims = small.drop(while: { $0 == 1 })
        guard !dims.isEmpty, dims.count <= shape.count, !dims.contains(0) else { return false }
        return shape.suffix(dims.count).elementsEqual(dims)
    }

    /// Element strides of `shape` viewed as `out` (0 where broadcast).
    static func strides(of shape: [Int], in out: [Int]) -> [Int] {
        var strides = [Int](repeating: 0, count: out.count)
        var s = 1
        let off = out.count - shape.count
        for i in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[i + off] = shape[i] == 1 ? 0 : s
            s *= shape[i]
        }
        return strides
    }

    /// Calls `body(outOffset, aOffset, bOffset, n, aStride, bStride)` for each innermost row of
    /// the output, covering every output element once.
    @inline(__always)
    static func rows(_ out: [Int], _ sa: [Int], _ sb: [Int],
                     _ body: (Int, Int, Int, Int, Int, Int) -> Void) {
        let r = out.count
        if r == 0 { body(0, 0, 0, 1, 0, 0); return }
        let n = out[r - 1]
        let total = Tensor.elementCount(out)
        if total == 0 { return }
        var idx = [Int](repeating: 0, count: r)
        var oa = 0, ob = 0, o = 0
        while o < total {
            body(o, oa, ob, n, sa[r - 1], sb[r - 1])
            o += n
            var d = r - 2
            while d >= 0 {
                idx[d] += 1
                oa += sa[d]; ob += sb[d]
                if idx[d] < out[d] { break }
                oa -= sa[d] * out[d]; ob -= sb[d] * out[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// Sums `g` (shaped `out`) down to `shape` (which broadcasts to `out`).
    static func reduce(_ g: Tensor, to shape: [Int]) -> Tensor {
        if g.shape == shape { return g }
        let res = Tensor(zeros: shape)
        let st = strides(of: shape, in: g.shape)
        let zero = [Int](repeating: 0, count: g.shape.count)
        let gp = g.pointer, rp = res.pointer
        rows(g.shape, st, zero) { o, oa, _, n, sa, _ in
            if sa == 0 {
                var s: Float = 0
                for j in 0..<n { s += gp[o + j] }
                rp[oa] += s
            } else {
                for j in 0..<n { rp[oa + j * sa] += gp[o + j] }
            }
        }
        return res
    }
}
