import Foundation
import XCTest
import TMFTensor
import TMFTrainer

final class CurriculumTests: XCTestCase {
    /// Frequencies over many seeded draws match Eq. 12-13 within 4 standard errors.
    func testDrawFrequenciesMatchEquations12And13() {
        let c = Curriculum(totalSteps: 100, threshold: 40, modalities: .full)
        var rng = SeededRNG(seed: 11)
        let draws = 20_000
        for tau in [1, 20, 40, 41, 70, 100] {
            var counts: [TaskLevel: Int] = [:]
            for _ in 0..<draws { counts[c.draw(at: tau, rng: &rng), default: 0] += 1 }
            let p: Double, harder: TaskLevel, easier: TaskLevel
            if tau <= 40 { p = Double(tau) / 100; harder = .medium; easier = .easy }
            else { p = Double(tau - 40) / 60; harder = .hard; easier = .medium }
            let observed = Double(counts[harder, default: 0]) / Double(draws)
            let se = max((p * (1 - p) / Double(draws)).squareRoot(), 1e-4)
            XCTAssertEqual(observed, p, accuracy: 4 * se, "τ = \(tau)")
            XCTAssertEqual(counts[harder, default: 0] + counts[easier, default: 0], draws, "only the two levels of the stage at τ = \(tau)")
        }
    }

    func testAblationsCapTheLevel() {
        var rng = SeededRNG(seed: 1)
        let text = Curriculum(totalSteps: 10, threshold: 5, modalities: .text)
        let behavior = Curriculum(totalSteps: 10, threshold: 5, modalities: .behavior)
        for tau in 1...10 {
            XCTAssertEqual(text.draw(at: tau, rng: &rng), .easy)
            XCTAssertNotEqual(behavior.draw(at: tau, rng: &rng), .hard)
        }
        XCTAssertEqual(behavior.draw(at: 10, rng: &rng), .medium)  // p_m(T) = 1
        XCTAssertEqual(Curriculum(totalSteps: 10, threshold: 5, modalities: .item).draw(at: 10, rng: &rng), .hard)
    }

    func testTrainableGroupsPerLevel() {
        XCTAssertEqual(ParameterGroup.trainable(at: .easy), [.lora])
        XCTAssertEqual(ParameterGroup.trainable(at: .medium), [.lora, .behaviorAdaptor])
        XCTAssertEqual(ParameterGroup.trainable(at: .hard), Set(ParameterGroup.allCases))
    }
}
