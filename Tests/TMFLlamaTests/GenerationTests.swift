import Foundation
import TMFLlama
import TMFTensor
import XCTest

/// Sampling, stop tokens and the hooks of `generate`.
final class GenerationTests: XCTestCase {
    let prompts = [[5, 9, 17, 33], [40, 41]]

    func testSamplingIsSeededAndTopPNearZeroIsGreedy() throws {
        let model = try LlamaFixtures.model("tiny-tied")
        let greedy = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6))
        let s1 = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6, temperature: 1, seed: 7))
        let s2 = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6, temperature: 1, seed: 7))
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(s1.map(\.count), [6, 6])
        let nucleus = model.generate(prompts: prompts,
                                     parameters: GenerationParameters(maxTokens: 6, temperature: 1, topP: 1e-6, seed: 1))
        XCTAssertEqual(nucleus, greedy)
        let seeds = (0..<5).map { model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6, temperature: 2, seed: UInt64($0))) }
        XCTAssertGreaterThan(Set(seeds.map { "\($0)" }).count, 1)
    }

    func testStopTokensCallbackAndLogitsProcessor() throws {
        let model = try LlamaFixtures.model("tiny-tied")
        let greedy = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6))
        // A stop token ends that sequence and is not returned.
        let stop = greedy[0][2]
        let stopped = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6, stopTokens: [stop]))
        XCTAssertEqual(stopped[0], Array(greedy[0].prefix { $0 != stop }))
        // The callback stops sequence 1 after two tokens.
        let cut = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6),
                                 onToken: { s, _, generated in s == 1 && generated.count == 2 ? .stop : .continue })
        XCTAssertEqual(cut[0], greedy[0])
        XCTAssertEqual(cut[1], Array(greedy[1].prefix(2)))
        // Banning each greedy choice changes the output and never emits a banned id.
        let banned = Set(greedy.flatMap { $0 })
        let out = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 6),
                                 logitsProcessor: { _, _, logits in for id in banned { logits[id] = -.infinity } })
        XCTAssertTrue(out.flatMap { $0 }.allSatisfy { !banned.contains($0) })
        // A single prompt decodes like the same prompt in a batch.
        XCTAssertEqual(model.generate(prompts: [prompts[1]], parameters: GenerationParameters(maxTokens: 6))[0], greedy[1])
    }

    func testGenerateFromEmbeddingsEqualsTokens() throws {
        let model = try LlamaFixtures.model("tiny-untied")
        let c = try LlamaFixtures.testCase("tiny-untied")
        let fromEmbeddings = model.generate(prompt: .embeddings(model.embed(c.paddedIds)), attentionMask: c.mask,
                                            parameters: GenerationParameters(maxTokens: 8))
        XCTAssertEqual(fromEmbeddings, c.greedy)
    }
}
