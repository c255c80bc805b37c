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
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
