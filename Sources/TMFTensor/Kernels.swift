import CKernels
import Foundation

/// A bfloat16 value as its raw bits (the top half of a Float32).
public struct BFloat16Bits: Sendable, Equatable, Hashable {
    public var bits: UInt16
    public init(bits: UInt16) { self.bits = bits }
    /// Rounds to nearest, ties to even (as PyTorch's `.to(torch.bfloat16)`); NaN stays NaN.
    public init(_ value: Float) {
        let u = value.bitPattern
        if value.isNaN { bits = UInt16(truncatingIfNeeded: (u >> 16) | 0x40); return }
        let rounding = 0x7FFF + ((u >> 16) & 1)
        bits = UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
    }
    /// The value as Float32 (exact).
    public var float: Float { Float(bitPattern: UInt32(bits) << 16) }
}

/// Entry points to the C kernels, for modules above and for parity tests.
public enum Kernels {
    /// Threads the elementwise kernels (exp, SiLU, GELU) and the row kernels (softmax, log-softmax,
    /// RMSNorm, softmax and RMSNorm backward) split large inputs over. Defaults to the number of
    /// cores; `BLAS.setThreads` sets it too. Results are bit-identical for every count.
    public static var threads: Int { Int(tmf_get_kernel_threads()) }

    /// Sets `threads` (clamped to 1…64) without touching OpenBLAS's count.
    public static func setThreads(_ n: Int) {
        tmf_set_kernel_threads(Int32(max(1, min(n, 64))))
    }

    /// Copies `count` floats from `source` to `destination` split over `threads` the way the
    /// kernels split their work: the multi-threaded memory-bandwidth reference for benchmarks.
    public static func parallelCopy(_ destination: UnsafeMutablePointer<Float>, _ source: UnsafePointer<Float>, count: Int) {
        tmf_parallel_copy(destination, source, count * MemoryLayout<Float>.stride)
    }

    /// Runs `body` over `0..<total` on the kernel threads, one contiguous part per thread (all
    /// on the caller with one thread). The parts run concurrently: `body` must write only what
    /// its own part owns.
    public static func parallelFor(_ total: Int, _ body: (Range<Int>) -> Void) {
        guard total > 0 else { return }
        withoutActuallyEscaping(body) { body in
            var part = body
            withUnsafeMutablePointer(to: &part) { context in
                tmf_parallel_for({ context, begin, end in
                    context!.assumingMemoryBound(to: ((Range<Int>) -> Void).self).pointee(Int(begin)..<Int(end))
                }, context, total)
            }
        }
    }

    /// Whether the AVX-512 paths are active on this CPU.
    public static var hasAVX512: Bool { tmf_has_avx512() != 0 }
    /// Whether the CPU has AVX-512 BF16 dot products.
    public static var hasAVX512BF16: Bool { tmf_has_avx512bf16() != 0 }

    /// eˣ elementwise, no tape.
    public static func exp(_ x: Tensor) -> Tensor {
        let out = Tensor(uninitialized: x.shape)
        tmf_vexp(x.pointer, out.pointer, x.count)
        return out
    }

    /// Σ aᵢ·bᵢ over bf16 vectors, accumulated in Float32.
    public static func dotBF16(_ a: [BFloat16Bits], _ b: [BFloat16Bits]) -> Float {
        precondition(a.count == b.count)
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                pa.withMemoryRebound(to: UInt16.self) { ua in
                    pb.withMemoryRebound(to: UInt16.self) { ub in
                        tmf_dot_bf16(ua.baseAddress, ub.baseAddress, a.count)
                    }
                }
            }
        }
    }

    /// Σ aᵢ·bᵢ of a bf16 vector with a Float32 vector.
    public static func dotBF16(_ a: [BFloat16Bits], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return a.withUnsafeBufferPointer { pa in
            pa.withMemoryRebound(to: UInt16.self) { ua in
                b.withUnsafeBufferPointer { tmf_dot_bf16_f32(ua.baseAddress, $0.baseAddress, a.count) }
            }
        }
    }

    /// Plain Swift softmax over the last axis (the fallback the C kernel is tested against).
    public static func softmaxReference(_ x: Tensor) -> Tensor {
        rowwise(x) { row, out in
            let m = row.max() ?? 0
            var s: Float = 0
            for j in row.indices { out[j] = Foundation.exp(row[j] - m); s += out[j] }
            for j in row.indices { out[j] /= s }
        }
    }

    /// Plain Swift log-softmax over the last axis.
    public static func logSoftmaxReference(_ x: Tensor) -> Tensor {
        rowwise(x) { row, out in
            let m = row.max() ?? 0
            var s: Float = 0
            for v in row { s += Foundation.exp(v - m) }
            let shift = m + Foundation.log(s)
            for j in row.indices { out[j] = row[j] - shift }
        }
    }

    static func rowwise(_ x: Tensor, _ f: (UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void) -> Tensor {
        let cols = x.shape.last ?? 1, rows = x.count / max(cols, 1)
        let out = Tensor(uninitialized: x.shape)
        for r in 0..<rows {
            f(UnsafeMutableBufferPointer(start: x.pointer + r * cols, count: cols),
              UnsafeMutableBufferPointer(start: out.pointer + r * cols, count: cols))
        }
        return out
    }
}
