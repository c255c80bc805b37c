import CKernels
import Foundation
import XCTest
@testable import TMFTensor
import TMFTestSupport

/// The C kernels split large inputs over `Kernels.threads` and stream large outputs past the
/// caches: the results must be the same bits for every thread count and every size.
final class KernelThreadsTests: XCTestCase {
    /// Runs `body` with the kernels on `n` threads, then restores the previous count.
    private func withKernelThreads<T>(_ n: Int, _ body: () -> T) -> T {
        let saved = Kernels.threads
        Kernels.setThreads(n)
        defer { Kernels.setThreads(saved) }
        return body()
    }

    private func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

    /// Normal values (std 4) with a sprinkling of inputs that take exp's slow path.
    private func input(_ shape: [Int], seed: UInt64, specials: Bool = true) -> Tensor {
        var rng = SeededRNG(seed: seed)
        let t = Tensor.normal(shape, std: 4, rng: &rng)
        if specials {
            let odd: [Float] = [-.infinity, 100, -100, 88.5, -87.5, -95, Float(bitPattern: 0x0001_0000), -13.5, 13.5, 95]  // with a subnormal
            var i = 5
            while i < t.count { t.pointer[i] = odd[(i / 997) % odd.count]; i += 997 }
        }
        return t
    }

    func testElementwiseKernelsGiveTheSameBitsOnAnyThreadCount() {
        // Sizes above the split threshold, not multiples of 8, of 64 or of the thread count.
        for n in [65_537, 131_085, 200_003] {
            let x = input([n], seed: UInt64(n))
            x.pointer[n / 2] = .nan
            func run() -> [[UInt32]] {
                withNoGrad {
                    [bits(x.exp()), bits(x.silu()), bits(x.gelu()), bits(x.gelu(approximateTanh: true)), bits(x.quickGELU())]
                }
            }
            let one = withKernelThreads(1, run)
            for threads in [2, 3] {
                let many = withKernelThreads(threads, run)
                for (k, name) in ["exp", "silu", "gelu", "gelu tanh", "quickGELU"].enumerated() {
                    XCTAssertTrue(one[k] == many[k], "\(name), n = \(n): 1 vs \(threads) threads differ")
                }
            }
        }
    }

    func testRowKernelsGiveTheSameBitsOnAnyThreadCount() {
        // 37 rows do not split evenly in 2 or 3; 4099 columns are not a multiple of 8.
        for (rows, cols) in [(37, 4099), (300, 257), (9, 16_384)] {
            let x = input([rows, cols], seed: UInt64(rows * cols), specials: false)
            for r in stride(from: 0, to: rows, by: 3) { x.pointer[r * cols + r % cols] = -.infinity }  // masked scores
            var rng = SeededRNG(seed: 11)
            let g = Tensor.normal([rows, cols], rng: &rng)
            let w = Tensor.normal([cols], mean: 1, std: 0.1, rng: &rng)
            func run() -> [[UInt32]] {
                var out: [[UInt32]] = withNoGrad {
                    [bits(x.softmax()), bits(x.logSoftmax()), bits(Tensor.rmsNorm(x, weight: w, eps: 1e-5))]
                }
                // Backward passes: softmax (rows), log-softmax, RMSNorm (dx by rows, dw by columns).
                let xs = Tensor(x.scalars, shape: x.shape, requiresGrad: true)
                xs.softmax().backward(g)
                out.append(bits(xs.grad!))
                let xl = Tensor(x.scalars, shape: x.shape, requiresGrad: true)
                xl.logSoftmax().backward(g)
                out.append(bits(xl.grad!))
                let xr = Tensor(x.scalars.map { $0.isFinite ? $0 : 0 }, shape: x.shape, requiresGrad: true)
                let wr = Tensor(w.scalars, shape: w.shape, requiresGrad: true)
                Tensor.rmsNorm(xr, weight: wr, eps: 1e-5).backward(g)
                out.append(bits(xr.grad!))
                out.append(bits(wr.grad!))
                return out
            }
            let one = withKernelThreads(1, run)
            for threads in [2, 3] {
                let many = withKernelThreads(threads, run)
                for (k, name) in ["softmax", "log-softmax", "RMSNorm", "softmax backward", "log-softmax backward",
                                  "RMSNorm dx", "RMSNorm dw"].enumerated() {
                    XCTAssertTrue(one[k] == many[k], "\(name), [\(rows), \(cols)]: 1 vs \(threads) threads differ")
                }
            }
        }
    }

    /// Outputs of 2M floats and more are written with non-temporal stores: the same bits as the
    /// same rows or elements computed in smaller pieces.
    func testLargeOutputsGiveTheSameBitsAsSmallPieces() {
        let rows = 513, cols = 4099  // 2.10M elements, rows of an odd length
        let x = input([rows, cols], seed: 5)
        let w = Tensor(repeating: 1.5, shape: [cols])
        let starts = Array(stride(from: 0, to: rows, by: 100))
        let parts = starts.map { r0 -> Tensor in
            let r1 = min(rows, r0 + 100), part = Tensor(uninitialized: [r1 - r0, cols])
            part.pointer.update(from: x.pointer + r0 * cols, count: part.count)
            return part
        }
        let ops: [(String, (Tensor) -> Tensor)] = [
            ("exp", { $0.exp() }), ("silu", { $0.silu() }), ("gelu", { $0.gelu() }),
            ("gelu tanh", { $0.gelu(approximateTanh: true) }), ("quickGELU", { $0.quickGELU() }),
            ("softmax", { $0.softmax() }), ("log-softmax", { $0.logSoftmax() }),
            ("RMSNorm", { Tensor.rmsNorm($0, weight: w, eps: 1e-5) }),
        ]
        withNoGrad {
            for (name, f) in ops {
                let whole = f(x)
                for (r0, part) in zip(starts, parts) {
                    let piece = f(part)
                    XCTAssertEqual(memcmp(whole.pointer + r0 * cols, piece.pointer, piece.count * 4), 0,
                                   "\(name): rows from \(r0) differ between the whole and a piece")
                }
            }
        }
    }

    func testThreadSettingIsClamped() {
        withKernelThreads(0) { XCTAssertEqual(Kernels.threads, 1) }
        withKernelThreads(1000) { XCTAssertEqual(Kernels.threads, 64) }
        let saved = Kernels.threads
        BLAS.setThreads(1)
        XCTAssertEqual(Kernels.threads, 1)
        BLAS.setThreads(saved)
        XCTAssertEqual(Kernels.threads, saved)
    }

    /// The decoding matrix-vector product on every path this CPU runs (the portable one
    /// everywhere): within float rounding of a Double reference, with and without accumulation,
    /// on shapes that hit the 4-row tiles, the 16-lane blocks and their tails; and the same bits
    /// for 1 and 2 threads.
    func testMatrixVectorProductOnEveryPath() {
        var rng = SeededRNG(seed: 11)
        for (out, inF) in [(1, 1), (3, 15), (4, 16), (5, 17), (67, 300), (2048, 768)] {
            let w = Tensor.normal([out, inF], std: 1, rng: &rng)
            let x = Tensor.normal([inF], std: 1, rng: &rng)
            let start = Tensor.normal([out], std: 1, rng: &rng)
            for accumulate in [false, true] {
                let reference = (0..<out).map { o -> Double in
                    (0..<inF).reduce(accumulate ? Double(start.pointer[o]) : 0) { $0 + Double(w.pointer[o * inF + $1]) * Double(x.pointer[$1]) }
                }
                let bound = (0..<out).map { o in (0..<inF).reduce(0.0) { $0 + abs(Double(w.pointer[o * inF + $1]) * Double(x.pointer[$1])) } }
                for path in [TMF_MATVEC_PORTABLE, TMF_MATVEC_AVX2, TMF_MATVEC_AVX512] where tmf_matvec_path_supported(Int32(path)) != 0 {
                    var results: [[UInt32]] = []
                    for threads in [1, 2] {
                        let y = start.copy()
                        withKernelThreads(threads) {
                            tmf_matvec_f32_path(Int32(path), w.pointer, x.pointer, y.pointer, out, inF, accumulate ? 1 : 0)
                        }
                        for o in 0..<out {
                            XCTAssertEqual(Double(y.pointer[o]), reference[o], accuracy: 1e-6 * (bound[o] + 1),
                                           "path \(path) (\(out), \(inF)) row \(o) accumulate \(accumulate)")
                        }
                        results.append(bits(y))
                    }
                    XCTAssertEqual(results[0], results[1], "path \(path) (\(out), \(inF)): 1 and 2 threads differ")
                }
            }
        }
    }
}
