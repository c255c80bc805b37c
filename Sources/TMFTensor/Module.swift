// The module layer: weights with their checkpoint keys and storage, and the layers every model
// is built from (`Linear`, `Embedding`, `RMSNorm`, `LayerNorm`). Llama, CLIP, MBHT and the
// fusion module compose these; parameter lists and expected checkpoint keys are read off the
// modules (`Module.namedWeights`), as PyTorch's `named_parameters()` / `state_dict()` are.

import CKernels

/// A frozen weight in 16-bit floating point (bf16 or f16), row-major, in PyTorch's dimension
/// order. Its bits are used in place (for example inside a memory-mapped safetensors file) or
/// owned; they are never widened to Float32 as a whole except by `widened()`.
public final class HalfTensor: @unchecked Sendable {
    /// Dimensions, outermost first.
    public let shape: [Int]
    /// How the bits encode numbers.
    public let precision: HalfPrecision
    /// The 16-bit patterns, `shape`'s product of them.
    public let bits: UnsafeBufferPointer<UInt16>
    private let owner: AnyObject?
    private let owned: UnsafeMutableBufferPointer<UInt16>?

    /// Bits that live elsewhere (2-byte aligned), kept alive by `owner` (e.g. a file mapping).
    public init(shape: [Int], precision: HalfPrecision, borrowing pointer: UnsafePointer<UInt16>, owner: AnyObject?) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(Int(bitPattern: pointer) % 2 == 0, "16-bit weights must be 2-byte aligned")
        self.shape = shape
        self.precision = precision
        bits = UnsafeBufferPointer(start: pointer, count: Tensor.elementCount(shape))
        self.owner = owner
        owned = nil
    }

    /// Owns `buffer` (`shape`'s product of patterns; freed with the tensor).
    private init(shape: [Int], precision: HalfPrecision, owning buffer: UnsafeMutableBufferPointer<UInt16>, count: Int) {
        self.shape = shape
        self.precision = precision
        bits = UnsafeBufferPointer(rebasing: buffer[0..<count])
        owner = nil
        owned = buffer
    }

    /// A copy of `values` (16-bit patterns, row-major).
    public convenience init(shape: [Int], precision: HalfPrecision, bits values: [UInt16]) {
        precondition(values.count == Tensor.elementCount(shape), "\(values.count) values for shape \(shape)")
        let buffer = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: max(values.count, 1))
        _ = buffer.initialize(from: values)
        self.init(shape: shape, precision: precision, owning: buffer, count: values.count)
    }

    /// `tensor`'s values rounded to `precision` (to nearest, ties to even, as torch's `.to()`).
    public convenience init(rounding tensor: Tensor, to precision: HalfPrecision) {
        let n = tensor.count, p = tensor.pointer
        let buffer = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: max(n, 1))
        for i in 0..<n { buffer[i] = precision.bits(p[i]) }
        self.init(shape: tensor.shape, precision: precision, owning: buffer, count: n)
    }

    deinit { owned?.deallocate() }

    /// Number of elements.
    public var count: Int { bits.count }

    /// Every value as a new Float32 tensor of the same shape (exact).
    public func widened() -> Tensor {
        let out = Tensor(uninitialized: shape)
        if count > 0 { tmf_half_widen(precision.code, bits.baseAddress, out.pointer, count) }
        return out
    }

    /// Rows `indices` of a [V, D] table as a new Float32 tensor [indices.count, D] (exact).
    public func widenedRows(_ indices: [Int]) -> Tensor {
        precondition(shape.count == 2, "widenedRows needs a [V, D] table, shape is \(shape)")
        let v = shape[0], d = shape[1]
        let out = Tensor(uninitialized: [indices.count, d])
        for (i, r) in indices.enumerated() {
            precondition(r >= 0 && r < v, "row \(r) out of range 0..<\(v)")
            HalfMatMul.widen(bits, precision, rows: r..<(r + 1), inFeatures: d, into: out.pointer + i * d)
        }
        return out
    }
}

extension HalfPrecision {
    /// The 16-bit pattern of `value` (to nearest, ties to even).
    @inlinable public func bits(_ value: Float) -> UInt16 {
        self == .bf16 ? HalfConversion.bfloat16Bits(value) : HalfConversion.float16Bits(value)
    }
}

/// How a weight is stored.
public enum WeightStorageType: String, Sendable, Equatable, CaseIterable {
    case f32, bf16, f16

    /// The 16-bit format, or nil for f32.
    public var halfPrecision: HalfPrecision? {
        switch self {
        case .f32: return nil
        case .bf16: return .bf16
        case .f16: return .f16
        }
    }
}

/// One weight of a module: Float32 values (trainable or frozen), frozen 16-bit values, or only a
/// shape (`meta`, like PyTorch's meta device: a model skeleton that lists its keys and shapes
/// without memory, and cannot run).
public enum Weight: @unchecked Sendable {
    case float(Tensor)
    case half(HalfTensor)
    case meta([Int])

    /// Dimensions, outermost first.
    public var shape: [Int] {
        switch self {
        case let .float(t): return t.shape
        case let .half(h): return h.shape
        case let .meta(s): return s
        }
    }

    /// How the values are stored (meta weights report f32).
    public var storageType: WeightStorageType {
        if case let .half(h) = self { return h.precision == .bf16 ? .bf16 : .f16 }
        return .f32
    }

    /// The Float32 tensor of a `.float` weight. Traps for the others: callers that need
    /// Float32 values from any weight use `widened()`.
    public var tensor: Tensor {
        switch self {
        case let .float(t): return t
        case .half: preconditionFailure("a 16-bit weight has no Float32 tensor: use widened()")
        case let .meta(s): preconditionFailure("a meta weight \(s) has no values")
        }
    }

    /// The Float32 tensor of a `.float` weight, or nil.
    public var floatTensor: Tensor? {
        if case let .float(t) = self { return t }
        return nil
    }

    /// The values as Float32: the tensor itself for `.float`, a widened copy for `.half`.
    public func widened() -> Tensor {
        switch self {
        case let .float(t): return t
        case let .half(h): return h.widened()
        case let .meta(s): preconditionFailure("a meta weight \(s) has no values")
        }
    }
}

/// What a weight is, for a loader deciding its storage: matrices of `Linear` and `Embedding` may
/// stay 16-bit; vectors (norm weights, biases) are always Float32.
public enum WeightRole: Sendable, Equatable {
    case matrix
    case vector
}

/// Supplies the weights of modules as they are built, by full checkpoint key ("model.layers.0.
/// self_attn.q_proj.weight"): from a checkpoint, freshly initialised, or `.meta` shapes.
public struct WeightLoader {
    /// Prepended to every key asked for (empty, or ending in ".").
    public let prefix: String
    private let provide: (_ key: String, _ shape: [Int], _ role: WeightRole) throws -> Weight

    /// A loader calling `provide` with full keys.
    public init(prefix: String = "", _ provide: @escaping (_ key: String, _ shape: [Int], _ role: WeightRole) throws -> Weight) {
        self.prefix = prefix
        self.provide = provide
    }

    /// The weight `prefix + key` of `shape`.
    public func callAsFunction(_ key: String, shape: [Int], role: WeightRole) throws -> Weight {
        let w = try provide(prefix + key, shape, role)
        precondition(w.shape == shape, "\(prefix + key): loader gave \(w.shape), the module needs \(shape)")
        return w
    }

    /// The loader for a child module: keys under `prefix + component + "."`.
    public func scoped(_ component: String) -> WeightLoader {
        WeightLoader(prefix: prefix + component + ".", provide)
    }

    /// Shapes only: every weight is `.meta` (for listing a model's keys without memory).
    public static var meta: WeightLoader { WeightLoader { _, shape, _ in .meta(shape) } }
}

/// A layer or model that holds weights under checkpoint keys, and child modules.
public protocol Module {
    /// The module's own weights by key relative to it ("weight", "bias"), in checkpoint order.
    var ownWeights: [(String, Weight)] { get }
    /// Child modules by key relative to this one ("self_attn", "layers.3"), in order. A child
    /// under the empty key adds no component to its weights' keys.
    var children: [(String, any Module)] { get }
}

extension Module {
    public var ownWeights: [(String, Weight)] { [] }
    public var children: [(String, any Module)] { [] }

    /// Every weight under its full key (`prefix` + the path of keys joined by "."), depth first,
    /// own weights before children's.
    public func namedWeights(prefix: String = "") -> [(String, Weight)] {
        var out = ownWeights.map { (prefix + $0.0, $0.1) }
        for (key, child) in children { out += child.namedWeights(prefix: key.isEmpty ? prefix : prefix + key + ".") }
        return out
    }

    /// The Float32 tensors among `namedWeights` (16-bit and meta weights are left out).
    public func namedParameters(prefix: String = "") -> [(String, Tensor)] {
        namedWeights(prefix: prefix).compactMap { name, w in w.floatTensor.map { (name, $0) } }
    }

    /// Full key → shape of every weight (what a checkpoint of this module must hold).
    public func weightShapes(prefix: String = "") -> [String: [Int]] {
        Dictionary(namedWeights(prefix: prefix).map { ($0.0, $0.1.shape) }, uniquingKeysWith: { a, _ in a })
    }
}

/// A trainable change to a frozen linear layer's output (LoRA implements it in `TMFLoRA`).
public protocol LinearAdapter: AnyObject {
    /// The term added to the base output: x [..., in] → [..., out].
    func delta(_ x: Tensor, training: Bool) -> Tensor
    /// Parameters the adapter trains.
    var trainableParameters: [Tensor] { get }
    /// The term as a low-rank product, when it is one: `delta(x) = scale · down · upᵀ` with
    /// down [..., r] (a function of x) and up [out, r]. The layer then adds it inside its own
    /// product (`Tensor.linear(_:weight:down:up:scale:)`). Default nil: `delta` is used.
    func lowRank(_ x: Tensor, training: Bool) -> (down: Tensor, up: Tensor, scale: Float)?
}

extension LinearAdapter {
    public func lowRank(_ x: Tensor, training: Bool) -> (down: Tensor, up: Tensor, scale: Float)? { nil }
}

/// nn.Linear: y = x · Wᵀ (+ bias), W (out, in) stored in Float32 or 16 bits, with an optional
/// adapter (LoRA) whose output is added.
///
/// A 16-bit W is frozen: its products run on `HalfMatMul` (see there for the rounding), and the
/// backward pass sends gradients to x only. A Float32 W gets a gradient when it requires one.
public final class Linear: Module, @unchecked Sendable {
    /// (out, in)
    public let weight: Weight
    /// (out), Float32, or nil.
    public let bias: Weight?
    /// An adapter whose output is added to the layer's (e.g. LoRA), or nil.
    public var adapter: (any LinearAdapter)?

    /// W's second dimension.
    public var inFeatures: Int { weight.shape[1] }
    /// W's first dimension.
    public var outFeatures: Int { weight.shape[0] }

    /// A layer over existing weights: `weight` (out, in), `bias` (out) Float32 or meta.
    public init(weight: Weight, bias: Weight? = nil) {
        precondition(weight.shape.count == 2, "a linear weight is (out, in), got \(weight.shape)")
        if let bias {
            precondition(bias.shape == [weight.shape[0]], "bias \(bias.shape) for weight \(weight.shape)")
            if case .half = bias { preconditionFailure("biases are Float32") }
        }
        self.weight = weight
        self.bias = bias
    }

    /// A layer over Float32 tensors: `weight` (out, in), `bias` (out).
    public convenience init(weight: Tensor, bias: Tensor? = nil) {
        self.init(weight: .float(weight), bias: bias.map { .float($0) })
    }

    /// Loads "weight" (out, in) and, when `bias`, "bias" (out) through `load`.
    public convenience init(inFeatures: Int, outFeatures: Int, bias: Bool = false, _ load: WeightLoader) throws {
        let w = try load("weight", shape: [outFeatures, inFeatures], role: .matrix)
        let b = bias ? try load("bias", shape: [outFeatures], role: .vector) : nil
        self.init(weight: w, bias: b)
    }

    public var ownWeights: [(String, Weight)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    /// x [..., in] → [..., out].
    public func callAsFunction(_ x: Tensor, training: Bool = false) -> Tensor {
        precondition(x.shape.last == inFeatures, "linear layer (\(outFeatures), \(inFeatures)) applied to x \(x.shape)")
        let b = bias?.tensor
        let base: Tensor
        switch weight {
        case let .half(h):
            base = Self.halfProduct(x, h, bias: b)
        case let .float(w):
            let rows = x.count / max(inFeatures, 1)
            let needsTape = GradMode.isEnabled && (x.requiresGrad || w.requiresGrad || (b?.requiresGrad ?? false))
            if rows == 1 && !needsTape {
                // One row (decoding): a matrix-vector product streams the weight once, on the
                // kernel threads (no OpenBLAS pool to wake per layer).
                let y = Tensor(uninitialized: Array(x.shape.dropLast()) + [outFeatures])
                if let b { y.pointer.update(from: b.pointer, count: outFeatures) }
                tmf_matvec_f32(w.pointer, x.pointer, y.pointer, outFeatures, inFeatures, b == nil ? 0 : 1)
                base = y
            } else if let adapter, let low = adapter.lowRank(x, training: training) {
                let y = Tensor.linear(x, weight: w, down: low.down, up: low.up, scale: low.scale)
                return b.map { y + $0 } ?? y
            } else {
                base = Tensor.linear(x, weight: w, bias: b)
            }
        case let .meta(s):
            preconditionFailure("a meta linear layer \(s) cannot run")
        }
        guard let adapter else { return base }
        return base + adapter.delta(x, training: training)
    }

    /// From this many rows of x (prefill, training), a 16-bit W whose kernel path widens it
    /// anyway is widened a block of rows at a time and multiplied by sgemm, which is faster than
    /// the widening kernels there; fewer rows (decoding) stream W through `HalfMatMul`. With
    /// AVX512-BF16 dot products (or their emulation, forced for tests), `HalfMatMul` runs every
    /// product.
    public static let sgemmRows = 16

    /// Rows of W widened per block: about 4 MB of Float32, so a block stays in L2/L3 while
    /// sgemm walks it.
    static func widenedBlockRows(_ inFeatures: Int) -> Int { max(16, (1 << 20) / max(inFeatures, 1)) }

    /// Whether `rows` rows of x take the widen-then-sgemm route with this W.
    static func widensForSgemm(rows: Int, _ h: HalfTensor) -> Bool {
        let path = HalfMatMul.path(for: h.precision)
        return rows >= sgemmRows && path != .avx512BF16 && path != .avx512BF16Emulated
    }

    /// y [rows, out] = x [rows, in] · Wᵀ, or dx [rows, in] += dy [rows, out] · W when `gradient`,
    /// over blocks of W's rows widened to Float32 (exact) and sgemm.
    static func widenedProduct(_ a: UnsafePointer<Float>, rows: Int, _ h: HalfTensor, gradient: Bool,
                               into c: UnsafeMutablePointer<Float>) {
        let out = h.shape[0], inF = h.shape[1], block = widenedBlockRows(inF)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: min(block, out) * inF)
        defer { scratch.deallocate() }
        for o0 in stride(from: 0, to: out, by: block) {
            let n = min(block, out - o0)
            HalfMatMul.widen(h.bits, h.precision, rows: o0..<(o0 + n), inFeatures: inF, into: scratch)
            if gradient {  // dx += dy[:, o0..<o0+n] · W[o0..<o0+n, :]
                BLAS.sgemm(transA: false, transB: false, m: rows, n: inF, k: n, a: a + o0, lda: out, b: scratch, ldb: inF,
                           beta: 1, c: c, ldc: inF)
            } else {  // y[:, o0..<o0+n] = x · W[o0..<o0+n, :]ᵀ
                BLAS.sgemm(transA: false, transB: true, m: rows, n: n, k: inF, a: a, lda: inF, b: scratch, ldb: inF,
                           beta: 0, c: c + o0, ldc: out)
            }
        }
    }

    /// x · Wᵀ (+ bias) with a 16-bit W; the tape sends gradients to x (and the bias).
    static func halfProduct(_ x: Tensor, _ h: HalfTensor, bias: Tensor?) -> Tensor {
        let out = h.shape[0], inF = h.shape[1]
        let rows = x.count / max(inF, 1)
        let y: Tensor
        if widensForSgemm(rows: rows, h) {
            y = Tensor(uninitialized: Array(x.shape.dropLast()) + [out])
            widenedProduct(x.pointer, rows: rows, h, gradient: false, into: y.pointer)
        } else {
            y = HalfMatMul.forward(x, weight: h.bits, h.precision, outFeatures: out)
        }
        guard Tensor.needsGrad(x) else { return bias.map { y + $0 } ?? y }
        let recorded = y.record([x]) { g in
            let rows = g.count / max(out, 1)
            if widensForSgemm(rows: rows, h) {
                widenedProduct(g.pointer, rows: rows, h, gradient: true, into: x.gradBuffer().pointer)
                return
            }
            HalfMatMul.inputGradient(UnsafeBufferPointer(g.storage.buffer), weight: h.bits, h.precision, rows: rows,
                                     inFeatures: inF, outFeatures: out, into: x.gradBuffer().storage.buffer,
                                     accumulate: true)
        }
        return bias.map { recorded + $0 } ?? recorded
    }
}

/// nn.Embedding: rows of a (vocab, width) table, Float32 or 16-bit. A tied output layer is a
/// `Linear` over the same `weight`.
public final class Embedding: Module, @unchecked Sendable {
    /// (vocab, width)
    public let weight: Weight

    public init(weight: Weight) {
        precondition(weight.shape.count == 2, "an embedding table is (vocab, width), got \(weight.shape)")
        self.weight = weight
    }

    /// Loads "weight" (count, width) through `load`.
    public convenience init(count: Int, width: Int, _ load: WeightLoader) throws {
        self.init(weight: try load("weight", shape: [count, width], role: .matrix))
    }

    public var ownWeights: [(String, Weight)] { [("weight", weight)] }

    /// Rows `ids` → (ids.count, width) Float32. A Float32 table that requires grad gets a
    /// scatter-add gradient; a 16-bit table is widened exactly, with no gradient.
    public func rows(_ ids: [Int]) -> Tensor {
        switch weight {
        case let .float(t): return t.gatherRows(ids)
        case let .half(h): return h.widenedRows(ids)
        case let .meta(s): preconditionFailure("a meta embedding \(s) cannot run")
        }
    }
}

/// RMSNorm over the last axis with a Float32 weight (dim).
public final class RMSNorm: Module, @unchecked Sendable {
    /// (dim)
    public let weight: Weight
    public let eps: Float

    public init(weight: Weight, eps: Float) {
        self.weight = weight
        self.eps = eps
    }

    /// Loads "weight" (dim) through `load`.
    public convenience init(dim: Int, eps: Float, _ load: WeightLoader) throws {
        self.init(weight: try load("weight", shape: [dim], role: .vector), eps: eps)
    }

    public var ownWeights: [(String, Weight)] { [("weight", weight)] }

    /// x [..., dim] → [..., dim].
    public func callAsFunction(_ x: Tensor) -> Tensor { Tensor.rmsNorm(x, weight: weight.tensor, eps: eps) }
}

/// nn.LayerNorm over the last axis: Float32 weight and bias (dim).
public final class LayerNorm: Module, @unchecked Sendable {
    /// (dim)
    public let weight: Weight
    /// (dim)
    public let bias: Weight
    public let eps: Float

    public init(weight: Weight, bias: Weight, eps: Float) {
        self.weight = weight
        self.bias = bias
        self.eps = eps
    }

    /// A LayerNorm over Float32 tensors (dim).
    public convenience init(weight: Tensor, bias: Tensor, eps: Float) {
        self.init(weight: .float(weight), bias: .float(bias), eps: eps)
    }

    /// Loads "weight" and "bias" (dim) through `load`.
    public convenience init(dim: Int, eps: Float, _ load: WeightLoader) throws {
        self.init(weight: try load("weight", shape: [dim], role: .vector), bias: try load("bias", shape: [dim], role: .vector),
                  eps: eps)
    }

    public var ownWeights: [(String, Weight)] { [("weight", weight), ("bias", bias)] }

    /// x [..., dim] → [..., dim].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        Tensor.layerNorm(x, weight: weight.tensor, bias: bias.tensor, eps: eps)
    }
}
