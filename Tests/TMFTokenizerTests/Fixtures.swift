import Foundation
import TMFTestSupport
import XCTest

/// Paths and golden files under `Fixtures/tokenizer` (made by Scripts/make_tokenizer_fixtures.py).
enum TokenizerFixtures {
    static let root = fixturesURL.appendingPathComponent("tokenizer")
    static let spModel = root.appendingPathComponent("sp/tokenizer.model")
    static let clipDir = root.appendingPathComponent("clip")
    static let corpus = root.appendingPathComponent("corpus.txt")

    struct SPCase: Decodable { let text: String; let ids: [Int]; let pieces: [String]; let decoded: String }
    struct SPCases: Decodable {
        let vocab_size: Int, bos_id: Int, eos_id: Int, unk_id: Int, pad_id: Int
        let cases: [SPCase]
    }
    struct SpecialCase: Decodable {
        let text: String; let legacy: [Int]; let legacy_tokens: [String]
        let non_legacy: [Int]; let non_legacy_tokens: [String]
    }
    struct SpecialCases: Decodable {
        let special_tokens: [String]; let added_ids: [String: Int]; let cases: [SpecialCase]
    }
    struct CLIPCase: Decodable {
        let text: String; let ids: [Int]; let tokens: [String]; let input_ids: [Int]; let attention_mask: [Int]
    }
    struct CLIPCases: Decodable {
        let bos_id: Int, eos_id: Int, pad_id: Int, vocab_size: Int
        let cases: [CLIPCase]
    }

    static func load<T: Decodable>(_ name: String, as: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(contentsOf: root.appendingPathComponent(name)))
    }
}

/// A fresh temporary directory, removed when the test ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("tmf-tokenizer-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}
