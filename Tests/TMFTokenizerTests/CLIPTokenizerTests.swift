import Foundation
import TMFTokenizer
import XCTest

final class CLIPTokenizerTests: XCTestCase {
    func testIdsAndMaskEqualTransformers() throws {
        let golden = try TokenizerFixtures.load("clip_cases.json", as: TokenizerFixtures.CLIPCases.self)
        let tok = try CLIPTokenizer(directory: TokenizerFixtures.clipDir)
        XCTAssertEqual(tok.bosID, golden.bos_id)
        XCTAssertEqual(tok.eosID, golden.eos_id)
        XCTAssertEqual(tok.padID, golden.pad_id)
        XCTAssertEqual(tok.vocabularySize, golden.vocab_size)
        XCTAssertEqual(tok.contextLength, 77)
        XCTAssertGreaterThan(golden.cases.count, 20)
        for c in golden.cases {
            let ids = try tok.encode(c.text, addBOS: true)
            XCTAssertEqual(ids, c.ids, "ids \(c.text.debugDescription): \(ids.map { tok.idToPiece($0)! }) vs \(c.tokens)")
            let enc = tok.encodePadded(c.text)
            XCTAssertEqual(enc.inputIDs, c.input_ids, "padded \(c.text.debugDescription)")
            XCTAssertEqual(enc.attentionMask, c.attention_mask, "mask \(c.text.debugDescription)")
            XCTAssertEqual(enc.inputIDs[enc.endIndex], tok.eosID)
            XCTAssertEqual(enc.endIndex, c.ids.count - 1)
        }
    }

    func testTruncationKeepsEndToken() throws {
        let tok = try CLIPTokenizer(directory: TokenizerFixtures.clipDir)
        let long = String(repeating: "wireless headphones ", count: 100)
        let ids = try tok.encode(long, addBOS: true)
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids.first, tok.bosID)
        XCTAssertEqual(ids.last, tok.eosID)
        let enc = tok.encodePadded(long)
        XCTAssertEqual(enc.attentionMask, [Int](repeating: 1, count: 77))
        XCTAssertEqual(enc.endIndex, 76)
        XCTAssertEqual(try tok.encode(long, addBOS: false).count, 200)
    }

    func testDecode() throws {
        let tok = try CLIPTokenizer(directory: TokenizerFixtures.clipDir)
        let text = "a red café 北京 🎁, don't stop!"
        let ids = try tok.encode(text, addBOS: true)
        XCTAssertEqual(tok.decode(ids), "a red café 北京 🎁, don 't stop !")
        XCTAssertEqual(tok.decode(ids, skipSpecialTokens: false),
                       "<|startoftext|>a red café 北京 🎁, don 't stop ! <|endoftext|>")
    }

    func testPadTokenFromConfig() throws {
        let dir = try temporaryDirectory(self)
        for name in ["vocab.json", "merges.txt"] {
            try FileManager.default.copyItem(at: TokenizerFixtures.clipDir.appendingPathComponent(name),
                                             to: dir.appendingPathComponent(name))
        }
        try Data(#"{"pad_token": {"content": "!", "lstrip": false}}"#.utf8)
            .write(to: dir.appendingPathComponent("tokenizer_config.json"))
        let tok = try CLIPTokenizer(directory: dir)
        XCTAssertEqual(tok.padID, tok.pieceToId("!"))
        let enc = tok.encodePadded("hi")
        XCTAssertEqual(enc.inputIDs.last, tok.pieceToId("!"))
        XCTAssertEqual(enc.inputIDs[enc.endIndex], tok.eosID)

        try Data(#"{"pad_token": "<pad>"}"#.utf8).write(to: dir.appendingPathComponent("tokenizer_config.json"))
        XCTAssertThrowsError(try CLIPTokenizer(directory: dir)) {
            XCTAssertEqual($0 as? TokenizerError,
                           .missingSpecialToken(path: dir.appendingPathComponent("vocab.json").path, token: "<pad>"))
        }
    }
}
