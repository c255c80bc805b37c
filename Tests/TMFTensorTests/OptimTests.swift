import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// Optimisers, schedule and clipping against PyTorch and the closed form.
final class OptimTests: XCTestCase {
    struct OptimCase: Decodable { let name: String; let `init`: [Float]; let grads: [[Float]]; let final: [Float] }
    struct Schedule: Decodable { let peak: Float; let warmup: Int; let total: Int; let rates: [Float] }
    struct Clip: Decodable { let grads: [[Float]]; let maxNorm: Float; let norm: Float; let clipped: [[Float]] }
    struct Fixture: Decodable { let optimizers: [OptimCase]; let schedule: Schedule; let clip: Clip }

    static let fixture: Fixture = {
        try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: fixturesURL.appendingPathComponent("ops/ops.json")))
    }()

    func testOptimizersMatchTorch() {
        XCTAssertEqual(Self.fixture.optimizers.count, 4)
        for c in Self.fixture.optimizers {
            let p = Tensor(c.`init`, shape: [c.`init`.count], requiresGrad: true)
            let opt: Optimizer
            switch c.name {
            case "adam": opt = Adam(parameters: [p], learningRate: 0.01)
            case "adam_l2": opt = Adam(parameters: [p], learningRate: 0.01, weightDecay: 0.1)
            case "adamw": opt = Adam.adamW(parameters: [p], learningRate: 0.01, weightDecay: 0.1)
            case "sgd_momentum": opt = SGD(parameters: [p], learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
            default: XCTFail("unknown optimiser case \(c.name)"); continue
            }
            for g in c.grads {
                p.grad = Tensor(g, shape: [g.count])
                opt.step()
            }
            assertClose(p.scalars, c.final, rtol: 1e-5, atol: 1e-6, c.name)
        }
    }

    /// One Adam step from zero state equals the closed form: p − lr · g / (|g| + eps) (bias
    /// correction makes m̂ = g and v̂ = g²).
    func testAdamFirstStepClosedForm() {
        let g: [Float] = [0.5, -2, 1e-3, 0]
        let p = Tensor([1, 1, 1, 1], shape: [4], requiresGrad: true)
        let adam = Adam(parameters: [p], learningRate: 0.1, eps: 1e-8)
        p.grad = Tensor(g, shape: [4])
        adam.step()
        let expected = g.map { 1 - 0.1 * $0 / (abs($0) + 1e-8) }
        assertClose(p.scalars, expected, rtol: 1e-6, atol: 1e-7)
        // Second step with the same gradient: m̂ = g, v̂ = g² again, so the same displacement.
        p.grad = Tensor(g, shape: [4])
        adam.step()
        assertClose(p.scalars, g.map { 1 - 0.2 * $0 / (abs($0) + 1e-8) }, rtol: 1e-5, atol: 1e-6)
    }

    func testParameterWithoutGradientIsNotUpdated() {
        let a = Tensor([1, 2], shape: [2], requiresGrad: true), b = Tensor([3, 4], shape: [2], requiresGrad: true)
        let adam = Adam(parameters: [a, b], learningRate: 0.1)
        a.grad = Tensor([1, 1], shape: [2])
        adam.step()
        XCTAssertEqual(b.scalars, [3, 4])
        XCTAssertEqual(adam.steps, [1, 0])
        XCTAssertNotEqual(a.scalars, [1, 2])
    }

    func testWarmupCosineMatchesTransformers() {
        let s = Self.fixture.schedule
        let schedule = LearningRateSchedule.warmupCosine(peak: s.peak, warmupSteps: s.warmup, totalSteps: s.total, minRate: 0)
        // transformers' cosine rises again past the last step; ours stays at the floor there.
        assertClose((0...s.total).map { schedule.rate(at: $0) }, Array(s.rates[0...s.total]), rtol: 1e-5, atol: 1e-7)
        XCTAssertEqual(schedule.rate(at: s.total + 1), 0)
    }

    func testClipGradNormMatchesTorch() {
        let c = Self.fixture.clip
        let ps = [Tensor(zeros: [3], requiresGrad: true), Tensor(zeros: [2, 2], requiresGrad: true)]
        for (p, g) in zip(ps, c.grads) { p.grad = Tensor(g, shape: p.shape) }
        let norm = clipGradientNorm(ps, maxNorm: c.maxNorm)
        XCTAssertEqual(norm, c.norm, accuracy: 1e-5)
        for (p, g) in zip(ps, c.clipped) { assertClose(p.grad!.scalars, g, rtol: 1e-5, atol: 1e-7) }
    }
}
