import Foundation
import XCTest
import TMFData
import TMFTensor
import TMFTestSupport
import TMFTokenizer
import TMFTrainer

final class HybridPromptTests: XCTestCase {
    func makeEncoder() throws -> HybridPromptEncoder {
        let sp = try SentencePieceTokenizer(modelURL: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"),
                                            specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
        return try HybridPromptEncoder(tokenizer: sp)
    }

    func makePrompt(level: PromptLevel) -> Prompt {
        let builder = PromptBuilder(titles: ["red helmet", "blue bike shorts", "green bottle", "tent"],
                                    behaviors: [Behavior(name: "view", phrase: "views"), Behavior(name: "purchase", phrase: "purchases")])
        return builder.build(history: [HistoryEvent(behavior: 0, item: 0), HistoryEvent(behavior: 1, item: 2)], target: 1,
                             candidates: [3, 1, 2], answer: 1, level: level, template: 0)
    }

    /// Modality tokens sit at exactly the positions of their special ids, in order, standing
    /// for the right items and behaviors; the loss covers exactly the answer and EOS.
    func testSlotsAndLabelsAreExact() throws {
        let enc = try makeEncoder()
        for level in PromptLevel.allCases {
            let prompt = makePrompt(level: level)
            let e = try enc.encode(prompt, withAnswer: true)
            XCTAssertEqual(e.tokens.count, e.labels.count)
            XCTAssertEqual(e.tokens.first, enc.tokenizer.bosID)
            XCTAssertEqual(e.tokens.last, enc.tokenizer.eosID)
            for s in e.itemSlots { XCTAssertEqual(e.tokens[s.position], enc.itemTokenID) }
            for s in e.behaviorSlots { XCTAssertEqual(e.tokens[s.position], enc.behaviorTokenID) }
            XCTAssertEqual(e.itemSlots.count + e.behaviorSlots.count, e.tokens.filter { $0 == enc.itemTokenID || $0 == enc.behaviorTokenID }.count)
            switch level {
            case .easy: XCTAssertTrue(e.itemSlots.isEmpty && e.behaviorSlots.isEmpty)
            case .medium:
                XCTAssertTrue(e.itemSlots.isEmpty)
                XCTAssertEqual(e.behaviorSlots.map(\.behavior), [0, 1, 1])  // history ×2 + the question
            case .hard:
                XCTAssertEqual(e.itemSlots.map(\.item), [0, 2, 3, 1, 2])   // history then candidates
                XCTAssertEqual(e.behaviorSlots.map(\.behavior), [0, 1, 1])
            }
            // Labels: −100 before the last prompt token; then the answer tokens and EOS, shifted by one.
            let answerTokens = try enc.tokenizer.encode(prompt.answer, addBOS: false) + [enc.tokenizer.eosID]
            let kept = e.labels.filter { $0 != -100 }
            XCTAssertEqual(kept, answerTokens)
            XCTAssertEqual(Array(e.tokens[e.promptLength...]), answerTokens)
            XCTAssertEqual(enc.tokenizer.decode(Array(e.tokens[e.promptLength...])), "blue bike shorts")
            let promptOnly = try enc.encode(prompt, withAnswer: false)
            XCTAssertEqual(promptOnly.tokens, Array(e.tokens[..<e.promptLength]))
            XCTAssertTrue(promptOnly.labels.allSatisfy { $0 == -100 })
        }
    }

    func testTokenizerWithoutModalityTokensIsAClearError() throws {
        let sp = try SentencePieceTokenizer(modelURL: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"))
        XCTAssertThrowsError(try HybridPromptEncoder(tokenizer: sp)) { e in
            XCTAssertEqual(e as? TrainerError, .missingSpecialToken("[MT_i]"))
        }
    }
}
