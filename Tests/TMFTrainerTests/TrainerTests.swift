import Foundation
import XCTest
@testable import TMFTrainer
import TMFData
import TMFFusion
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTestSupport
import TMFTokenizer

/// A small in-memory TMF setup on the bundled shop: a random Llama over the fixture tokenizer,
/// random item features, fresh LoRA and fusion (all seeded).
final class TinySetup {
    static let dataset: Dataset = try! Dataset.load(from: fixturesURL.appendingPathComponent("shop"))
    let recommender: Recommender
    let splits: SplitExamples

    init(modalities: Modalities = .full, seed: UInt64 = 1) throws {
        let tokenizer = try SentencePieceTokenizer(modelURL: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"),
                                                   specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
        let config = try LlamaConfiguration(hiddenSize: 32, intermediateSize: 64, hiddenLayers: 2, attentionHeads: 4, kvHeads: 2,
                                        rmsNormEps: 1e-5, ropeTheta: 10000, vocabularySize: tokenizer.baseVocabularySize,
                                        tieWordEmbeddings: true, maxPositionEmbeddings: 2048)
        let llm = LlamaModel(configuration: config)
        llm.randomize(seed: seed)
        let lora = LoRAModel(base: llm, configuration: try LoRAConfiguration(rank: 4, alpha: 8, dropout: 0, targetModules: ["q_proj", "v_proj"]), seed: seed)
        let n = Self.dataset.items.count
        var rng = SeededRNG(seed: seed)
        let features = ItemFeatures(image: Tensor.normal([n, 8], rng: &rng), text: Tensor.normal([n, 8], rng: &rng),
                                    graph: Tensor.normal([n, 4], rng: &rng), behaviors: Tensor.normal([3, 4], rng: &rng))
        let fusion = try FusionModule(configuration: FusionConfiguration(modalityWidth: 8, graphWidth: 4, llmWidth: 32), seed: seed)
        recommender = Recommender(llm: llm, lora: lora, fusion: fusion, features: features,
                                  encoder: try HybridPromptEncoder(tokenizer: tokenizer), modalities: modalities)
        splits = SplitExamples(Self.dataset)
    }

    func prompts(level: TaskLevel, count: Int, withAnswer: Bool = true) throws -> [EncodedPrompt] {
        let builder = PromptBuilder(dataset: Self.dataset)
        return try splits.train.prefix(count).map { ex in
            let p = builder.prompt(for: ex, in: Self.dataset, candidates: try Self.dataset.candidates(for: ex, seed: 42), level: level,
                                   template: 1, historyLength: 5)
            return try recommender.encoder.encode(p, withAnswer: withAnswer)
        }
    }
}

final class TrainerTests: XCTestCase {
    func tempFolder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    /// Adaptor rows land at exactly the modality-token positions (with left padding), every other
    /// row is the token's own embedding.
    func testEmbeddingInjectionPositions() throws {
        let s = try TinySetup()
        let r = s.recommender
        let prompts = try s.prompts(level: .hard, count: 3)
        let batch = PromptBatch(prompts, vocabularySize: r.llm.configuration.vocabularySize) { $0.tokens.count }
        XCTAssertGreaterThan(Set(batch.offsets).count, 1, "the batch should need left padding")
        let x = withNoGrad { r.inputEmbeddings(batch, level: .hard) }
        let d = r.llm.configuration.hiddenSize
        let tokens = withNoGrad { r.llm.embed(batch.tokens) }
        let behaviorRows = withNoGrad { r.fusion.behaviorTokens(r.features.behaviors) }
        for (b, p) in prompts.enumerated() {
            let items = p.itemSlots.map(\.item)
            let itemRows = withNoGrad {
                r.fusion.itemTokens(image: r.features.image.gatherRows(items), text: r.features.text.gatherRows(items),
                                    graph: r.features.graph.gatherRows(items), depth: .full)
            }
            var special: [Int: [Float]] = [:]
            for (k, slot) in p.itemSlots.enumerated() { special[slot.position] = Array(itemRows.scalars[(k * d)..<((k + 1) * d)]) }
            for slot in p.behaviorSlots {
                special[slot.position] = Array(behaviorRows.scalars[(slot.behavior * d)..<((slot.behavior + 1) * d)])
            }
            XCTAssertFalse(special.isEmpty)
            for t in 0..<p.tokens.count {
                let row = batch.row(b, t)
                let got = Array(x.scalars[(row * d)..<((row + 1) * d)])
                if let expected = special[t] { assertClose(got, expected, rtol: 1e-5, atol: 1e-6) }
                else { XCTAssertEqual(got, Array(tokens.scalars[(row * d)..<((row + 1) * d)])) }
            }
        }
    }

    /// Eq. 9-11: each level's loss reaches exactly its parameter groups.
    func testGradientsReachExactlyTheGroupsOfTheLevel() throws {
        let s = try TinySetup()
        let r = s.recommender
        let all = ParameterGroup.allCases.flatMap { g in r.parameters(of: g).map { (g, $0.1) } }
        for (_, t) in all { t.requiresGrad = true }
        for level in TaskLevel.allCases {
            for (_, t) in all { t.grad = nil }
            let (loss, n) = r.loss(try s.prompts(level: level, count: 2), level: level)
            XCTAssertGreaterThan(n, 0)
            loss.backward()
            let expected = ParameterGroup.trainable(at: level)
            for (g, t) in all {
                if expected.contains(g) {
                    // B starts at zero, so A's gradient is zero at first: check B and non-LoRA groups.
                    if g != .lora || t.shape[1] == 4 { XCTAssertNotNil(t.grad, "\(g) at \(level)") }
                } else {
                    XCTAssertNil(t.grad, "\(g) must get no gradient at \(level)")
                }
            }
        }
    }

    /// A step updates only the drawn level's groups: parameters of other groups stay bit-identical.
    func testStepLeavesOtherGroupsUnchanged() throws {
        let s = try TinySetup()
        let trainer = try LLMTrainer(recommender: s.recommender, dataset: TinySetup.dataset, splits: s.splits,
                                     parameters: TrainingParameters(steps: 40, threshold: 20, batchSize: 1, historyLength: 5),
                                     folder: try tempFolder())
        var seen = Set<TaskLevel>()
        _ = try trainer.trainStep()  // step 0 has learning rate 0 (warm-up starts at 0, as transformers)
        for _ in 0..<6 {
            let before = Dictionary(uniqueKeysWithValues: ParameterGroup.allCases.map { g in
                (g, s.recommender.parameters(of: g).map { $0.1.scalars }) })
            let report = try trainer.trainStep()
            seen.insert(report.level)
            let trainable = ParameterGroup.trainable(at: report.level)
            for g in ParameterGroup.allCases {
                let after = s.recommender.parameters(of: g).map { $0.1.scalars }
                if trainable.contains(g) { XCTAssertTrue(after != before[g], "\(g) should learn at \(report.level)") }
                else { XCTAssertTrue(after == before[g], "\(g) must not change at \(report.level)") }
            }
        }
        XCTAssertTrue(seen.contains(.easy))
    }

    /// Stopping, then resuming from the checkpoint in a fresh process-like setup, gives the very
    /// same losses as an uninterrupted run.
    func testResumeReproducesTheUninterruptedLosses() throws {
        let params = TrainingParameters(steps: 6, threshold: 2, batchSize: 2, evalLimit: 2, checkpointEvery: 100, historyLength: 5)
        func losses(_ trainer: LLMTrainer, stopAfter: Int? = nil) throws -> [Float] {
            var out: [Float] = []
            try trainer.run(shouldStop: { stopAfter.map { trainer.step >= $0 } ?? false }) { e in
                if case let .step(r) = e { out.append(r.loss) }
            }
            return out
        }
        let full = try losses(LLMTrainer(recommender: try TinySetup().recommender, dataset: TinySetup.dataset,
                                         splits: SplitExamples(TinySetup.dataset), parameters: params, folder: try tempFolder()))
        XCTAssertEqual(full.count, 6)
        let folder = try tempFolder()
        let first = try losses(LLMTrainer(recommender: try TinySetup().recommender, dataset: TinySetup.dataset,
                                          splits: SplitExamples(TinySetup.dataset), parameters: params, folder: folder), stopAfter: 3)
        XCTAssertEqual(first, Array(full[..<3]))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("checkpoint/state.json").path))
        let resumed = try LLMTrainer(recommender: try TinySetup().recommender, dataset: TinySetup.dataset,
                                     splits: SplitExamples(TinySetup.dataset), parameters: params, folder: folder)
        try resumed.resume()
        XCTAssertEqual(resumed.step, 3)
        XCTAssertEqual(try losses(resumed), Array(full[3...]))
    }

    func testResumeWithoutCheckpointIsAClearError() throws {
        let s = try TinySetup()
        let trainer = try LLMTrainer(recommender: s.recommender, dataset: TinySetup.dataset, splits: s.splits,
                                     parameters: TrainingParameters(steps: 2), folder: try tempFolder())
        XCTAssertThrowsError(try trainer.resume()) { XCTAssertTrue("\($0.localizedDescription)".contains("no checkpoint")) }
        XCTAssertThrowsError(try LLMTrainer(recommender: s.recommender, dataset: TinySetup.dataset, splits: s.splits,
                                            parameters: TrainingParameters(steps: 5, threshold: 5), folder: try tempFolder()))
    }

    func testConstrainedDecodingSpellsACandidate() throws {
        let s = try TinySetup()
        let r = s.recommender
        let builder = PromptBuilder(dataset: TinySetup.dataset)
        let ex = s.splits.valid[0]
        let candidates = try TinySetup.dataset.candidates(for: ex, seed: 42)
        let p = try r.encoder.encode(builder.prompt(for: ex, in: TinySetup.dataset, candidates: candidates, level: .hard, historyLength: 5),
                                     withAnswer: false)
        let titles = candidates.map { TinySetup.dataset.items[$0].title }
        let trie = TokenTrie(try titles.map { try r.encoder.tokenizer.encode($0, addBOS: false) })
        let out = r.encoder.tokenizer.decode(r.generate([p], level: .hard, constraints: [trie])[0])
        XCTAssertTrue(titles.contains(out), "constrained output \(out) is not a candidate title")
    }
}
