import Foundation
import TMFTokenizer
import XCTest

final class SentencePieceTokenizerTests: XCTestCase {
    func testIdsEqualPythonSentencePiece() throws {
        let golden = try TokenizerFixtures.load("sp_cases.json", as: TokenizerFixtures.SPCases.self)
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel)
        XCTAssertEqual(tok.baseVocabularySize, golden.vocab_size)
        XCTAssertEqual(tok.vocabularySize, golden.vocab_size)
        XCTAssertEqual(tok.bosID, golden.bos_id)
        XCTAssertEqual(tok.eosID, golden.eos_id)
        XCTAssertEqual(tok.unkID, golden.unk_id)
        XCTAssertNil(tok.padID)
        XCTAssertEqual(golden.cases.count, 25)
        for c in golden.cases {
            let ids = try tok.encode(c.text, addBOS: false)
            XCTAssertEqual(ids, c.ids, "encode \(c.text.debugDescription)")
            XCTAssertEqual(ids.map { tok.idToPiece($0) ?? "?" }, c.pieces, "pieces \(c.text.debugDescription)")
            XCTAssertEqual(try tok.encode(c.text, addBOS: true), [golden.bos_id] + c.ids)
            XCTAssertEqual(tok.decode(ids), c.decoded, "decode \(c.text.debugDescription)")
            // Plain text round-trips (identity normaliser, byte fallback: nothing is lost), except
            // that a literal `▁` in the text reads back as a space, as in sentencepiece.
            guard !c.text.contains("\u{2581}") else { continue }
            XCTAssertEqual(tok.decode(try tok.encode(c.text)), c.text, "round trip \(c.text.debugDescription)")
        }
    }

    func testPieceLookups() throws {
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["[MT_i]"])
        XCTAssertEqual(tok.idToPiece(0), "<unk>")
        XCTAssertEqual(tok.idToPiece(1), "<s>")
        XCTAssertEqual(tok.idToPiece(2), "</s>")
        XCTAssertEqual(tok.pieceToId("<s>"), 1)
        XCTAssertEqual(tok.pieceToId("<unk>"), 0)
        XCTAssertNil(tok.pieceToId("no such piece"))
        XCTAssertEqual(tok.pieceToId("<0x0A>"), 13)
        XCTAssertTrue(tok.isByte(13))
        XCTAssertEqual(tok.idToPiece(tok.baseVocabularySize), "[MT_i]")
        XCTAssertNil(tok.idToPiece(tok.vocabularySize))
        XCTAssertNil(tok.idToPiece(-1))
        for id in 0..<tok.baseVocabularySize {
            XCTAssertEqual(tok.pieceToId(tok.idToPiece(id)!), id)
        }
    }

    func testAddedSpecialTokensMatchTransformersLegacy() throws {
        let golden = try TokenizerFixtures.load("sp_special_cases.json", as: TokenizerFixtures.SpecialCases.self)
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: golden.special_tokens)
        XCTAssertEqual(tok.spacing, .legacy)
        XCTAssertEqual(tok.vocabularySize, tok.baseVocabularySize + 3)
        for (token, id) in golden.added_ids {
            XCTAssertEqual(tok.specialTokenID(token), id)
            XCTAssertEqual(tok.pieceToId(token), id)
            XCTAssertEqual(tok.idToPiece(id), token)
        }
        XCTAssertEqual(tok.padID, golden.added_ids["[PAD]"])
        XCTAssertEqual(SentencePieceTokenizer.tmfSpecialTokens, golden.special_tokens)
        for c in golden.cases {
            let ids = try tok.encode(c.text, addBOS: false)
            XCTAssertEqual(ids, c.legacy, "legacy \(c.text.debugDescription): \(ids.map { tok.idToPiece($0)! }) vs \(c.legacy_tokens)")
            // Legacy spacing round-trips exactly, special tokens shown.
            XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), c.text, "round trip \(c.text.debugDescription)")
        }
    }

    func testAddedSpecialTokensMatchTransformersNonLegacy() throws {
        let golden = try TokenizerFixtures.load("sp_special_cases.json", as: TokenizerFixtures.SpecialCases.self)
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: golden.special_tokens,
                                             spacing: .nonLegacy)
        for c in golden.cases {
            let ids = try tok.encode(c.text, addBOS: false)
            XCTAssertEqual(ids, c.non_legacy,
                           "non-legacy \(c.text.debugDescription): \(ids.map { tok.idToPiece($0)! }) vs \(c.non_legacy_tokens)")
            if !c.text.hasPrefix(" ") {
                XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), c.text, "round trip \(c.text.debugDescription)")
            }
        }
    }

    func testDecodeSkipsOrShowsSpecialTokens() throws {
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["[MT_i]", "[MT_b]"])
        let ids = try tok.encode("the red shoes [MT_i] viewed [MT_b]", addBOS: true) + [tok.eosID]
        XCTAssertEqual(ids.first, 1)
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false), "<s>the red shoes [MT_i] viewed [MT_b]</s>")
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: true), "the red shoes  viewed ")
        XCTAssertEqual(tok.decode([999_999, -3]), "")
        XCTAssertTrue(tok.isSpecial(tok.specialTokenID("[MT_b]")!))
        XCTAssertTrue(tok.isSpecial(tok.eosID))
        XCTAssertFalse(tok.isSpecial(100))
    }

    func testSpecialTokenAlreadyInVocabularyKeepsItsId() throws {
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["</s>", "[MT_i]"])
        XCTAssertEqual(tok.specialTokenID("</s>"), 2)
        XCTAssertEqual(tok.specialTokenID("[MT_i]"), tok.baseVocabularySize)
        XCTAssertEqual(tok.vocabularySize, tok.baseVocabularySize + 1)
        XCTAssertEqual(try tok.encode("a</s>", addBOS: false).last, 2)
    }

    func testInvalidSpecialTokens() throws {
        XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: [""]))
        XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["[A]", "[A]"])) {
            XCTAssertEqual($0 as? TokenizerError, .invalidSpecialToken(token: "[A]", reason: "it is listed twice"))
        }
    }

    func testConcurrentEncoding() throws {
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["[MT_i]"])
        let expected = try tok.encode("Which item will the user purchase next? [MT_i] 北京 🎁")
        let mismatches = UnsafeSendableCounter()
        DispatchQueue.concurrentPerform(iterations: 64) { _ in
            if (try? tok.encode("Which item will the user purchase next? [MT_i] 北京 🎁")) != expected { mismatches.add() }
        }
        XCTAssertEqual(mismatches.value, 0)
    }
}

final class UnsafeSendableCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
