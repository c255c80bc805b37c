import Foundation
import XCTest
@testable import TMFTensor
import TMFTestSupport

/// The C kernels (AVX-512 where the CPU has it) against plain Swift/libm references.
final class KernelParityTests: XCTestCase {
    func testVectorisedExpMatchesLibm() {
        var xs: [Float] = (0..<4000).map { Float($0 - 2000) * 0.05 }  // −100 … 100
        xs += [-.infinity, .infinity, 0, -0.0, 88.7, -87.5, -103, -104, 1e-30]
        let t = Tensor(xs, shape: [xs.count])
        let y = Kernels.exp(t)
        for (x, v) in zip(xs, y.scalars) {
            let ref = Foundation.exp(x)
            if ref.isInfinite || ref == 0 { XCTAssertEqual(v, ref, "exp(\(x))"); continue }
            XCTAssertEqual(v, ref, accuracy: abs(ref) * 3e-7 + Float.leastNormalMagnitude, "exp(\(x))")
        }
    }

    func testSoftmaxKernelMatchesSwiftFallback() {
        var rng = SeededRNG(seed: 4)
        for cols in [1, 5, 16, 17, 100, 4096] {
            let x = Tensor.normal([3, cols], std: 4, rng: &rng)
            assertClose(withNoGrad { x.softmax() }.scalars, Kernels.softmaxReference(x).scalars, rtol: 1e-5, atol: 1e-8)  // summation order differs
            assertClose(withNoGrad { x.logSoftmax() }.scalars, Kernels.logSoftmaxReference(x).scalars, rtol: 1e-5, atol: 1e-5)
            assertClose(withNoGrad { x.gelu() }.scalars, x.scalars.map { 0.5 * $0 * (1 + erff($0 * 0.70710678118654752)) }, rtol: 1e-5, atol: 3e-7)
            assertClose(withNoGrad { x.gelu(approximateTanh: true) }.scalars,
                        x.scalars.map { 0.5 * $0 * (1 + Foundation.tanh(0.7978845608 * ($0 + 0.044715 * $0 * $0 * $0))) }, rtol: 1e-5, atol: 3e-7)
            assertClose(withNoGrad { x.quickGELU() }.scalars, x.scalars.map { $0 / (1 + Foundation.exp(-1.702 * $0)) }, rtol: 1e-5, atol: 1e-7)
            assertClose(withNoGrad { x.silu() }.scalars, x.scalars.map { $0 / (1 + Foundation.exp(-$0)) }, rtol: 2e-6, atol: 1e-7)
        }
    }

    /// exp's edge cases, at every position a kernel treats differently (four-vector blocks, single
    /// vectors, the tail): libm's expf exactly where the libm path is taken (results that are
    /// subnormal, zero or infinite, ±inf, NaN, x beyond [−86.99, 88.37]), within 2 ulp elsewhere.
    func testExpEdgeCasesMatchLibm() {
        let edges: [Float] = [-.infinity, -104, -103.972084, -103, -100, -95, -90, -87.5, -87.33654475, -87, -86.98, -50,
                              -1e-30, -0.0, 0, 1e-30, 1, 50, 88, 88.37, 88.5, 88.72, 88.7228, 88.72283935546875, 88.7229,
                              89, .infinity, .nan]
        let length = 77
        for position in [0, 5, 31, 40, 64, 72, 76] {
            for v in edges {
                var xs = [Float](repeating: 0.5, count: length)
                xs[position] = v
                let y = Kernels.exp(Tensor(xs, shape: [length])).scalars[position]
                let ref = Foundation.exp(v)
                if v.isNaN { XCTAssertTrue(y.isNaN, "exp(nan) at \(position)"); continue }
                if v < -86.99 || v > 88.37 {
                    XCTAssertEqual(y.bitPattern, ref.bitPattern, "exp(\(v)) at \(position): \(y) vs libm \(ref)")
                } else {
                    XCTAssertLessThanOrEqual(abs(y - ref), 2 * ref.ulp, "exp(\(v)) at \(position): \(y) vs libm \(ref)")
                }
            }
        }
    }

    /// A dense sweep of exp against Double: relative error below 2e-7 where the result is normal.
    func testExpDenseSweep() {
        let xs: [Float] = stride(from: -104.0, through: 89.0, by: 2e-4).map { Float($0) }
        let y = Kernels.exp(Tensor(xs, shape: [xs.count])).scalars
        var worst = 0.0
        for (x, v) in zip(xs, y) {
            let ref = Foundation.exp(Double(x))
            if ref >= Double(Float.leastNormalMagnitude) && ref <= Double(Float.greatestFiniteMagnitude) {
                worst = max(worst, abs(Double(v) - ref) / ref)
            } else {
                XCTAssertEqual(v.bitPattern, Foundation.exp(x).bitPattern, "exp(\(x))")
            }
        }
        XCTAssertLessThan(worst, 2e-7)
    }

    /// GELU (exact, tanh, quick) and SiLU against Double references over [−10, 10] in steps of
    /// 1e-4: absolute error below 2e-7·max(1, |x|) everywhere, relative error below 2e-6 (exact
    /// GELU, QuickGELU, SiLU) or 5e-6 (tanh GELU) for |x| ≤ 5. Measured on AVX2: 8e-8·max(1, |x|);
    /// relative 7e-7 for exact GELU (the float rounding of x²/2 in e^(−x²/2) dominates).
    func testGELUAndSiLUAgainstDoubleReference() {
        let xs: [Float] = (0...200_000).map { Float(-10.0 + Double($0) * 1e-4) }
        let x = Tensor(xs, shape: [xs.count])
        func gelu(_ v: Double) -> Double { 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }
        func geluTanh(_ v: Double) -> Double { 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) }
        func quick(_ v: Double) -> Double { v / (1 + exp(-1.702 * v)) }
        func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
        let outputs: [Tensor] = withNoGrad { [x.gelu(), x.gelu(approximateTanh: true), x.quickGELU(), x.silu()] }
        let references: [(Double) -> Double] = [gelu, geluTanh, quick, silu]
        let names = ["gelu", "gelu tanh", "quickGELU", "silu"], relativeTolerances = [2e-6, 5e-6, 2e-6, 2e-6]
        let cases = (0..<4).map { (names[$0], outputs[$0], references[$0], relativeTolerances[$0]) }
        for (name, out, f, rtol) in cases {
            var worstAbs = 0.0, worstRel = 0.0
            for (xv, yv) in zip(xs, out.scalars) {
                let v = Double(xv), ref = f(v), err = abs(Double(yv) - ref)
                worstAbs = max(worstAbs, err / max(1, abs(v)))
                if abs(v) <= 5 && ref != 0 { worstRel = max(worstRel, err / abs(ref)) }
            }
            XCTAssertLessThan(worstAbs, 2e-7, "\(name): absolute error / max(1, |x|)")
            XCTAssertLessThan(worstRel, rtol, "\(name): relative error for |x| ≤ 5")
        }
    }

    /// Far tails: exact GELU gives x for x > 13.1 and a negative value below 2e-38 in magnitude
    /// for x < −13.1 (−∞ included); SiLU beyond exp's fast range follows the libm formula exactly.
    func testGELUAndSiLUSpecialValues() {
        let geluInputs: [Float] = [-.infinity, .infinity, -20, 20, -13.5, 13.5, -1e30, 1e30]
        let g = withNoGrad { Tensor(geluInputs, shape: [geluInputs.count]).gelu() }.scalars
        for (v, y) in zip(geluInputs, g) {
            if v > 0 { XCTAssertEqual(y, v, "gelu(\(v))"); continue }
            // (without AVX2 the erf formula runs, and gives NaN for −∞)
            XCTAssertTrue((y <= 0 && y > -2e-38) || (v == -.infinity && y.isNaN), "gelu(\(v)) = \(y)")
        }
        let siluInputs: [Float] = [-.infinity, .infinity, -100, 100, -1e30, 1e30]
        let s = withNoGrad { Tensor(siluInputs, shape: [siluInputs.count]).silu() }.scalars
        for (v, y) in zip(siluInputs, s) {
            let ref = v / (1 + Foundation.exp(-v))
            XCTAssertTrue(y.bitPattern == ref.bitPattern || (y.isNaN && ref.isNaN), "silu(\(v)) = \(y), libm formula \(ref)")
        }
        let zeros = withNoGrad { Tensor([0, -0.0, .nan], shape: [3]).gelu() }.scalars
        XCTAssertEqual(zeros[0].bitPattern, Float(0).bitPattern)
        XCTAssertEqual(zeros[1].bitPattern, Float(-0.0).bitPattern)
        XCTAssertTrue(zeros[2].isNaN)
    }

    /// −∞ scores get exactly 0 probability; a row with nothing visible is NaN, as in PyTorch.
    func testSoftmaxOfMaskedRows() {
        for cols in [3, 8, 37, 4096] {
            var xs = (0..<(2 * cols)).map { Float($0 % 7) - 3 }
            for j in stride(from: 0, to: cols, by: 2) { xs[j] = -.infinity }
            for j in cols..<(2 * cols) { xs[j] = -.infinity }
            let y = withNoGrad { Tensor(xs, shape: [2, cols]).softmax() }.scalars
            for j in stride(from: 0, to: cols, by: 2) { XCTAssertEqual(y[j].bitPattern, Float(0).bitPattern) }
            if cols > 1 { XCTAssertEqual(Double(y[0..<cols].reduce(0, +)), 1, accuracy: 1e-5) }
            XCTAssertTrue(y[cols...].allSatisfy(\.isNaN))
        }
    }

    func testBF16DotProducts() {
        var rng = SeededRNG(seed: 5)
        for n in [1, 31, 32, 64, 100, 4096] {
            let a = (0..<n).map { _ in rng.nextNormal() }, b = (0..<n).map { _ in rng.nextNormal() }
            let abf = a.map(BFloat16Bits.init), bbf = b.map(BFloat16Bits.init)
            var ref: Double = 0, refMixed: Double = 0
            for i in 0..<n {
                ref += Double(abf[i].float) * Double(bbf[i].float)
                refMixed += Double(abf[i].float) * Double(b[i])
            }
            XCTAssertEqual(Double(Kernels.dotBF16(abf, bbf)), ref, accuracy: 1e-4 * Double(n).squareRoot() + 1e-5)
            XCTAssertEqual(Double(Kernels.dotBF16(abf, b)), refMixed, accuracy: 1e-4 * Double(n).squareRoot() + 1e-5)
        }
    }

    func testBF16RoundingIsNearestEven() {
        XCTAssertEqual(BFloat16Bits(1.0).bits, 0x3F80)
        XCTAssertEqual(BFloat16Bits(Float(bitPattern: 0x3F80_8000)).bits, 0x3F80)  // tie → even
        XCTAssertEqual(BFloat16Bits(Float(bitPattern: 0x3F81_8000)).bits, 0x3F82)  // tie → even (up)
        XCTAssertEqual(BFloat16Bits(Float(bitPattern: 0x3F80_8001)).bits, 0x3F81)
        XCTAssertTrue(BFloat16Bits(.nan).float.isNaN)
    }
}
