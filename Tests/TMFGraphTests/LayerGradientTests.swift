import Foundation
import XCTest
@testable import TMFGraph
import TMFTensor
import TMFTestSupport

/// Finite-difference checks of every MBHT layer (training mode, dropout on with a fixed seed so
/// each evaluation draws the same masks).
final class LayerGradientTests: XCTestCase {
    func context() -> ForwardContext { ForwardContext(training: true, rng: SeededRNG(seed: 11)) }

    var configuration: MBHTConfiguration {
        var c = tinyConfiguration()
        c.hiddenDropout = 0.1
        c.attentionDropout = 0.1
        return c
    }

    func input(_ shape: [Int], seed: UInt64 = 1) -> Tensor {
        var rng = SeededRNG(seed: seed)
        return Tensor.normal(shape, rng: &rng)
    }

    /// [B, 1, T, 1] keep mask: sequence 0 full, sequence 1 has 5 real positions.
    var keep: Tensor {
        var v = [Float](repeating: 1, count: 16)
        for p in 5..<8 { v[8 + p] = 0 }
        return Tensor(v, shape: [2, 1, 8, 1])
    }

    func testFeedForward() {
        var rng = SeededRNG(seed: 2)
        let ff = FeedForward(configuration, rng: &rng)
        gradCheck([input([2, 8, 4]), ff.dense1.weight.tensor, ff.dense2.weight.tensor, ff.norm.weight.tensor], eps: 1e-3, rtol: 3e-2, atol: 3e-3) { t in
            var ctx = context()
            return ff(t[0], &ctx)
        }
    }

    func testMultiHeadAttentionWithKeyMask() {
        var rng = SeededRNG(seed: 3)
        let mha = MultiHeadAttention(configuration, rng: &rng)
        let mask: [[Bool]] = [Array(repeating: true, count: 8), (0..<8).map { $0 < 5 }]
        gradCheck([input([2, 8, 4]), mha.query.weight.tensor, mha.key.weight.tensor, mha.value.weight.tensor, mha.dense.bias!.tensor], eps: 1e-3, rtol: 3e-2, atol: 3e-3) { t in
            var ctx = context()
            return mha(t[0], keyMask: mask, &ctx)
        }
    }

    func testLinearAttention() {
        var rng = SeededRNG(seed: 4)
        let la = LinearAttention(configuration, rng: &rng)
        // Scale the tiny N(0, 0.02) weights up so that the check sees non-trivial attention.
        for w in [la.wq.weight, la.wk.weight, la.e.weight, la.f.weight].map(\.tensor) { w.scaleInPlace(25) }
        gradCheck([input([2, 8, 4]), la.wq.weight.tensor, la.wk.weight.tensor, la.e.weight.tensor, la.f.bias!.tensor], eps: 1e-3, rtol: 3e-2, atol: 3e-3) { t in
            var ctx = context()
            return la(t[0], keep: keep, &ctx)
        }
    }

    func testMultiScaleAttention() {
        var rng = SeededRNG(seed: 5)
        let ms = MultiScaleAttention(configuration, rng: &rng)
        gradCheck([input([2, 8, 4]), ms.outFC.weight.tensor, ms.attention2.query.weight.tensor], eps: 1e-3, rtol: 3e-2, atol: 3e-3) { t in
            var ctx = context()
            return ms(t[0], keep: keep, &ctx)
        }
    }

    func testMeanPoolingWindows() {
        let x = Tensor((0..<16).map(Float.init), shape: [1, 8, 2])
        // Windows of 4 consecutive positions: positions 0–3 and 4–7.
        XCTAssertEqual(windowMeanPool(x, window: 4).scalars, [3, 4, 11, 12])
    }

    func testHypergraphNetwork() {
        var rng = SeededRNG(seed: 6)
        let hg = HypergraphNetwork(configuration, rng: &rng)
        let g = input([2, 8, 8], seed: 7).softmax()
        gradCheck([input([2, 8, 4]), hg.conv1.weight, hg.conv2.weight, hg.conv1.bias, g], eps: 1e-3, rtol: 3e-2, atol: 3e-3) { t in
            var ctx = context()
            return hg(t[0], t[4], &ctx)
        }
    }

    func testFullModelLossGradient() throws {
        var c = configuration
        c.initializerRange = 0.5  // larger weights: gradients well above float32 noise
        let model = try MBHTModel(configuration: c, seed: 8)
        var rng = SeededRNG(seed: 9)
        let batch = model.trainingBatch([
            ([GraphEvent(item: 1, behavior: 0), GraphEvent(item: 2, behavior: 1), GraphEvent(item: 1, behavior: 0)][...], 3),
            ([GraphEvent(item: 4, behavior: 0), GraphEvent(item: 5, behavior: 1)][...], 6),
        ], rng: &rng)
        let checked = [model.itemEmbedding, model.gatingWeight, model.metricW1, model.attnWeights, model.positionEmbedding,
                       model.hypergraph.conv2.weight, model.layers[1].feedForward.dense1.weight.tensor]
        gradCheck(checked, eps: 1e-3, rtol: 5e-2, atol: 5e-3) { _ in
            var ctx = context()
            return model.loss(batch, &ctx)
        }
        // Every checked tensor receives a gradient (the hypergraph's learned similarity included).
        for t in checked {
            let norm = t.grad!.scalars.reduce(0) { $0 + $1 * $1 }
            XCTAssertGreaterThan(norm, 1e-8, t.shape.description)
        }
    }
}

extension Tensor {
    func scaleInPlace(_ s: Float) { for i in 0..<count { pointer[i] *= s } }
}
