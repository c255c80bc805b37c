import Foundation
import XCTest
@testable import TMFTensor
import TMFTestSupport

/// The half-precision weight kernels (`HalfMatMul`), every path this CPU can run, against Float64
/// references computed from the exactly widened weights.
///
/// Tolerance: an output is a sum of n = `in` (forward) or `out` (input gradient) products. In
/// Float32, with any summation order and whether or not products are fused, the error is at
/// most about (n + 1)·u·Σ|wₖ·xₖ| with u = 2⁻²⁴, so that is the bound checked. It is far below
/// one term's size (a dropped, doubled or misplaced term fails), and below the effect of rounding
/// the activations to bf16 (~2⁻⁹ per term), so the widening paths are shown not to round them.
/// The AVX512-BF16 paths do round the activation operand to bf16: they are compared with a
/// reference that rounds it too (the products of two bf16 values are then exact).
final class HalfKernelTests: XCTestCase {
    override func tearDown() {
        HalfMatMul.forcePath(nil)
        super.tearDown()
    }

    func testPortablePath() throws { try checkPath(.portable) }

    func testAVX2Path() throws { try checkPath(.avx2) }

    func testAVX512Path() throws { try checkPath(.avx512) }

    func testAVX512BF16Path() throws { try checkPath(.avx512BF16) }

    /// The AVX512-BF16 path's packing, pairing, lane order and tails, with `vdpbf16ps` replaced by
    /// the two exact fused multiply-adds it performs per pair (runs wherever AVX-512F + BW does).
    func testAVX512BF16EmulatedPath() throws { try checkPath(.avx512BF16Emulated) }

    /// The path chosen without forcing: the best this CPU has, portable under TMF_KERNELS=portable.
    func testAutomaticPathChoice() {
        HalfMatMul.forcePath(nil)
        if ProcessInfo.processInfo.environment["TMF_KERNELS"] == "portable" {
            XCTAssertEqual(HalfMatMul.path(for: .bf16), .portable)
            XCTAssertEqual(HalfMatMul.path(for: .f16), .portable)
            for path in HalfMatMul.Path.allCases where path != .portable {
                XCTAssertFalse(HalfMatMul.isSupported(path), "\(path) under TMF_KERNELS=portable")
                XCTAssertFalse(HalfMatMul.forcePath(path), "\(path) under TMF_KERNELS=portable")
            }
            return
        }
        let best: HalfMatMul.Path = [.avx512BF16, .avx512, .avx2].first(where: HalfMatMul.isSupported) ?? .portable
        XCTAssertEqual(HalfMatMul.path(for: .bf16), best)
        XCTAssertEqual(HalfMatMul.path(for: .f16), best == .avx512BF16 ? .avx512 : best)
        XCTAssertTrue(HalfMatMul.isSupported(.portable))
        XCTAssertEqual(HalfMatMul.isSupported(.avx512BF16), Kernels.hasAVX512BF16)
        print("HalfKernelTests: automatic path on this CPU: bf16 \(HalfMatMul.path(for: .bf16)), f16 \(HalfMatMul.path(for: .f16))")
    }

    /// An unsupported path is refused and leaves the current choice alone.
    func testForcingAnUnsupportedPathChangesNothing() throws {
        let unsupported = HalfMatMul.Path.allCases.filter { !HalfMatMul.isSupported($0) }
        guard let path = unsupported.first else { throw XCTSkip("this CPU runs every path") }
        XCTAssertTrue(HalfMatMul.forcePath(.portable))
        XCTAssertFalse(HalfMatMul.forcePath(path))
        XCTAssertEqual(HalfMatMul.path(for: .bf16), .portable)
    }

    /// The Tensor entry points fold leading dimensions into rows and match the pointer ones.
    func testTensorEntryPoints() {
        var rng = SeededRNG(seed: 21)
        let inF = 19, outF = 10
        let w = Self.weights(out: outF, in: inF, .bf16, rng: &rng)
        let x = Tensor.normal([2, 3, inF], rng: &rng)
        let y = w.withUnsafeBufferPointer { HalfMatMul.forward(x, weight: $0, .bf16, outFeatures: outF) }
        XCTAssertEqual(y.shape, [2, 3, outF])
        var flat = [Float](repeating: 0, count: 6 * outF)
        w.withUnsafeBufferPointer { wb in
            flat.withUnsafeMutableBufferPointer { yb in
                HalfMatMul.forward(UnsafeBufferPointer(x.storage.buffer), weight: wb, .bf16, rows: 6, inFeatures: inF,
                                   outFeatures: outF, into: yb)
            }
        }
        XCTAssertEqual(y.scalars, flat)
        let dy = Tensor.normal([2, 3, outF], rng: &rng)
        let dx = w.withUnsafeBufferPointer { HalfMatMul.inputGradient(dy, weight: $0, .bf16, inFeatures: inF) }
        XCTAssertEqual(dx.shape, [2, 3, inF])
        // The automatic path: on a CPU with AVX512-BF16 it rounds the activation operand to bf16.
        let rounds = HalfMatMul.path(for: .bf16).roundsActivations
        let operand = rounds ? dy.scalars.map { BFloat16Bits($0).float } : dy.scalars
        let ref = Self.reference(inputGradient: true, a: operand, w: w, .bf16, m: 6, in: inF, out: outF)
        for j in 0..<dx.count {
            XCTAssertEqual(Double(dx.scalars[j]), ref.value[j], accuracy: ref.tolerance[j], "dx[\(j)]")
        }
    }

    /// A reduction over nothing gives 0 (and `accumulate` leaves the values as they were).
    func testEmptySums() {
        for precision in HalfPrecision.allCases {
            XCTAssertEqual(Self.run(inputGradient: false, a: [], w: [], precision, m: 2, in: 0, out: 3), [0, 0, 0, 0, 0, 0])
            XCTAssertEqual(Self.run(inputGradient: true, a: [], w: [], precision, m: 2, in: 3, out: 0), [0, 0, 0, 0, 0, 0])
            XCTAssertEqual(Self.run(inputGradient: false, a: [], w: [], precision, m: 1, in: 0, out: 2, into: [1, -2]), [1, -2])
            XCTAssertEqual(Self.run(inputGradient: true, a: [], w: [], precision, m: 1, in: 2, out: 0, into: [3, 4]), [3, 4])
        }
    }

    // MARK: - One path

    private func checkPath(_ path: HalfMatMul.Path, file: StaticString = #filePath, line: UInt = #line) throws {
        guard HalfMatMul.forcePath(path) else {
            let reason: String
            if ProcessInfo.processInfo.environment["TMF_KERNELS"] == "portable" {
                reason = "TMF_KERNELS=portable forces the portable path"
            } else {
                switch path {
                case .avx512BF16: reason = "this CPU has no AVX512-BF16 (avx512_bf16)"
                case .avx512, .avx512BF16Emulated: reason = "this CPU has no AVX-512F + AVX-512BW"
                default: reason = "this CPU has no AVX2 + FMA + F16C"
                }
            }
            print("HalfKernelTests: skipping the \(path) path: \(reason)")
            throw XCTSkip("\(path) path: \(reason)")
        }
        for precision in HalfPrecision.allCases {
            // What actually runs: vdpbf16ps takes bf16 weights only.
            let runs = HalfMatMul.path(for: precision)
            let expected: HalfMatMul.Path = (precision == .f16 && (path == .avx512BF16 || path == .avx512BF16Emulated))
                ? .avx512 : path
            XCTAssertEqual(runs, expected, "\(precision)", file: file, line: line)
            let roundsActivations = runs.roundsActivations
            let tag = "\(path) \(precision)"
            checkAgainstReference(precision, roundsActivations: roundsActivations, tag: tag, file: file, line: line)
            checkAccumulate(precision, tag: tag, file: file, line: line)
            checkRowAndThreadIndependence(precision, tag: tag, file: file, line: line)
            checkExactWidening(precision, daz: runs == .avx512BF16, tag: tag, file: file, line: line)
        }
    }

    /// Awkward shapes (m ∈ {1, 3, 17, 64}; in, out not multiples of 8 or 16) against Float64,
    /// and two whose rows of x the forward takes in k blocks (in > 1024, several row tiles).
    private func checkAgainstReference(_ precision: HalfPrecision, roundsActivations: Bool, tag: String,
                                       file: StaticString, line: UInt) {
        var rng = SeededRNG(seed: 7)
        var roundingShowed = false
        var shapes: [(Int, Int, Int)] = []
        for m in [1, 3, 17, 64] {
            for inF in [1, 7, 33, 64, 257] {
                for outF in [1, 7, 33, 257] { shapes.append((m, inF, outF)) }
            }
        }
        shapes += [(9, 2100, 37), (5, 1030, 300)]
        for (m, inF, outF) in shapes {
            let w = Self.weights(out: outF, in: inF, precision, rng: &rng)
            let x = (0..<(m * inF)).map { _ in rng.nextNormal() }
            let dy = (0..<(m * outF)).map { _ in rng.nextNormal() }
            let shape = "\(tag) m \(m) in \(inF) out \(outF)"
            for backward in [false, true] {
                let a = backward ? dy : x
                let got = Self.run(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF)
                let operand = roundsActivations ? a.map { BFloat16Bits($0).float } : a
                let ref = Self.reference(inputGradient: backward, a: operand, w: w, precision, m: m, in: inF, out: outF)
                var worst = 0.0, worstAt = 0
                for j in got.indices {
                    let excess = abs(Double(got[j]) - ref.value[j]) / ref.tolerance[j]
                    if !(excess <= worst) { worst = excess; worstAt = j }
                }
                XCTAssertLessThanOrEqual(worst, 1, "\(shape) \(backward ? "input gradient" : "forward"): element "
                    + "\(worstAt) is \(got[worstAt]), Float64 reference \(ref.value[worstAt]) ± \(ref.tolerance[worstAt])",
                    file: file, line: line)
                if roundsActivations && !roundingShowed {
                    // The same outputs against unrounded activations: some must fall outside
                    // the bound, or the path did not round them as documented.
                    let plain = Self.reference(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF)
                    roundingShowed = got.indices.contains { abs(Double(got[$0]) - plain.value[$0]) > plain.tolerance[$0] }
                }
            }
        }
        if roundsActivations { XCTAssertTrue(roundingShowed, "\(tag): activations not rounded to bf16", file: file, line: line) }
    }

    /// `accumulate` adds the product, computed as without it, to the old values: bit for bit.
    private func checkAccumulate(_ precision: HalfPrecision, tag: String, file: StaticString, line: UInt) {
        var rng = SeededRNG(seed: 8)
        for (m, inF, outF) in [(17, 33, 257), (3, 257, 7), (1, 100, 40), (9, 2100, 37)] {
            let w = Self.weights(out: outF, in: inF, precision, rng: &rng)
            for backward in [false, true] {
                let a = (0..<(m * (backward ? outF : inF))).map { _ in rng.nextNormal() }
                let old = (0..<(m * (backward ? inF : outF))).map { _ in rng.nextNormal() }
                let fresh = Self.run(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF)
                let summed = Self.run(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF, into: old)
                let expected = zip(old, fresh).map { $0 + $1 }
                XCTAssertEqual(summed.map(\.bitPattern), expected.map(\.bitPattern),
                               "\(tag) m \(m) in \(inF) out \(outF) \(backward ? "input gradient" : "forward") accumulate",
                               file: file, line: line)
            }
        }
    }

    /// Bit-identical results with 1 and 2 kernel threads (for shapes that the kernels split over
    /// output columns and over rows), and a row's result does not depend on the other rows.
    private func checkRowAndThreadIndependence(_ precision: HalfPrecision, tag: String, file: StaticString, line: UInt) {
        var rng = SeededRNG(seed: 9)
        let saved = Kernels.threads
        defer { Kernels.setThreads(saved) }
        let cases: [(backward: Bool, m: Int, inF: Int, outF: Int)] = [
            (false, 1, 1000, 301), (false, 33, 257, 300), (false, 70, 300, 9),  // y columns, y columns, rows
            (false, 9, 2100, 37),  // rows: with 2 threads rows 0…3 without k blocks, 4…8 with them
            (true, 5, 700, 300), (true, 70, 20, 3000),  // dx columns (with a 28-column tail), rows
        ]
        for (backward, m, inF, outF) in cases {
            let w = Self.weights(out: outF, in: inF, precision, rng: &rng)
            let a = (0..<(m * (backward ? outF : inF))).map { _ in rng.nextNormal() }
            let name = "\(tag) m \(m) in \(inF) out \(outF) \(backward ? "input gradient" : "forward")"
            Kernels.setThreads(1)
            XCTAssertEqual(HalfMatMul.plannedParts(inputGradient: backward, rows: m, inFeatures: inF, outFeatures: outF), 1)
            let one = Self.run(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF)
            Kernels.setThreads(2)
            XCTAssertEqual(HalfMatMul.plannedParts(inputGradient: backward, rows: m, inFeatures: inF, outFeatures: outF), 2,
                           "\(name): not split, so this case tests nothing", file: file, line: line)
            let two = Self.run(inputGradient: backward, a: a, w: w, precision, m: m, in: inF, out: outF)
            XCTAssertEqual(one.map(\.bitPattern), two.map(\.bitPattern), "\(name): 1 vs 2 threads", file: file, line: line)
            // Each row alone.
            let width = backward ? outF : inF, outWidth = backward ? inF : outF
            for i in Set([0, m / 2, m - 1]) {
                let row = Self.run(inputGradient: backward, a: Array(a[(i * width)..<((i + 1) * width)]), w: w, precision,
                                   m: 1, in: inF, out: outF)
                XCTAssertEqual(row.map(\.bitPattern), one[(i * outWidth)..<((i + 1) * outWidth)].map(\.bitPattern),
                               "\(name): row \(i) alone", file: file, line: line)
            }
        }
    }

    /// Every one of the 65536 bit patterns widens exactly (NaN to a NaN; ±0 to 0): as the
    /// forward's weight column against x = [1], and as the input gradient's weight row against
    /// dy = [1]. With `daz` (real vdpbf16ps) bf16 subnormals may read as 0.
    private func checkExactWidening(_ precision: HalfPrecision, daz: Bool, tag: String, file: StaticString, line: UInt) {
        let w = (0...0xFFFF).map { UInt16($0) }
        let forward = Self.run(inputGradient: false, a: [1], w: w, precision, m: 1, in: 1, out: w.count)
        let backward = Self.run(inputGradient: true, a: [1], w: w, precision, m: 1, in: w.count, out: 1)
        for (name, got) in [("forward", forward), ("input gradient", backward)] {
            var bad: [String] = []
            for bits in w.indices {
                let want = Self.widen(UInt16(bits), precision), v = got[bits]
                let ok = want.isNaN ? v.isNaN : (v == want || (daz && want.isSubnormal && v == 0))
                if !ok { bad.append("0x\(String(bits, radix: 16)) → \(v) (want \(want))") }
            }
            XCTAssertTrue(bad.isEmpty, "\(tag) \(name) widening: \(bad.count) wrong, e.g. \(bad.prefix(4))", file: file, line: line)
        }
    }

    // MARK: - Helpers

    /// Random weights, N(0, 0.5²) rounded to the format; for f16 every 13th is a subnormal.
    static func weights(out: Int, in inF: Int, _ precision: HalfPrecision, rng: inout SeededRNG) -> [UInt16] {
        (0..<(out * inF)).map { j in
            let v = 0.5 * rng.nextNormal()
            switch precision {
            case .bf16: return BFloat16Bits(v).bits
            case .f16:
                if j % 13 == 5 { return UInt16(1 + rng.nextInt(below: 0x3FF)) | (v < 0 ? 0x8000 : 0) }
                return Float16(v).bitPattern
            }
        }
    }

    static func widen(_ bits: UInt16, _ precision: HalfPrecision) -> Float {
        precision == .bf16 ? Float(bitPattern: UInt32(bits) << 16) : Float(Float16(bitPattern: bits))
    }

    /// Runs the forward (a = x) or the input gradient (a = dy); with `into`, accumulating onto it.
    static func run(inputGradient: Bool, a: [Float], w: [UInt16], _ precision: HalfPrecision, m: Int, in inF: Int,
                    out: Int, into start: [Float]? = nil) -> [Float] {
        var result = start ?? [Float](repeating: .nan, count: m * (inputGradient ? inF : out))
        a.withUnsafeBufferPointer { ab in
            w.withUnsafeBufferPointer { wb in
                result.withUnsafeMutableBufferPointer { rb in
                    if inputGradient {
                        HalfMatMul.inputGradient(ab, weight: wb, precision, rows: m, inFeatures: inF, outFeatures: out,
                                                 into: rb, accumulate: start != nil)
                    } else {
                        HalfMatMul.forward(ab, weight: wb, precision, rows: m, inFeatures: inF, outFeatures: out,
                                           into: rb, accumulate: start != nil)
                    }
                }
            }
        }
        return result
    }

    /// Float64 sums from the widened weights, each with its bound (n + 1)·2⁻²⁴·Σ|terms| + 1e-30.
    static func reference(inputGradient: Bool, a: [Float], w: [UInt16], _ precision: HalfPrecision, m: Int, in inF: Int,
                          out: Int) -> (value: [Double], tolerance: [Double]) {
        let wd = w.map { Double(widen($0, precision)) }, ad = a.map(Double.init)
        let n = inputGradient ? out : inF, width = inputGradient ? inF : out
        var value = [Double](repeating: 0, count: m * width), bound = value
        wd.withUnsafeBufferPointer { wp in
            ad.withUnsafeBufferPointer { ap in
                for i in 0..<m {
                    for j in 0..<width {
                        var s = 0.0, b = 0.0
                        for k in 0..<n {
                            let t = inputGradient ? ap[i * out + k] * wp[k * inF + j] : ap[i * inF + k] * wp[j * inF + k]
                            s += t
                            b += abs(t)
                        }
                        value[i * width + j] = s
                        bound[i * width + j] = b
                    }
                }
            }
        }
        let factor = Double(n + 1) * 0x1p-24
        return (value, bound.map { $0 * factor + 1e-30 })
    }
}
