import Foundation
import XCTest
import TMFTestSupport

/// `tmf pretrain` through the real binary: its argument errors are one clear line and leave no
/// output folder behind.
final class PretrainCommandTests: XCTestCase {
    func testBadDrillArguments() throws {
        let scratch = scratchURL("tmf-pretrain-cli")
        let corpus = scratch.appendingPathComponent("corpus.txt")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try "The user views a red tent.\n".write(to: corpus, atomically: true, encoding: .utf8)
        let out = scratch.appendingPathComponent("out")
        for (flag, value) in [("--copy-drills", "5"), ("--lookup-drills", "5")] {
            assertFailure(try runTMF(["pretrain", "--corpus", corpus.path, flag, value, "--out", out.path]),
                          mentions: "\(flag) needs --data")
        }
        assertFailure(try runTMF(["pretrain", "--data", "Fixtures/shop", "--lookup-drills=-1", "--out", out.path]),
                      mentions: "--lookup-drills")
        assertFailure(try runTMF(["pretrain", "--corpus", corpus.path, "--title-tokens", "--out", out.path]), mentions: "--title-tokens")
        assertFailure(try runTMF(["pretrain", "--data", "Fixtures/shop", "--title-tokens", "--init", "Fixtures/models/tiny-llama",
                                  "--out", out.path]), mentions: "--title-tokens")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    /// `--title-tokens`: every item title of the dataset is one token of the written folder.
    func testTitleTokens() throws {
        let out = scratchURL("tmf-pretrain-titles")
        let r = try runTMF(["pretrain", "--data", "Fixtures/shop", "--title-tokens", "--steps", "2", "--vocab", "400",
                            "--hidden", "32", "--layers", "1", "--ffn", "64", "--seq-len", "64", "--quiet", "--threads", "1",
                            "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let added = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("added_tokens.json"))) as? [String: Int])
        let items = try String(contentsOf: packageRoot.appendingPathComponent("Fixtures/shop/items.jsonl"), encoding: .utf8)
            .split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(Set(added.keys), Set(items.compactMap { $0["title"] as? String }))
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json"))) as? [String: Any])
        XCTAssertEqual(config["vocab_size"] as? Int, (added.values.max() ?? 0) + 1)
    }
}
