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
