import Foundation
@testable import TMFTokenizer
import XCTest

/// Seeded generator so failures reproduce (SplitMix64).
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class RobustnessTests: XCTestCase {
    /// Every truncation and many random corruptions of a real model either load or throw
    /// `corruptModel`; none crashes the process (libsentencepiece is reached only through the shim).
    func testDamagedModelsNeverCrash() throws {
        let good = try Data(contentsOf: TokenizerFixtures.spModel)
        let url = URL(fileURLWithPath: "/fixture/tokenizer.model")
        var loaded = 0
        var rejected = 0
        func attempt(_ bytes: Data) {
            do {
                let tok = try SentencePieceTokenizer(modelData: bytes, modelURL: url, specialTokens: ["[MT_i]"],
                                                     spacing: .legacy)
                _ = try? tok.encode("The user viewed [MT_i] café 北京 🎁 123")
                _ = tok.decode(Array(0..<tok.vocabularySize))
                loaded += 1
            } catch TokenizerError.corruptModel(path: url.path, _) {
                rejected += 1
            } catch TokenizerError.missingSpecialToken(path: url.path, _) {
                rejected += 1
            } catch {
                XCTFail("unexpected error \(error)")
            }
        }
        for length in stride(from: 0, to: good.count, by: 7) { attempt(good.prefix(length)) }
        var rng = SeededGenerator(state: 42)
        for _ in 0..<300 {
            var bytes = good
            for _ in 0..<Int.random(in: 1...8, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            attempt(bytes)
        }
        for _ in 0..<100 {
            attempt(Data((0..<Int.random(in: 1...5000, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }))
        }
        XCTAssertGreaterThan(rejected, 100)
        XCTAssertGreaterThan(loaded, 0)
    }

    func testUnusualText() throws {
        let tok = try SentencePieceTokenizer(modelURL: TokenizerFixtures.spModel, specialTokens: ["[MT_i]"])
        for text in ["a\u{0}b", String(repeating: "wireless ", count: 5000), "[MT_i", "]", "\u{FEFF}x", "e\u{301}"] {
            let ids = try tok.encode(text, addBOS: false)
            XCTAssertEqual(tok.decode(ids), text)
        }
        let clip = try CLIPTokenizer(directory: TokenizerFixtures.clipDir)
        for text in ["a\u{0}b", String(repeating: "x", count: 10000), "<|endoftext", "\u{FEFF}"] {
            XCTAssertEqual(clip.encodePadded(text).inputIDs.count, 77)
        }
    }

    /// A model whose piece is empty parses, then libsentencepiece's index builder (darts_clone)
    /// throws: the shim turns that into `corruptModel` naming the cause, and frees the half-made
    /// processor (found leaking by the fuzzer; `Scripts/fuzz.sh sentencepiece` replays it under
    /// LeakSanitizer: Fixtures/fuzz/regressions/sentencepiece).
    func testLibraryExceptionDuringLoadIsAClearError() throws {
        let input = TokenizerFixtures.root.deletingLastPathComponent()
            .appendingPathComponent("fuzz/regressions/sentencepiece/zero-length-piece")
        let url = URL(fileURLWithPath: "/fixture/tokenizer.model")
        let bytes = try Data(contentsOf: input)
        XCTAssertThrowsError(try SentencePieceTokenizer(modelData: bytes, modelURL: url, specialTokens: [], spacing: .legacy)) { error in
            guard case let TokenizerError.corruptModel(path, reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, url.path)
            XCTAssertTrue(reason.contains("sentencepiece raised") && reason.contains("zero-length key"), reason)
        }
    }
}
