import Foundation
import XCTest
@testable import TMFTensor
import TMFTestSupport

final class AutogradTests: XCTestCase {
    func testGradientsAccumulateOverUsesAndCalls() {
        let x = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        let y = x * x + x  // dy/dx = 2x + 1
        y.sum().backward()
        XCTAssertEqual(x.grad!.scalars, [3, 5, 7])
        // A second backward accumulates (PyTorch semantics) until the gradient is cleared.
        (x * x + x).sum().backward()
        XCTAssertEqual(x.grad!.scalars, [6, 10, 14])
    }

    func testSameTensorTwiceAsOperand() {
        let x = Tensor([1, -2], shape: [2], requiresGrad: true)
        (x + x).sum().backward()
        XCTAssertEqual(x.grad!.scalars, [2, 2])
        x.grad = nil
        let h = x * 3
        (h + h).sum().backward()  // h's gradient must not alias between the two parents
        XCTAssertEqual(x.grad!.scalars, [6, 6])
    }

    func testNoGradRecordsNothing() {
        let w = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = withNoGrad { (w * w).sum() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertTrue(y.isLeaf)
    }

    /// The fused low-rank linear (LoRA's form) equals x·Wᵀ + (scale·down)·upᵀ built from separate
    /// ops, forward and backward, and its gradients match finite differences; a frozen weight
    /// gets none.
    func testLinearWithLowRankEqualsTheSeparateOps() {
        var rng = SeededRNG(seed: 5)
        let x = Tensor.normal([2, 3, 6], rng: &rng), w = Tensor.normal([5, 6], rng: &rng)
        let down = Tensor.normal([2, 3, 2], rng: &rng), up = Tensor.normal([5, 2], rng: &rng)
        let probe = Tensor.normal([2, 3, 5], rng: &rng)
        var grads: [[[Float]]] = []
        for fused in [true, false] {
            for t in [x, w, down, up] { t.requiresGrad = true; t.grad = nil }
            let y = fused ? Tensor.linear(x, weight: w, down: down, up: up, scale: 0.75)
                          : Tensor.linear(x, weight: w) + Tensor.linear(down.scale(0.75), weight: up)
            XCTAssertEqual(y.shape, [2, 3, 5])
            (y * probe).sum().backward()
            grads.append([y.scalars] + [x, w, down, up].map { $0.grad!.scalars })
        }
        for k in 0..<5 { assertClose(grads[0][k], grads[1][k], rtol: 1e-5, atol: 1e-5, "output/gradient \(k)") }
        gradCheck([x, w, down, up]) { Tensor.linear($0[0], weight: $0[1], down: $0[2], up: $0[3], scale: 0.75) }
        let frozen = Tensor.normal([5, 6], rng: &rng)
        x.grad = nil
        Tensor.linear(x, weight: frozen, down: down, up: up, scale: 2).sum().backward()
        XCTAssertNil(frozen.grad)
        XCTAssertNotNil(x.grad)
    }

    func testFrozenInputsGetNoGradient() {
        let frozen = Tensor([1, 2], shape: [1, 2])
        let w = Tensor([3, 4], shape: [2, 1], requiresGrad: true)
        Tensor.matmul(frozen, w).sum().backward()
        XCTAssertNil(frozen.grad)
        XCTAssertEqual(w.grad!.scalars, [1, 2])
    }

    /// The tape must not keep itself alive: once the loss is gone, every intermediate is freed.
    func testGraphIsFreedWithTheLoss() {
        weak var weakIntermediate: Tensor?
        weak var weakLoss: Tensor?
        let w = Tensor([0.5, -1, 2, 0.1], shape: [2, 2], requiresGrad: true)
        do {
            let h = Tensor.matmul(w, w).softmax().logSoftmax().silu().exp()
            let n = Tensor.layerNorm(h, weight: Tensor(repeating: 1, shape: [2]), bias: Tensor(zeros: [2]), eps: 1e-5)
            let loss = (n / (h + 1)).sum()
            weakIntermediate = h
            weakLoss = loss
            loss.backward()
        }
        XCTAssertNil(weakIntermediate)
        XCTAssertNil(weakLoss)
        XCTAssertNotNil(w.grad)
    }

    /// [rows, D] ⊕ [D] and [D] ⊕ [rows, D] (the trailing-block fast path) against index arithmetic,
    /// with gradients summed back to the block.
    func testTrailingBlockBroadcast() {
        var rng = SeededRNG(seed: 3)
        for (big, small) in [([3, 4], [4]), ([2, 3, 4], [3, 4]), ([2, 3, 4], [1, 3, 4]), ([5, 1, 4], [1, 4]), ([6, 2], [1, 1, 2])] {
            let a = Tensor.normal(big, rng: &rng), b = Tensor(Tensor.normal(small, rng: &rng).scalars.map { $0 + 3 }, shape: small)
            let m = b.count, outShape = Broadcast.shape(big, small)
            let ops: [(String, (Tensor, Tensor) -> Tensor, (Float, Float) -> Float)] = [
                ("+", { $0 + $1 }, { $0 + $1 }), ("-", { $0 - $1 }, { $0 - $1 }),
                ("*", { $0 * $1 }, { $0 * $1 }), ("/", { $0 / $1 }, { $0 / $1 }),
            ]
            for (name, op, f) in ops {
                let ab = withNoGrad { op(a, b) }, ba = withNoGrad { op(b, a) }
                XCTAssertEqual(ab.shape, outShape)
                XCTAssertEqual(ab.scalars, a.scalars.indices.map { f(a.scalars[$0], b.scalars[$0 % m]) }, "\(big) \(name) \(small)")
                XCTAssertEqual(ba.scalars, a.scalars.indices.map { f(b.scalars[$0 % m], a.scalars[$0]) }, "\(small) \(name) \(big)")
            }
            let bg = Tensor(b.scalars, shape: small, requiresGrad: true)
            (a + bg).sum().backward()
            XCTAssertEqual(bg.grad!.scalars, [Float](repeating: Float(a.count / m), count: m))
        }
    }

    func testDeepChainDoesNotOverflowTheStack() {
        let x = Tensor([1], shape: [1], requiresGrad: true)
        var y = x
        for _ in 0..<20_000 { y = y + 0 }
        y.sum().backward()
        XCTAssertEqual(x.grad!.scalars, [1])
    }

    func testDropoutStatisticsAndGradient() {
        var rng = SeededRNG(seed: 1)
        let x = Tensor(repeating: 1, shape: [10_000], requiresGrad: true)
        let y = x.dropout(0.25, rng: &rng)
        let zeros = y.scalars.filter { $0 == 0 }.count
        XCTAssertEqual(Double(zeros) / 10_000, 0.25, accuracy: 0.02)
        XCTAssertTrue(y.scalars.allSatisfy { $0 == 0 || abs($0 - 1 / 0.75) < 1e-6 })
        y.sum().backward()
        XCTAssertEqual(x.grad!.scalars, y.scalars)  // d/dx of mask·x is the mask
        var rng2 = SeededRNG(seed: 1)
        XCTAssertEqual(x.detached().dropout(0.25, rng: &rng2).scalars, y.scalars, "seeded dropout repeats")
        XCTAssertTrue(x.dropout(0.25, training: false, rng: &rng) === x)
    }

    /// A data-parallel rank's rows of a batch drop exactly the elements one process dropping the
    /// whole batch does, and every rank's generator ends where that process's does.
    func testDropoutOfABatchPartMatchesTheWholeBatch() {
        var r = SeededRNG(seed: 4)
        let whole = Tensor.normal([5, 3, 4], rng: &r)
        var rng = SeededRNG(seed: 9)
        let reference = whole.dropout(0.3, rng: &rng).scalars
        for rows in [0..<2, 2..<5, 4..<5, 0..<5] {
            var partRNG = SeededRNG(seed: 9)
            let part = whole.slice(axis: 0, rows).dropout(0.3, rng: &partRNG, part: (rows, 5))
            XCTAssertEqual(part.scalars, Array(reference[(rows.lowerBound * 12)..<(rows.upperBound * 12)]), "rows \(rows)")
            XCTAssertEqual(partRNG, rng, "rows \(rows): the generator ends as the whole batch's")
        }
        XCTAssertTrue(reference.contains(0) && reference.contains { $0 != 0 })
    }

    func testCrossEntropyAllIgnoredIsNaNLikeTorch() {
        let logits = Tensor(zeros: [2, 3], requiresGrad: true)
        XCTAssertTrue(Tensor.crossEntropy(logits, targets: [-100, -100]).item.isNaN)
    }

    func testRotaryPreservesNormAndPositionZeroIsIdentity() {
        var rng = SeededRNG(seed: 2)
        let x = Tensor.normal([1, 2, 3, 8], rng: &rng)
        let rope = RotaryEmbedding(headDim: 8, theta: 10000)
        let y = x.rotaryEmbedded(rope, positions: [0, 7, 100])
        assertClose(Array(y.scalars[0..<8]), Array(x.scalars[0..<8]), rtol: 0, atol: 0)
        for row in 0..<6 {
            let a = x.scalars[(row * 8)..<(row * 8 + 8)].reduce(0) { $0 + $1 * $1 }
            let b = y.scalars[(row * 8)..<(row * 8 + 8)].reduce(0) { $0 + $1 * $1 }
            XCTAssertEqual(a, b, accuracy: 1e-4)
        }
    }
}

final class ReplacingRowsTests: XCTestCase {
    func testValuesLandAtExactlyTheRowsAndGradientsSplit() {
        let base = Tensor((0..<12).map(Float.init), shape: [4, 3], requiresGrad: true)
        let values = Tensor([100, 101, 102, 200, 201, 202], shape: [2, 3], requiresGrad: true)
        let out = base.replacingRows([3, 1], with: values)
        XCTAssertEqual(out.scalars, [0, 1, 2, 200, 201, 202, 6, 7, 8, 100, 101, 102])
        let up = Tensor((0..<12).map { Float($0) + 1 }, shape: [4, 3])
        (out * up).sum().backward()
        XCTAssertEqual(base.grad!.scalars, [1, 2, 3, 0, 0, 0, 7, 8, 9, 0, 0, 0])
        XCTAssertEqual(values.grad!.scalars, [10, 11, 12, 4, 5, 6])
        gradCheck([Tensor((0..<12).map(Float.init), shape: [4, 3]), Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3])]) {
            $0[0].replacingRows([0, 2], with: $0[1]).square()
        }
    }
}
