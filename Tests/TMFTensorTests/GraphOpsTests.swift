import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// `placed` and `l2Normalized` (Ops+Graph.swift): forward values by hand, backward against
/// closed forms and finite differences.
final class GraphOpsTests: XCTestCase {
    func testPlacedForward() {
        let x = Tensor([1, 2, 3, 4], shape: [2, 2])
        let y = x.placed(into: [2, 3], sources: [3, 0, 3], destinations: [0, 4, 5])
        XCTAssertEqual(y.shape, [2, 3])
        XCTAssertEqual(y.scalars, [4, 0, 0, 0, 1, 4])
    }

    func testPlacedBackwardAccumulatesRepeatedSources() {
        let x = Tensor([1, 2, 3, 4], shape: [4], requiresGrad: true)
        let y = x.placed(into: [3], sources: [2, 2, 0], destinations: [0, 1, 2])
        y.backward(Tensor([10, 20, 30], shape: [3]))
        XCTAssertEqual(x.grad!.scalars, [30, 0, 30, 0])
    }

    func testPlacedFiniteDifferences() {
        var rng = SeededRNG(seed: 1)
        let x = Tensor.normal([3, 4], rng: &rng)
        gradCheck([x]) { t in
            // Squared so the check sees a non-linear composition.
            t[0].placed(into: [2, 5], sources: [0, 5, 5, 11, 7], destinations: [9, 0, 3, 4, 6]).square()
        }
    }

    func testL2NormalizedForward() {
        let x = Tensor([3, 4, 0, 0, 1, 0], shape: [3, 2])
        let y = x.l2Normalized()
        assertClose(y.scalars, [0.6, 0.8, 0, 0, 1, 0])
    }

    func testL2NormalizedFiniteDifferences() {
        var rng = SeededRNG(seed: 2)
        let x = Tensor.normal([2, 3, 5], rng: &rng)
        gradCheck([x], eps: 1e-3) { t in t[0].l2Normalized() }
    }

    func testL2NormalizedZeroRowHasFiniteGradient() {
        let x = Tensor([0, 0, 0, 1, 2, 2], shape: [2, 3], requiresGrad: true)
        x.l2Normalized().sum().backward()
        XCTAssertTrue(x.grad!.scalars.allSatisfy { $0.isFinite })
        // Row 1: y = x/3, d(Σy)/dx = (1 − y·Σy)/‖x‖ with Σy = 5/3.
        let y: [Float] = [1.0 / 3, 2.0 / 3, 2.0 / 3]
        let expected: [Float] = y.map { (1 - $0 * 5 / 3) / 3 }
        assertClose(Array(x.grad!.scalars[3...]), expected, rtol: 1e-5, atol: 1e-6)
    }
}
