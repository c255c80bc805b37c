import CKernels
import Foundation

/// A pointwise binary function, specialised at compile time so loops vectorise.
protocol BinaryKernel { static func apply(_ a: Float, _ b: Float) -> Float }
enum AddKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivKernel: BinaryKernel { @inline(__always) static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

extension Tensor {
    /// Pointwise `K` with broadcasting, no tape.
    static func pointwise<K: BinaryKernel>(_ a: Tensor, _ b: Tensor, _: K.Type) -> Tensor {
        let ap = a.pointer, bp = b.pointer
        if a.shape == b.shape {
            let out = Tensor(uninitialized: a.shape), op = out.pointer
            for i in 0..<a.count { op[i] = K.apply(ap[i], bp[i]) }
            return out
        }
        let shape = Broadcast.shape(a.shape, b.shape)
        let out = Tensor(uninitialized: shape), op = out.pointer
        if b.count == 1 && a.shape == shape {
            let s = bp[0]
            for i in 0..<a.count { op[i] = K.apply(ap[i], s) }
            return out
        }
        if a.count == 1 && b.shape == shape {
            let s = ap[0]
            for i in 0..<b.count { op[i] = K.apply(s, bp[i]) }
            return out
        }
        // One operand is a contiguous block of the trailing dimensions (a bias [D] against
        // [rows, D]): it repeats along the leading dimensions, so each row is a plain loop.
        if a.shape == shape && Broadcast.isTrailingBlock(b.shape, of: shape) {
            let m = b.count
            for r in 0..<(a.count / m) {
                let ar = ap + r * m, orow = op + r * m  // row pointers: no index arithmetic inside
                for j in 0..<m { orow[j] = K.apply(ar[j], bp[j]) }
            }
            return out
        }
        if b.shape == shape && Broadcast.isTrailingBlock(a.shape, of: shape) {
            let m = a.count
            for r in 0..<(b.count / m) {
                let br = bp + r * m, orow = op + r * m
                for j in 0..<m { orow[j] = K.apply(ap[j], br[j]) }
            }
            return out
        }
        let sa = Broadcast.strides(of: a.shape, in: shape), sb = Broadcast.strides(of: b.shape, in: shape)
        Broadcast.rows(shape, sa, sb) { o, oa, ob, n, ia, ib in
            if ia == 1 && ib == 1 {
                for j in 0..<n { op[o + j] = K.apply(ap[oa + j], bp[ob + j]) }
            } else if ia == 1 && ib == 0 {
                let s = bp[ob]
                for j in 0..<n { op[o + j] = K.apply(ap[oa + j], s) }
            } else if ia == 0 && ib == 1 {
                let s = ap[oa]
                for j in 0..<n { op[o + j] = K.apply(s, bp[ob + j]) }
            } else {
                for j in 0..<n { op[o + j] = K.apply(ap[oa + j * ia], bp[ob + j * ib]) }
            }
        }
        return out
    }

    /// Elementwise sum with broadcasting.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = pointwise(a, b, AddKernel.self)
        return out.record([a, b]) { g in
            if a.requiresGrad { a.accumulateGrad(Broadcast.reduce(g, to: a.shape)) }
            if b.requiresGrad { b.accumulateGrad(Broadcast.reduce(g, to: b.shape)) }
        }
    }

    /// Elementwise difference with broadcasting.
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = pointwise(a, b, SubKernel.self)
        return out.record([a, b]) { g in
            if a.requiresGrad { a.accumulateGrad(Broadcast.reduce(g, to: a.shape)) }
            if b.requiresGrad { b.accumulateGrad(Broadcast.reduce(g.scaled(-1), to: b.shape), owned: true) }
        }
    }

    /// Elementwise product with broadcasting.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = pointwise(a, b, MulKernel.self)
        return out.record([a, b]) { g in
            if a.requiresGrad { a.accumulateGrad(Broadcast.reduce(pointwise(g, b, MulKernel.self), to: a.shape), owned: true) }
            if b.requiresGrad { b.accumulateGrad(Broadcast.reduce(pointwise(g, a, MulKernel.self), to: b.shape), owned: true) }
        }
    }

    /// Elementwise quotient with broadcasting.
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = pointwise(a, b, DivKernel.self)
        let saved = out.detached()  // the closure must not retain `out` (its own owner)
        return out.record([a, b]) { g in
            if a.requiresGrad { a.accumulateGrad(Broadcast.reduce(pointwise(g, b, DivKernel.self), to: a.shape), owned: true) }
            if b.requiresGrad {
                // d(a/b)/db = -out / b
                let t = pointwise(pointwise(g, saved, MulKernel.self), b, DivKernel.self)
                b.accumulateGrad(Broadcast.reduce(t.scaled(-1), to: b.shape), owned: true)
            }
        }
    }

    /// Multiplies every element by `s` (no tape; see `scale` for the differentiable op).
    func scaled(_ s: Float) -> Tensor {
        let out = Tensor(uninitialized: shape), op = out.pointer, p = pointer
        for i in 0..<count { op[i] = p[i] * s }
        return out
    }

    /// `self · s`, differentiable.
    public func scale(_ s: Float) -> Tensor {
        let out = scaled(s)
        return out.record([self]) { [self] g in self.accumulateGrad(g.scaled(s), owned: true) }
    }

    /// `self + s`, differentiable.
    public func adding(_ s: Float) -> Tensor {
        let out = Tensor(uninitialized: shape), op = out.pointer, p = pointer
        for i in 0..<count { op[i] = p[i] + s }
        return out.record([self]) { [self] g in self.accumulateGrad(g) }
    }

    public static func * (a: Tensor, s: Float) -> Tensor { a.scale(s) }
    public static func * (s: Float, a: Tensor) -> Tensor { a.scale(s) }
    public static func + (a: Tensor, s: Float) -> Tensor { a.adding(s) }
    public static func - (a: Tensor, s: Float) -> Tensor { a.adding(-s) }
    public static prefix func - (a: Tensor) -> Tensor { a.scale(-1) }
}

// MARK: - Unary functions

/// A pointwise function and its derivative, written in terms of input x and output y.
protocol UnaryKernel {
    static func forward(_ x: Float) -> Float
    static func derivative(_ x: Float, _ y: Float) -> Float
}

enum ExpKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.exp(x) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { y }
}
enum LogKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.log(x) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { 1 / x }
}
enum SqrtKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x.squareRoot() }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { 0.5 / y }
}
enum ReLUKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x > 0 ? x : 0 }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { x > 0 ? 1 : 0 }
}
enum SigmoidKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { 1 / (1 + Foundation.exp(-x)) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { y * (1 - y) }
}
enum TanhKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { Foundation.tanh(x) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { 1 - y * y }
}
enum SquareKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x * x }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float { 2 * x }
}
/// SiLU: x·σ(x); σ'(x) form: σ(x)·(1 + x·(1 − σ(x))).
enum SiLUKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x / (1 + Foundation.exp(-x)) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float {
        let s = 1 / (1 + Foundation.exp(-x)); return s * (1 + x * (1 - s))
    }
}
/// Exact GELU: x·Φ(x).
enum GELUKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118654752)) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float {
        let cdf = 0.5 * (1 + erff(x * 0.70710678118654752))
        let pdf = Foundation.exp(-0.5 * x * x) * 0.39894228040143268
        return cdf + x * pdf
    }
}
/// GELU, tanh approximation (PyTorch's approximate="tanh", transformers' gelu_new/gelu_pytorch_tanh).
enum GELUTanhKernel: UnaryKernel {
    static let c: Float = 0.7978845608028654  // sqrt(2/π)
    @inline(__always) static func forward(_ x: Float) -> Float {
        0.5 * x * (1 + Foundation.tanh(c * (x + 0.044715 * x * x * x)))
    }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float {
        let u = c * (x + 0.044715 * x * x * x)
        let t = Foundation.tanh(u)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x)
    }
}
/// QuickGELU (CLIP): x·σ(1.702x).
enum QuickGELUKernel: UnaryKernel {
    @inline(__always) static func forward(_ x: Float) -> Float { x / (1 + Foundation.exp(-1.702 * x)) }
    @inline(__always) static func derivative(_ x: Float, _ y: Float) -> Float {
        let s = 1 / (1 + Foundation.exp(-1.702 * x)); return s + 1.702 * x * s * (1 - s)
    }
}

extension Tensor {
    static func unaryForward<K: UnaryKernel>(_ x: Tensor, _: K.Type) -> Tensor {
        let out = Tensor(uninitialized: x.shape), op = out.pointer, p = x.pointer
        for i in 0..<x.count { op[i] = K.forward(p[i]) }
        return out
    }

    func unary<K: UnaryKernel>(_ k: K.Type, forward: Tensor? = nil) -> Tensor {
        let out = forward ?? Tensor.unaryForward(self, k)
        let y = out.storage  // not `out`: the closure must not retain its own owner
        return out.record([self]) { [self] g in
            let d = Tensor(uninitialized: self.shape), dp = d.pointer
            let xp = self.pointer, yp = y.pointer, gp = g.pointer
            for i in 0..<self.count { dp[i] = gp[i] * K.derivative(xp[i], yp[i]) }
            self.accumulateGrad(d, owned: true)
        }
    }

    /// eˣ elementwise (vectorised kernel).
    public func exp() -> Tensor {
        let out = Tensor(uninitialized: shape)
        tmf_vexp(pointer, out.pointer, count)
        return unary(ExpKernel.self, forward: out)
    }
    /// Natural logarithm elementwise.
    public func log() -> Tensor { unary(LogKernel.self) }
    /// Square root elementwise.
    public func sqrt() -> Tensor { unary(SqrtKernel.self) }
    /// x² elementwise.
    public func square() -> Tensor { unary(SquareKernel.self) }
    /// max(x, 0).
    public func relu() -> Tensor { unary(ReLUKernel.self) }
    /// Logistic sigmoid.
    public func sigmoid() -> Tensor { unary(SigmoidKernel.self) }
    /// Hyperbolic tangent.
    public func tanh() -> Tensor { unary(TanhKernel.self) }
    /// SiLU (swish): x·σ(x) (vectorised kernel).
    public func silu() -> Tensor {
        let out = Tensor(uninitialized: shape)
        tmf_silu(pointer, out.pointer, count)
        return unary(SiLUKernel.self, forward: out)
    }
    /// GELU: exact (erf) by default, or the tanh approximation.
    public func gelu(approximateTanh: Bool = false) -> Tensor {
        let out = Tensor(uninitialized: shape)
        tmf_gelu(pointer, out.pointer, count, approximateTanh ? 1 : 0)
        return approximateTanh ? unary(GELUTanhKernel.self, forward: out) : unary(GELUKernel.self, forward: out)
    }
    /// QuickGELU: x·σ(1.702x), CLIP's activation (vectorised kernel).
    public func quickGELU() -> Tensor {
        let out = Tensor(uninitialized: shape)
        tmf_gelu(pointer, out.pointer, count, 2)
        return unary(QuickGELUKernel.self, forward: out)
    }
}
