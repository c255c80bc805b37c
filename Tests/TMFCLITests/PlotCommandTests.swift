import Foundation
import XCTest
import TMFImage
import TMFTestSupport

/// `tmf plot` through the built binary on hand-written metrics files.
final class PlotCommandTests: XCTestCase {
    let lines = [
        #"{"stage":"pretrain","step":1,"loss":7.5,"lr":0.001}"#,
        #"{"stage":"pretrain","step":2,"loss":6.25,"lr":0.001}"#,
        #"{"stage":"pretrain","kind":"validation","step":2,"loss":6.5}"#,
        #"{"stage":"graph","epoch":1,"loss":3.5,"HitRate@1":0.25}"#,
        #"{"stage":"graph","epoch":2,"loss":2.75,"HitRate@1":0.5}"#,
        #"{"stage":"llm","step":1,"level":"easy","loss":2.5,"lr":0.005,"tokens_per_s":100,"answer_tokens":9}"#,
        #"{"stage":"llm","step":2,"level":"hard","loss":2.25,"lr":0.004,"tokens_per_s":100,"answer_tokens":9}"#,
        #"{"stage":"llm","kind":"validation","step":2,"HitRate@1":0.5,"ValidRatio":0.75,"HitRate@1(all)":0.375}"#,
    ]

    func model(_ lines: [String]) throws -> URL {
        let folder = try temporaryFolder(self).appendingPathComponent("model")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: folder.appendingPathComponent("metrics.jsonl"))
        return folder
    }

    func testPlotWritesTrainingPNG() throws {
        let folder = try model(lines)
        let png = folder.appendingPathComponent("training.png")
        let r = try runTMF(["plot", folder.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, png.path + "\n")
        XCTAssertEqual(r.stderr, "")
        XCTAssertEqual(try Data(contentsOf: png).prefix(8), Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        let image = try RGBImage(contentsOfPNG: png)
        XCTAssertEqual([image.width, image.height], [1000, 700])
        // Redrawing gives the same picture; no temporary file is left beside it.
        XCTAssertEqual(try runTMF(["plot", folder.path]).status, 0)
        XCTAssertEqual(try RGBImage(contentsOfPNG: png), image)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted(), ["metrics.jsonl", "training.png"])
    }

    func testBadInputIsOneLineAndWritesNothing() throws {
        let root = try temporaryFolder(self)
        let missing = root.appendingPathComponent("no-such-model")
        assertFailure(try runTMF(["plot", missing.path]), mentions: "no-such-model")
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path))

        let empty = root.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        assertFailure(try runTMF(["plot", empty.path]), mentions: "metrics.jsonl")

        var broken = lines
        broken[4] = #"{"stage":"graph","epoch":2,"loss":"#
        let folder = try model(broken)
        assertFailure(try runTMF(["plot", folder.path]), mentions: "line 5")
        for f in [empty, folder] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: f.appendingPathComponent("training.png").path), f.path)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["metrics.jsonl"])
    }
}
