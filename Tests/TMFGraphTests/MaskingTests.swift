import Foundation
import XCTest
@testable import TMFGraph
import TMFTensor
import TMFTestSupport

/// The Cloze masking never lets a predicted item into the model's input.
final class MaskingTests: XCTestCase {
    let history = (0..<6).map { GraphEvent(item: $0 % 5, behavior: $0 % 2) }

    func testTrainingBatchLayout() throws {
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 1)
        var rng = SeededRNG(seed: 2)
        var maskedHistory = 0
        for _ in 0..<50 {
            let batch = model.trainingBatch([(history[...], 6)], rng: &rng)
            // History then the masked target slot, then padding.
            XCTAssertEqual(batch.lengths, [7])
            XCTAssertEqual(batch.items[6], model.maskToken)
            XCTAssertEqual(batch.items[7], model.paddingToken)
            XCTAssertEqual(batch.lossRows.last, 6)
            XCTAssertEqual(batch.lossTargets.last, 6)
            XCTAssertFalse(batch.items.contains(6), "the target item leaked into the input")
            for (row, y) in zip(batch.lossRows, batch.lossTargets) {
                XCTAssertEqual(batch.items[row], model.maskToken)
                XCTAssertEqual(batch.types[row], 0, "a masked position must not reveal its behavior")
                if row < 6 { XCTAssertEqual(y, history[row].item); maskedHistory += 1 }
            }
            XCTAssertEqual(batch.readout, [batch.lossRows])
            // At most ⌊0.2 · 8⌋ = 1 loss position: the target.
            XCTAssertEqual(batch.lossRows.count, 1)
        }
        XCTAssertEqual(maskedHistory, 0)
    }

    func testHistoryPositionsAreMaskedAtTheMaskRatio() throws {
        var c = tinyConfiguration()
        c.maxSequenceLength = 40
        c.scales = [3, 4, 8]
        let model = try MBHTModel(configuration: c, seed: 1)
        var rng = SeededRNG(seed: 3)
        let long = (0..<39).map { GraphEvent(item: $0 % 7, behavior: 0) }
        var masked = 0, total = 0
        for _ in 0..<200 {
            let batch = model.trainingBatch([(long[...], 1)], rng: &rng)
            masked += (0..<39).filter { batch.items[$0] == model.maskToken }.count
            total += 39
            XCTAssertLessThanOrEqual(batch.lossRows.count, 8)  // ⌊0.2 · 40⌋, the last masked positions
            XCTAssertEqual(batch.lossRows.last, 39)
        }
        XCTAssertEqual(Double(masked) / Double(total), 0.2, accuracy: 0.02)
    }

    func testOutputAtMaskedSlotDoesNotDependOnTheTarget() throws {
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 4)
        var outputs: [[Float]] = []
        for target in [0, 3, 6] {
            var rng = SeededRNG(seed: 5)  // same masking draws
            let batch = model.trainingBatch([(history[...], target)], rng: &rng)
            var ctx = ForwardContext(training: false, rng: SeededRNG(seed: 6))
            outputs.append(withNoGrad { model.forward(batch, &ctx) }.scalars)
        }
        XCTAssertEqual(outputs[0], outputs[1])
        XCTAssertEqual(outputs[0], outputs[2])
    }

    func testScoresDoNotDependOnLaterEvents() throws {
        // Inference sees exactly the history: appending the ground truth after it changes
        // nothing for the query on the shorter history.
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 4)
        let a = try model.score(history: Array(history), candidates: [0, 1, 2, 3])
        let b = try model.scores(histories: [Array(history), Array(history) + [GraphEvent(item: 3, behavior: 1)]],
                                 candidates: [[0, 1, 2, 3], [0, 1, 2, 3]])
        assertClose(a, b[0], rtol: 1e-5, atol: 1e-6)
    }

    func testIndependentNextItemGivesChanceHitRate() throws {
        // Items independent and uniform; negatives drawn among all items, so the ground truth is
        // exchangeable with them: any model that cannot see the target has E[HitRate@1] = 1/11.
        let data = MBHTSyntheticData.generate(users: 600, items: 40, eventsPerUser: 5...9, markov: false,
                                              negativesAvoidHistory: false, seed: 21)
        let model = try MBHTModel(configuration: smallConfiguration(items: 40), seed: 1)
        var p = MBHTTrainingParameters()
        p.epochs = 2
        p.batchSize = 64
        p.learningRate = 1e-2
        try model.train(data.training, parameters: p)
        let hit = try model.hitRate(data.test)
        // 600 examples: σ ≈ 0.012; a leaked target would give ≫ 0.2.
        XCTAssertEqual(hit, 1.0 / 11, accuracy: 0.045, "HitRate@1 \(hit) on unpredictable data")
        print("MBHT on random sequences: HitRate@1 \(hit) (chance 0.0909)")
    }
}

/// A small configuration for fast training tests in debug builds (where TMFTensor's Swift loops
/// are unoptimised): d = 16, T = 8, scales [4, 2, 4]; otherwise the reference's structure
/// (2 layers, 2 heads, hyper_len 6, mask ratio 0.2).
func smallConfiguration(items: Int) -> MBHTConfiguration {
    var c = MBHTConfiguration(numItems: items, numBehaviors: 3, targetBehavior: 2, maxSequenceLength: 8)
    c.hiddenSize = 16
    c.innerSize = 32
    c.scales = [4, 2, 4]
    c.hiddenDropout = 0.1
    c.attentionDropout = 0.1
    c.windowBefore = 4
    c.windowAfter = 2
    return c
}
