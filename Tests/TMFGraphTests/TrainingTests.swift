import Foundation
import XCTest
@testable import TMFGraph
import TMFTensor
import TMFTestSupport
import TMFCheckpoint

/// End-to-end: learning on a Markov chain, checkpoints, configuration, control.
final class TrainingTests: XCTestCase {
    func testLearnsMarkovChainBeyondPopularityAndRandom() throws {
        // Sequences longer than T − 1 = 7 events, so training covers the masked slot at every
        // position that the test histories use (MBHT's sequence-axis projections are positional).
        let data = MBHTSyntheticData.generate(users: 300, items: 30, eventsPerUser: 8...16, markov: true, seed: 7)
        let model = try MBHTModel(configuration: smallConfiguration(items: 30), seed: 1)
        var p = MBHTTrainingParameters()
        p.epochs = 8
        p.batchSize = 32
        p.learningRate = 5e-3
        p.patience = 4
        var steps = 0
        let report = try model.train(data.training, validation: data.validation, parameters: p) { event in
            if case .step = event { steps += 1 }
            return .proceed
        }
        let hit = try model.hitRate(data.test)
        let popular = data.popularityHitRate(data.test)
        let random = data.randomHitRate(data.test, seed: 3)
        print(String(format: "Markov synthetic (300 users, 30 items): MBHT HitRate@1 %.3f (best valid %.3f at epoch %d of %d), popularity %.3f, random %.3f, %.1f s training",
                     hit, report.bestHitRate ?? 0, report.bestEpoch, report.epochs, popular, random, report.seconds))
        XCTAssertGreaterThan(steps, 0)
        XCTAssertEqual(report.epochLosses.count, report.epochs)
        XCTAssertLessThan(report.epochLosses.last!, report.epochLosses.first!)
        XCTAssertGreaterThan(hit, 0.5)
        XCTAssertGreaterThan(hit, popular + 0.25)
        XCTAssertGreaterThan(hit, random + 0.25)
    }

    func testTrainingIsDeterministic() throws {
        let data = MBHTSyntheticData.generate(users: 40, items: 20, markov: true, seed: 1)
        var p = MBHTTrainingParameters()
        p.epochs = 1
        p.batchSize = 16
        var results: [[Float]] = []
        for _ in 0..<2 {
            let model = try MBHTModel(configuration: smallConfiguration(items: 20), seed: 5)
            let r = try model.train(data.training, parameters: p)
            results.append(r.epochLosses + (try model.score(history: data.test[0].history, candidates: data.test[0].candidates)))
        }
        XCTAssertEqual(results[0], results[1])
    }

    /// The checkpoint keys, read off the modules, are the reference's module names, in order.
    func testCheckpointKeysAreTheReferencesModuleNames() throws {
        func linear(_ k: String) -> [String] { [k + ".weight", k + ".bias"] }
        func layer(_ i: Int, multiScale: Bool) -> [String] {
            let a = "trm_encoder.layer.\(i).multi_head_attention"
            let plain = ["query", "key", "value", "dense", "LayerNorm"]
            let attention = multiScale
                ? linear(a + ".out_fc") + ["E", "F", "W_V", "W_K", "W_Q", "dense", "LayerNorm"].flatMap { linear(a + ".attention1." + $0) }
                    + plain.flatMap { linear(a + ".attention2." + $0) }
                : plain.flatMap { linear(a + "." + $0) }
            return attention + ["dense_1", "dense_2", "LayerNorm"].flatMap { linear("trm_encoder.layer.\(i).feed_forward." + $0) }
        }
        for (multiScale, hypergraph) in [(true, true), (true, false), (false, true)] {
            var c = tinyConfiguration()
            c.multiScale = multiScale
            c.hypergraph = hypergraph
            var expected = ["item_embedding.weight", "position_embedding.weight", "type_embedding.weight"] + linear("LayerNorm")
                + (0..<c.layers).flatMap { layer($0, multiScale: multiScale) }
            if hypergraph {
                expected += linear("hgnn_layer.hgc1") + linear("hgnn_layer.hgc2")
                    + ["gating_weight", "gating_bias", "metric_w1", "metric_w2", "attn_weights", "attn"]
            }
            XCTAssertEqual(try MBHTModel(configuration: c, seed: 1).namedParameters.map(\.name), expected, "\(multiScale) \(hypergraph)")
        }
    }

    func testSaveLoadRoundTripAndFingerprint() throws {
        let data = MBHTSyntheticData.generate(users: 30, items: 20, markov: true, seed: 2)
        let config = smallConfiguration(items: 20)
        let model = try MBHTModel(configuration: config, seed: 3)
        var p = MBHTTrainingParameters()
        p.epochs = 1
        try model.train(data.training, parameters: p)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mbht-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(MBHTCheckpoint.fileName)
        try model.save(to: url, dataFingerprint: "data-1")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [MBHTCheckpoint.fileName])

        let loaded = try MBHTModel.load(from: url)
        XCTAssertEqual(loaded.configuration, config)
        let h = data.test.map(\.history), c = data.test.map(\.candidates)
        XCTAssertEqual(try loaded.scores(histories: h, candidates: c), try model.scores(histories: h, candidates: c))

        XCTAssertEqual(MBHTCheckpoint.storedFingerprint(at: url), config.fingerprint(extra: "data-1"))
        XCTAssertNotEqual(config.fingerprint(extra: "data-1"), config.fingerprint(extra: "data-2"))
        var other = config
        other.hyperLength = 5
        XCTAssertNotEqual(other.fingerprint(extra: "data-1"), config.fingerprint(extra: "data-1"))

        let (items, behaviors) = try MBHTCheckpoint.loadEmbeddings(from: url)
        XCTAssertEqual(items.shape, [20, 16])
        XCTAssertEqual(behaviors.shape, [3, 16])
        XCTAssertEqual(items.scalars, model.itemEmbeddings().scalars)
        XCTAssertEqual(behaviors.scalars, Array(model.typeEmbedding.scalars[16...]))
    }

    func testLoadRejectsOtherFiles() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("not-mbht-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensorsWriter.write(["x": Tensor([1], shape: [1])], to: url)
        XCTAssertThrowsError(try MBHTModel.load(from: url)) { error in
            guard case GraphError.invalidCheckpoint = error else { return XCTFail("\(error)") }
        }
        XCTAssertNil(MBHTCheckpoint.storedFingerprint(at: url))
    }

    func testConfigurationDecodesReferenceKeysAndRejectsBadValues() throws {
        let json = """
        {"n_items": 10, "n_behaviors": 4, "target_behavior": 3, "MAX_ITEM_LIST_LENGTH": 40,
         "hidden_size": 64, "n_layers": 2, "n_heads": 2, "inner_size": 256, "hidden_dropout_prob": 0.5,
         "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "mask_ratio": 0.2,
         "hyper_len": 6, "scales": [5, 8, 40], "enable_hg": 1, "enable_ms": 1}
        """
        let c = try JSONDecoder().decode(MBHTConfiguration.self, from: Data(json.utf8))
        XCTAssertEqual(c.numBehaviors, 4)
        XCTAssertEqual(c.maxSequenceLength, 40)
        XCTAssertTrue(c.hypergraph && c.multiScale)
        let roundTrip = try JSONDecoder().decode(MBHTConfiguration.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(roundTrip, c)
        let bad = json.replacingOccurrences(of: "\"MAX_ITEM_LIST_LENGTH\": 40", with: "\"MAX_ITEM_LIST_LENGTH\": 50")
        XCTAssertThrowsError(try JSONDecoder().decode(MBHTConfiguration.self, from: Data(bad.utf8)))
        var heads = c
        heads.heads = 3
        XCTAssertThrowsError(try heads.validate())
        // Reference defaults.
        let d = MBHTConfiguration(numItems: 5, numBehaviors: 2, targetBehavior: 1)
        XCTAssertEqual([d.hiddenSize, d.layers, d.heads, d.innerSize, d.hyperLength, d.maxSequenceLength], [64, 2, 2, 256, 6, 200])
        XCTAssertEqual(d.scales, [5, 8, 40])
        XCTAssertEqual([d.hiddenDropout, d.attentionDropout, d.maskRatio], [0.5, 0.5, 0.2])
    }

    func testAnyNumberOfBehaviorsAndPlainVariants() throws {
        for (hg, ms) in [(true, true), (false, true), (true, false), (false, false)] {
            var c = tinyConfiguration(items: 9, behaviors: 5)
            c.hypergraph = hg
            c.multiScale = ms
            let model = try MBHTModel(configuration: c, seed: 1)
            let seqs = [(0..<7).map { GraphEvent(item: $0, behavior: ($0 * 3) % 5) },
                        [GraphEvent(item: 8, behavior: 0), GraphEvent(item: 2, behavior: 4)]]
            var p = MBHTTrainingParameters()
            p.epochs = 2
            let r = try model.train(MBHTTrainingData(sequences: seqs), parameters: p)
            XCTAssertTrue(r.epochLosses.allSatisfy(\.isFinite))
            let s = try model.scores(histories: [seqs[0], []], candidates: [[1, 2], [3]])
            XCTAssertTrue(s.joined().allSatisfy(\.isFinite))
            XCTAssertEqual(model.behaviorEmbeddings().shape, [5, 4])
            XCTAssertEqual(try model.scoresOverAllItems(histories: [seqs[0]]).shape, [1, 9])
        }
    }

    func testStopCallbackAndCancellation() async throws {
        let data = MBHTSyntheticData.generate(users: 40, items: 20, markov: true, seed: 1)
        let model = try MBHTModel(configuration: smallConfiguration(items: 20), seed: 5)
        var p = MBHTTrainingParameters()
        p.epochs = 5
        p.batchSize = 8
        let r = try model.train(data.training, parameters: p) { event in
            if case .step(_, let step, _, _) = event, step == 2 { return .stop }
            return .proceed
        }
        XCTAssertTrue(r.stoppedByCallback)
        XCTAssertEqual(r.epochs, 1)

        let task = Task { () throws -> MBHTTrainingReport in
            withUnsafeCurrentTask { $0?.cancel() }
            return try model.train(data.training, parameters: p)
        }
        do {
            _ = try await task.value
            XCTFail("training should have been cancelled")
        } catch GraphError.cancelled {}
    }

    func testEarlyStoppingReportsAndRestoresBest() throws {
        let data = MBHTSyntheticData.generate(users: 40, items: 20, markov: true, seed: 1)
        let model = try MBHTModel(configuration: smallConfiguration(items: 20), seed: 5)
        var p = MBHTTrainingParameters()
        p.epochs = 10
        p.batchSize = 16
        p.learningRate = 0  // validation never improves after the first epoch
        p.patience = 2
        var events: [String] = []
        let r = try model.train(data.training, validation: data.validation, parameters: p) { event in
            switch event {
            case .step: break
            case .epochFinished(let epoch, let loss, let hit, _):
                XCTAssertTrue(loss.isFinite)
                XCTAssertNotNil(hit)
                events.append("epoch \(epoch)")
            case .stoppedEarly(let epoch, let best, _): events.append("stopped \(epoch) best \(best)")
            }
            return .proceed
        }
        XCTAssertEqual(events, ["epoch 1", "epoch 2", "epoch 3", "stopped 3 best 1"])
        XCTAssertTrue(r.stoppedEarly)
        XCTAssertEqual(r.bestEpoch, 1)
        XCTAssertEqual(r.validation.count, 3)
        XCTAssertEqual(try model.hitRate(data.validation), r.bestHitRate!, accuracy: 1e-12)
    }

    func testBadInputIsReported() throws {
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 1)
        XCTAssertThrowsError(try model.score(history: [GraphEvent(item: 99, behavior: 0)], candidates: [0]))
        XCTAssertThrowsError(try model.score(history: [], candidates: [7]))
        XCTAssertThrowsError(try model.train(MBHTTrainingData(sequences: [[GraphEvent(item: 1, behavior: 0)]])))
    }

    func testTopK() throws {
        let model = try MBHTModel(configuration: tinyConfiguration(), seed: 1)
        let h = [GraphEvent(item: 1, behavior: 0)]
        let all = try model.scoresOverAllItems(histories: [h]).scalars
        let top = try model.topK(history: h, k: 3, excluding: [1])
        XCTAssertEqual(top.count, 3)
        XCTAssertFalse(top.contains { $0.item == 1 })
        let best = all.indices.filter { $0 != 1 }.max { all[$0] < all[$1] }!
        XCTAssertEqual(top[0].item, best)
        assertClose(try model.score(history: h, candidates: top.map(\.item)), top.map(\.score))
    }
}
