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

/// The listwise ranking term (`--rank-loss`): its value against per-candidate forward passes,
/// and where the trainer applies it.
final class RankLossTests: XCTestCase {
    /// From the same forward pass as the answer loss, the term is the mean over prompts of
    /// −log softmax over the candidates' tokens at the first answer position; the full
    /// vocabulary's normaliser cancels, so each candidate's log-probability comes from its own
    /// one-token answer's loss. The answer loss is unchanged, and the term has gradients.
    func testRankingTermEqualsASoftmaxOverPerCandidateLogProbabilities() throws {
        for level in [TaskLevel.easy, .hard] {
            let s = try TinySetup(seed: 5)
            let r = s.recommender
            for (_, t) in r.parameters(of: .lora) { for i in 0..<t.count { t.pointer[i] = 0.03 * Float((i * 7919) % 11) - 0.15 } }
            let prompts = try s.prompts(level: level, count: 3)
            let choices = (0..<3).map { b in CandidateChoice(tokens: (0..<11).map { 40 + 13 * $0 + b }, truth: (4 * b + 1) % 11) }
            let (answer, tokens, ranking) = withNoGrad { r.losses(prompts, level: level, choices: choices) }
            let (plain, plainTokens) = withNoGrad { r.loss(prompts, level: level) }
            XCTAssertEqual(answer.item, plain.item)
            XCTAssertEqual(tokens, plainTokens)
            var expected = 0.0
            for (b, p) in prompts.enumerated() {
                let prompt = Array(p.tokens[..<p.promptLength])
                let logProbabilities = choices[b].tokens.map { c -> Double in
                    var labels = [Int](repeating: -100, count: prompt.count + 1)
                    labels[prompt.count - 1] = c
                    let one = EncodedPrompt(tokens: prompt + [c], labels: labels, promptLength: p.promptLength,
                                            itemSlots: p.itemSlots, behaviorSlots: p.behaviorSlots)
                    return -Double(withNoGrad { r.loss([one], level: level) }.loss.item)
                }
                let top = logProbabilities.max()!
                let normaliser = top + log(logProbabilities.reduce(0) { $0 + exp($1 - top) })
                expected += (normaliser - logProbabilities[choices[b].truth]) / 3
            }
            let value = try XCTUnwrap(ranking).item
            XCTAssertEqual(Double(value), expected, accuracy: 1e-4, "\(level)")
            XCTAssertGreaterThan(value, 0)

            // Only the prompts with a choice are ranked: one of three.
            let one = withNoGrad { r.losses(prompts, level: level, choices: [nil, choices[1], nil]) }
            XCTAssertNotNil(one.ranking)
            XCTAssertNil(withNoGrad { r.losses(prompts, level: level, choices: [nil, nil, nil]) }.ranking)

            // Gradients reach the level's groups through the term alone.
            let b = r.parameters(of: .lora).first { $0.1.shape[1] == 4 }!.1
            b.requiresGrad = true
            b.grad = nil
            r.losses(prompts, level: level, choices: choices).ranking!.backward()
            XCTAssertTrue(try XCTUnwrap(b.grad).scalars.contains { $0 != 0 })
        }
    }

    /// The trainer ranks only when every candidate title is one token: with the bundled shop's
    /// titles as added tokens the weight changes the step's loss (and 0 gives the paper's loss
    /// exactly); over the plain SentencePiece tokenizer (titles of several pieces) it changes
    /// nothing. A negative or infinite weight is refused.
    func testTrainerAppliesTheTermToOneTokenTitlesOnly() throws {
        let dataset = TinySetup.dataset
        let titles = dataset.items.map(\.title)
        func firstLoss(weight: Float?, titleTokens: Bool) throws -> Float {
            let tokenizer = try SentencePieceTokenizer(modelURL: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"),
                                                       addedTokens: titleTokens ? titles : [],
                                                       specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
            let config = try LlamaConfiguration(hiddenSize: 32, intermediateSize: 64, hiddenLayers: 2, attentionHeads: 4, kvHeads: 2,
                                                rmsNormEps: 1e-5, ropeTheta: 10000, vocabularySize: tokenizer.vocabularySize,
                                                tieWordEmbeddings: true, maxPositionEmbeddings: 2048)
            let llm = LlamaModel(configuration: config)
            llm.randomize(seed: 2)
            let lora = LoRAModel(base: llm, configuration: try LoRAConfiguration(rank: 4, alpha: 8, dropout: 0, targetModules: ["q_proj", "v_proj"]), seed: 2)
            var rng = SeededRNG(seed: 2)
            let n = dataset.items.count
            let features = ItemFeatures(image: Tensor.normal([n, 8], rng: &rng), text: Tensor.normal([n, 8], rng: &rng),
                                        graph: Tensor.normal([n, 4], rng: &rng), behaviors: Tensor.normal([3, 4], rng: &rng))
            let fusion = try FusionModule(configuration: FusionConfiguration(modalityWidth: 8, graphWidth: 4, llmWidth: 32), seed: 2)
            let recommender = Recommender(llm: llm, lora: lora, fusion: fusion, features: features,
                                          encoder: try HybridPromptEncoder(tokenizer: tokenizer), modalities: .full)
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-rankloss-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let trainer = try LLMTrainer(recommender: recommender, dataset: dataset, splits: SplitExamples(dataset),
                                         parameters: TrainingParameters(steps: 10, threshold: 5, batchSize: 3, historyLength: 3,
                                                                        rankLossWeight: weight),
                                         folder: folder)
            if titleTokens {
                // The true candidate's token is the answer's first label, as the answer loss has it.
                let builder = PromptBuilder(dataset: dataset)
                for ex in trainer.splits.train.prefix(5) {
                    let candidates = try dataset.candidates(for: ex, seed: 42)
                    let choice = try XCTUnwrap(try trainer.titleTokenChoice(candidates: candidates, target: ex.target))
                    let prompt = builder.prompt(for: ex, in: dataset, candidates: candidates, level: .hard, template: 2, historyLength: 3)
                    let encoded = try recommender.encoder.encode(prompt, withAnswer: true)
                    XCTAssertEqual(encoded.labels[encoded.promptLength - 1], choice.tokens[choice.truth])
                    XCTAssertEqual(encoded.labels[encoded.promptLength], recommender.encoder.tokenizer.eosID)
                }
            }
            return try trainer.trainStep().loss
        }
        let plain = try firstLoss(weight: nil, titleTokens: true)
        XCTAssertEqual(try firstLoss(weight: 0, titleTokens: true), plain)
        XCTAssertGreaterThan(try firstLoss(weight: 1, titleTokens: true), plain + 0.5)  // + about log 11 at the start
        let pieces = try firstLoss(weight: nil, titleTokens: false)
        XCTAssertEqual(try firstLoss(weight: 1, titleTokens: false), pieces)
        for bad: Float in [-1, .infinity, .nan] {
            XCTAssertThrowsError(try TrainingParameters(rankLossWeight: bad).validate())
        }
    }
}
