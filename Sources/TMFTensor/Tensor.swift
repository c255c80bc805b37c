import Foundation
import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// Contiguous, 64-byte aligned Float32 memory owned by one or more tensors (reshape shares it).
public final class TensorStorage: @unchecked Sendable {
    /// The first element.
    public let pointer: UnsafeMutablePointer<Float>
    /// Number of elements.
    public let count: Int
    private let deallocator: (@Sendable (UnsafeMutablePointer<Float>) -> Void)?

    /// Allocates `count` elements, zeroed when `zeroed`.
    public init(count: Int, zeroed: Bool) {
        Allocator.configureOnce
        var raw: UnsafeMutableRawPointer?
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        if posix_memalign(&raw, 64, bytes) != 0 || raw == nil {
            fatalError("tmf: out of memory allocating \(bytes) bytes")
        }
        pointer = raw!.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        deallocator = nil
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    /// Wraps memory owned elsewhere (e.g. a memory-mapped checkpoint); `deallocator` runs once
    /// the last tensor using it is gone.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int,
                deallocator: (@Sendable (UnsafeMutablePointer<Float>) -> Void)?) {
        self.pointer = pointer
        self.count = count
        self.deallocator = deallocator
    }

    deinit {
        if let deallocator { deallocator(pointer) } else { free(pointer) }
    }

    /// The elements as a buffer.
    public var buffer: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: pointer, count: count)
    }
}

enum Allocator {
    /// Keeps large freed blocks in the heap instead of returning them to the kernel, so that
    /// a tensor allocated per op or per step reuses warm pages instead of faulting in new ones.
    static let configureOnce: Void = {
        tmf_configure_malloc()
    }()
}

/// Whether operations record a tape for reverse-mode autograd. Scoped per task/thread.
public enum GradMode {
    @TaskLocal public static var isEnabled: Bool = true
}

/// Runs `body` without recording autograd history (inference: no tape, no saved activations).
@inlinable
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

/// A node of the autograd tape: the inputs of the op that made a tensor, and the closure that
/// adds the op's input gradients given its output gradient.
final class GradNode {
    let parents: [Tensor]
    let backward: (Tensor) -> Void
    init(parents: [Tensor], backward: @escaping (Tensor) -> Void) {
        self.parents = parents
        self.backward = backward
    }
}

/// A row-major, contiguous Float32 tensor in PyTorch dimension order, with reverse-mode autograd.
///
/// Values are immutable through ops (every op returns a new tensor; `reshaped` shares storage);
/// optimisers and loaders update parameters in place through `storage`.
public final class Tensor: @unchecked Sendable, CustomStringConvertible {
    /// Dimensions, outermost first.
    public let shape: [Int]
    /// The elements (shared with views made by `reshaped`).
    public let storage: TensorStorage
    /// Whether gradients flow to this tensor. Leaves with `requiresGrad` collect `grad`.
    public var requiresGrad: Bool
    /// Accumulated gradient, same shape; `nil` until a backward pass reaches this tensor.
    public var grad: Tensor?
    /// Keep `grad` on a non-leaf tensor after backward (like PyTorch's `retain_grad`).
    public var retainsGrad = false
    /// Optional name (parameters), used in messages.
    public var name: String?
    var node: GradNode?

    /// Number of elements.
    public var count: Int { storage.count }
    /// Number of dimensions.
    public var rank: Int { shape.count }
    /// First element pointer.
    @inlinable public var pointer: UnsafeMutablePointer<Float> { storage.pointer }
    /// Whether this tensor was made by an op on the tape (not a leaf).
    public var isLeaf: Bool { node == nil }

    /// A tensor over existing storage. `shape`'s product must equal `storage.count`.
    public init(shape: [Int], storage: TensorStorage, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(Tensor.elementCount(shape) == storage.count,
                     "shape \(shape) does not match \(storage.count) elements")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// Zero-filled tensor of `shape`.
    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(shape: shape, storage: TensorStorage(count: Tensor.elementCount(shape), zeroed: true),
                  requiresGrad: requiresGrad)
    }

    /// Uninitialised tensor of `shape` (every element must be written before it is read).
    public convenience init(uninitialized shape: [Int]) {
        self.init(shape: shape, storage: TensorStorage(count: Tensor.elementCount(shape), zeroed: false))
    }

    /// Tensor of `shape` filled with `value`.
    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        let s = TensorStorage(count: Tensor.elementCount(shape), zeroed: false)
        s.pointer.initialize(repeating: value, count: s.count)
        self.init(shape: shape, storage: s, requiresGrad: requiresGrad)
    }

    /// Tensor of `shape` holding `values` (row-major). `values.count` must equal the shape's size.
    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == Tensor.elementCount(shape),
                     "\(values.count) values do not fill shape \(shape)")
        let s = TensorStorage(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { s.pointer.initialize(from: $0.baseAddress!, count: values.count) }
        self.init(shape: shape, storage: s, requiresGrad: requiresGrad)
    }

    /// A 0-dimensional tensor.
    public convenience init(scalar: Float, requiresGrad: Bool = false) {
        self.init([scalar], shape: [], requiresGrad: requiresGrad)
    }

    /// Product of the dimensions (1 for a scalar).
    @inlinable public static func elementCount(_ shape: [Int]) -> Int {
        shape.reduce(1, *)
    }

    /// Elements copied into an array.
    public var scalars: [Float] { Array(storage.buffer) }

    /// The single element of a one-element tensor.
    public var item: Float {
        precondition(count == 1, "item needs a one-element tensor, shape is \(shape)")
        return pointer[0]
    }

    /// A new leaf tensor with the same values, detached from the tape.
    public func detached() -> Tensor {
        Tensor(shape: shape, storage: storage)
    }

    /// A deep copy (new storage), detached from the tape.
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }

    /// Size of dimension `axis` (negative counts from the end).
    public func size(_ axis: Int) -> Int { shape[normalizedAxis(axis)] }

    func normalizedAxis(_ axis: Int) -> Int {
        let a = axis < 0 ? axis + rank : axis
        precondition(a >= 0 && a < max(rank, 1), "axis \(axis) out of range for shape \(shape)")
        return a
    }

    public var description: String {
        let preview = scalars.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(count > 8 ? ", …" : "")])"
    }

    // MARK: tape

    /// Whether an op with these inputs must record a node.
    @inlinable static func needsGrad(_ inputs: Tensor...) -> Bool {
        GradMode.isEnabled && inputs.contains { $0.requiresGrad }
    }

    /// Records `backward` as the way to send this tensor's gradient to `parents`.
    func record(_ parents: [Tensor], _ backward: @escaping (Tensor) -> Void) -> Tensor {
        if GradMode.isEnabled && parents.contains(where: { $0.requiresGrad }) {
            requiresGrad = true
            node = GradNode(parents: parents, backward: backward)
        }
        return self
    }

    /// Adds `g` (same element count) into `grad`, allocating it on first use. `owned` says the
    /// caller made `g` for this call alone, so it may become `grad` without a copy.
    public func accumulateGrad(_ g: Tensor, owned: Bool = false) {
        precondition(g.count == count, "gradient of \(g.shape) for tensor of \(shape)")
        if let existing = grad {
            let d = existing.pointer, s = g.pointer
            for i in 0..<count { d[i] += s[i] }
        } else if owned {
            grad = g.shape == shape ? g : Tensor(shape: shape, storage: g.storage)
        } else {
            let c = Tensor(uninitialized: shape)
            c.pointer.update(from: g.pointer, count: count)
            grad = c
        }
    }

    /// The gradient buffer, created zeroed if absent, for kernels that accumulate in place.
    func gradBuffer() -> Tensor {
        if let g = grad { return g }
        let g = Tensor(zeros: shape)
        grad = g
        return g
    }

    /// Whether a backward closure should produce a gradient for this input.
    var wantsGrad: Bool { requiresGrad }
}
