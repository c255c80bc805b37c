import Foundation
import TMFTokenizer
import XCTest

final class SentencePieceTrainerTests: XCTestCase {
    private func corpus() throws -> [String] {
        try String(contentsOf: TokenizerFixtures.corpus, encoding: .utf8).split(separator: "\n").map(String.init)
    }

    func testTrainedModelLoadsAndEncodesTheCorpus() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("tokenizer.model")
        let lines = try corpus()
        // The options Scripts/make_tokenizer_fixtures.py gives Python sentencepiece (Options.llama).
        try SentencePieceTrainer.train(corpus: lines, vocabSize: 640, to: url)
        let tok = try SentencePieceTokenizer(directory: dir, specialTokens: ["[MT_i]", "[MT_b]"])
        XCTAssertEqual(tok.baseVocabularySize, 640)
        XCTAssertEqual(tok.unkID, 0)
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertNil(tok.padID)
        XCTAssertEqual(tok.idToPiece(3), "<0x00>")  // byte-fallback pieces follow the controls
        XCTAssertTrue(tok.isByte(3 + 0x41))
        XCTAssertEqual(tok.specialTokenID("[MT_i]"), 640)
        var total = 0
        for line in lines {
            let ids = try tok.encode(line, addBOS: false)
            XCTAssertFalse(ids.contains(tok.unkID), line)
            XCTAssertEqual(tok.decode(ids), line)
            total += ids.count
        }
        // A real BPE: far fewer tokens than characters.
        XCTAssertLessThan(Double(total), 0.5 * Double(lines.reduce(0) { $0 + $1.count }))
        // split_digits: every digit is its own piece.
        let pieces = try tok.encode("Price 12345", addBOS: false).compactMap { tok.idToPiece($0) }
        XCTAssertEqual(pieces.filter { $0.contains(where: \.isNumber) }, ["1", "2", "3", "4", "5"])
        // Unseen characters fall back to bytes, not <unk>.
        let unseen = try tok.encode("☃", addBOS: false).filter { tok.idToPiece($0) != "\u{2581}" }
        XCTAssertEqual(unseen.count, 3)
        XCTAssertTrue(unseen.allSatisfy { tok.isByte($0) })

        // Same corpus and options as the Python-trained fixture model: same vocabulary.
        let python = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel)
        let ours = (0..<640).map { tok.idToPiece($0)! }
        let theirs = (0..<640).map { python.idToPiece($0)! }
        XCTAssertEqual(ours, theirs)
    }

    func testTrainingFromFileAndOverwrite() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("tokenizer.model")
        try Data("old".utf8).write(to: url)
        try SentencePieceTrainer.train(corpusFile: TokenizerFixtures.corpus, vocabSize: 600, to: url)
        XCTAssertEqual(try SentencePieceTokenizer(modelURL: url).baseVocabularySize, 600)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(leftovers, ["tokenizer.model"])
    }

    func testTrainingErrors() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("tokenizer.model")
        XCTAssertThrowsError(try SentencePieceTrainer.train(corpus: [], vocabSize: 300, to: url)) {
            XCTAssertEqual($0 as? TokenizerError, .trainingFailed(reason: "the corpus is empty"))
        }
        // Vocabulary far too large for a two-line corpus.
        XCTAssertThrowsError(try SentencePieceTrainer.train(corpus: ["a b", "c d"], vocabSize: 5000, to: url)) {
            guard case .trainingFailed? = $0 as? TokenizerError else { return XCTFail("\($0)") }
        }
        var options = SentencePieceTrainer.Options.llama
        options.extra["no_such_option"] = "1"
        XCTAssertThrowsError(try SentencePieceTrainer.train(corpus: ["a b"], vocabSize: 300, options: options, to: url)) {
            guard case .trainingFailed? = $0 as? TokenizerError else { return XCTFail("\($0)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: url.path))
        XCTAssertThrowsError(try SentencePieceTrainer.train(
            corpus: ["a b"], vocabSize: 300, to: dir.appendingPathComponent("missing/tokenizer.model")))
    }
}
