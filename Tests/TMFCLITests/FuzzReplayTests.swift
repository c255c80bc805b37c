import Foundation
import XCTest
import TMFTestSupport

/// The fuzz targets' replayer (`tmf-fuzz`, a plain build of Sources/tmf-fuzz): each target's seed
/// corpus, made from `Fixtures/`, parses without error (so fuzzing starts from valid files), and
/// every input kept in `Fixtures/fuzz/regressions/TARGET/` (a crash fuzzing found, once fixed)
/// runs without crashing.
final class FuzzReplayTests: XCTestCase {
    func testSeedsParseAndRegressionsReplay() throws {
        let replayer = try XCTUnwrap(tmfExecutable?.deletingLastPathComponent().appendingPathComponent("tmf-fuzz"),
                                     "no built tmf-fuzz next to tmf")
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: replayer.path), "build tmf-fuzz (swift build --build-tests)")
        let usage = try runTool(replayer.path, [], in: packageRoot)
        let names = try XCTUnwrap(usage.output.components(separatedBy: "targets: ").last?.split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) })
        XCTAssertEqual(names.count, 11, usage.output)
        let root = try temporaryFolder(self)
        for name in names {
            let seeds = root.appendingPathComponent(name)
            XCTAssertEqual(try runTool(replayer.path, [name, "--seed", seeds.path], in: packageRoot).status, 0)
            let seedFiles = try FileManager.default.contentsOfDirectory(atPath: seeds.path)
            XCTAssertFalse(seedFiles.isEmpty, "\(name) has seeds")
            let replay = try runTool(replayer.path, [name, seeds.path], in: packageRoot, environment: ["TMF_FUZZ_VERBOSE": "1"])
            XCTAssertEqual(replay.status, 0, "\(name): \(replay.output)")
            XCTAssertTrue(replay.output.hasPrefix("tmf-fuzz \(name): \(seedFiles.count) inputs, no crash"),
                          "\(name)'s seeds should parse without error: \(replay.output)")
            let regressions = fixturesURL.appendingPathComponent("fuzz/regressions/\(name)")
            if FileManager.default.fileExists(atPath: regressions.path) {
                let r = try runTool(replayer.path, [name, regressions.path], in: packageRoot)
                XCTAssertEqual(r.status, 0, "\(name) regressions: \(r.output)")
            }
        }
        // A replay that crashes is seen as one: a missing target is a usage error, not a pass.
        XCTAssertNotEqual(try runTool(replayer.path, ["no-such-target"], in: packageRoot).status, 0)
    }

}
