import Foundation
import TMFTokenizer
import XCTest

final class TokenizerErrorTests: XCTestCase {
    private func message(_ error: Error) -> String { (error as? LocalizedError)?.errorDescription ?? "" }

    func testMissingFiles() throws {
        let dir = try temporaryDirectory(self)
        let model = dir.appendingPathComponent("tokenizer.model")
        XCTAssertThrowsError(try SentencePieceTokenizer(directory: dir)) {
            XCTAssertEqual($0 as? TokenizerError, .fileNotFound(path: model.path))
            XCTAssertTrue(self.message($0).contains(model.path))
        }
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) {
            XCTAssertEqual($0 as? TokenizerError, .fileNotFound(path: dir.appendingPathComponent("vocab.json").path))
        }
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: false)
        XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: model)) {
            XCTAssertEqual($0 as? TokenizerError, .unreadableFile(path: model.path, reason: "it is a directory"))
        }
    }

    func testCorruptSentencePieceModel() throws {
        let dir = try temporaryDirectory(self)
        let model = dir.appendingPathComponent("tokenizer.model")
        var rng = SeededGenerator(state: 7)
        for (i, bytes) in [
            (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) },
            [UInt8](),
            Array("not a model at all\n".utf8),
            Array(try Data(contentsOf: TokenizerFixtures.spModel).prefix(1000)),  // truncated
        ].enumerated() {
            try Data(bytes).write(to: model)
            XCTAssertThrowsError(try SentencePieceTokenizer(modelURL: model), "case \(i)") {
                guard case let .corruptModel(path, _)? = $0 as? TokenizerError else {
                    return XCTFail("case \(i): expected corruptModel, got \($0)")
                }
                XCTAssertEqual(path, model.path)
                XCTAssertTrue(self.message($0).contains("not a valid SentencePiece model"))
            }
        }
    }

    func testMalformedCLIPFiles() throws {
        let dir = try temporaryDirectory(self)
        let vocab = dir.appendingPathComponent("vocab.json")
        let merges = dir.appendingPathComponent("merges.txt")
        let goodVocab = try Data(contentsOf: TokenizerFixtures.clipDir.appendingPathComponent("vocab.json"))
        let goodMerges = try Data(contentsOf: TokenizerFixtures.clipDir.appendingPathComponent("merges.txt"))

        func expectVocabError(_ text: String, line: UInt = #line) throws {
            try Data(text.utf8).write(to: vocab)
            try goodMerges.write(to: merges)
            XCTAssertThrowsError(try CLIPTokenizer(directory: dir), line: line) {
                guard case let .malformedVocabulary(path, _)? = $0 as? TokenizerError else {
                    return XCTFail("expected malformedVocabulary, got \($0)", line: line)
                }
                XCTAssertEqual(path, vocab.path, line: line)
            }
        }
        try expectVocabError("{\"a\": 1,")
        try expectVocabError("[1, 2, 3]")
        try expectVocabError("{\"a\": \"one\"}")
        try expectVocabError("{}")
        try expectVocabError("{\"a\": 1, \"b\": 1}")

        // Missing special token.
        try Data(#"{"a": 0, "b": 1}"#.utf8).write(to: vocab)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) {
            XCTAssertEqual($0 as? TokenizerError, .missingSpecialToken(path: vocab.path, token: "<|startoftext|>"))
        }

        func expectMergesError(_ text: String, line expectedLine: Int, line: UInt = #line) throws {
            try goodVocab.write(to: vocab)
            try Data(text.utf8).write(to: merges)
            XCTAssertThrowsError(try CLIPTokenizer(directory: dir), line: line) {
                guard case let .malformedMerges(path, l, _)? = $0 as? TokenizerError else {
                    return XCTFail("expected malformedMerges, got \($0)", line: line)
                }
                XCTAssertEqual(path, merges.path, line: line)
                XCTAssertEqual(l, expectedLine, line: line)
            }
        }
        try expectMergesError("#version: 0.2\na b c\n", line: 2)
        try expectMergesError("#version: 0.2\nt h\nnot_a_token x\n", line: 3)
        try expectMergesError("single\n", line: 1)
        try Data([0xFF, 0xFE, 0x00]).write(to: merges)
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir))

        // A good pair still loads.
        try goodMerges.write(to: merges)
        XCTAssertNoThrow(try CLIPTokenizer(directory: dir))
    }

    func testMessagesAreOneLineAndNameTheFile() {
        let errors: [TokenizerError] = [
            .fileNotFound(path: "/m/tokenizer.model"), .unreadableFile(path: "/m/x", reason: "r"),
            .corruptModel(path: "/m/tokenizer.model", reason: "r"), .malformedVocabulary(path: "/m/vocab.json", reason: "r"),
            .malformedMerges(path: "/m/merges.txt", line: 3, reason: "r"), .missingSpecialToken(path: "/m/v", token: "t"),
            .unwritableFile(path: "/m/o", reason: "r"),
        ]
        for e in errors {
            let m = message(e)
            XCTAssertFalse(m.contains("\n"))
            XCTAssertTrue(m.contains("/m/"), m)
        }
    }
}
