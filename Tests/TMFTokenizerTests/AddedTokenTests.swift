import Foundation
import TMFTokenizer
import XCTest

/// Added (non-special) tokens: whole strings, e.g. item titles, as single vocabulary entries.
final class AddedTokenTests: XCTestCase {
    let titles = ["Toy Story", "Toy Story 2", "Heat", "Machine, The"]

    func testAddedTokensAreSingleIdsBeforeSpecialTokens() throws {
        let plain = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel)
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, addedTokens: titles,
                                             specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
        let n = plain.baseVocabularySize
        XCTAssertEqual(tok.baseVocabularySize, n)
        XCTAssertEqual(tok.addedTokens, titles)
        XCTAssertEqual(tok.vocabularySize, n + titles.count + 3)
        XCTAssertEqual(try tok.encode("Heat", addBOS: false), [n + 2])
        XCTAssertEqual(tok.specialTokenID("[MT_i]"), n + titles.count)
        // The longest match wins ("Toy Story 2" over "Toy Story"); text between is sentencepiece's,
        // each stretch on its own (legacy spacing), as with special tokens.
        let text = "Candidates: Toy Story 2, Heat [MT_i] and Machine, The."
        let ids = try tok.encode(text, addBOS: true)
        let expected = [tok.bosID] + (try plain.encode("Candidates: ", addBOS: false)) + [n + 1]
            + (try plain.encode(", ", addBOS: false)) + [n + 2] + (try plain.encode(" ", addBOS: false)) + [n + 4]
            + (try plain.encode(" and ", addBOS: false)) + [n + 3] + (try plain.encode(".", addBOS: false))
        XCTAssertEqual(ids, expected)
        // Added tokens decode as their text whether or not special tokens are skipped; they are
        // not special.
        XCTAssertEqual(tok.decode([n + 2, tok.eosID], skipSpecialTokens: true), "Heat")
        XCTAssertEqual(tok.decode([n + 1, n + 4], skipSpecialTokens: true), "Toy Story 2")
        XCTAssertEqual(tok.decode([n + 1, n + 4], skipSpecialTokens: false), "Toy Story 2[MT_i]")
        XCTAssertFalse(tok.isSpecial(n))
        XCTAssertTrue(tok.isSpecial(n + titles.count))
        XCTAssertEqual(tok.idToPiece(n + 3), "Machine, The")
        XCTAssertEqual(tok.pieceToId("Machine, The"), n + 3)
        // Text without added tokens is unchanged.
        XCTAssertEqual(try tok.encode("a toy story", addBOS: false), try plain.encode("a toy story", addBOS: false))
        XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, addedTokens: ["Heat", "Heat"]))
        XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, addedTokens: [""]))
    }

    /// A folder's `added_tokens.json` (written by `addedTokensJSON`) is read back by
    /// `init(directory:)`; a malformed one is a `corruptModel` error naming the file.
    func testAddedTokensFileRoundTripAndErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("added-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: TokenizerFixtures.spModel, to: dir.appendingPathComponent("tokenizer.model"))
        XCTAssertEqual(try SentencePieceTokenizer(directory: dir).addedTokens, [], "no file: no added tokens")
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, addedTokens: titles)
        let file = dir.appendingPathComponent(SentencePieceTokenizer.addedTokensFile)
        try XCTUnwrap(try tok.addedTokensJSON()).write(to: file)
        let loaded = try SentencePieceTokenizer(directory: dir, specialTokens: ["[MT_i]"])
        XCTAssertEqual(loaded.addedTokens, titles)
        XCTAssertEqual(try loaded.encode("Toy Story Heat", addBOS: false), try tok.encode("Toy Story Heat", addBOS: false))
        XCTAssertNil(try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel).addedTokensJSON())
        let n = tok.baseVocabularySize
        for (bad, words) in [("[1, 2]", "JSON object"), ("{\"Heat\": \"x\"}", "JSON object"),
                             ("{\"Heat\": \(n + 1)}", "without gaps"), ("{\"Heat\": 3}", "without gaps"), ("{", "JSON object")] {
            try Data(bad.utf8).write(to: file)
            XCTAssertThrowsError(try SentencePieceTokenizer(directory: dir), bad) { error in
                guard case let TokenizerError.corruptModel(path, reason) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(path, file.path)
                XCTAssertTrue(reason.contains(words), reason)
            }
        }
    }

    /// Thousands of added tokens stay fast (they are indexed by first byte).
    func testManyAddedTokens() throws {
        let many = (0..<30_000).map { "product \($0)" }
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, addedTokens: many)
        let text = (0..<2_000).map { "views product \($0 * 15)" }.joined(separator: ", ")
        let ids = try tok.encode(text, addBOS: false)
        XCTAssertEqual(ids.filter { $0 >= tok.baseVocabularySize }.count, 2_000)
        XCTAssertTrue(ids.contains(tok.baseVocabularySize + 29_985))
    }
}
