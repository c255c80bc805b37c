import Foundation
import TMFTestSupport
import XCTest

/// `tmf eval --baseline oracle`: a synthetic shop's ceiling, through the built binary.
final class OracleCommandTests: XCTestCase {
    func testOracleRanksTheBundledShopAboveEveryBaselineAndRefusesOtherData() throws {
        let shop = fixturesURL.appendingPathComponent("shop").path
        func hitRate(_ arguments: [String]) throws -> Double {
            let r = try runTMF(["eval", "--data", shop, "--rank", "--json", "--quiet"] + arguments)
            XCTAssertEqual(r.status, 0, r.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            return try XCTUnwrap(object?["HitRate@1"] as? Double, r.stdout)
        }
        let oracle = try hitRate(["--baseline", "oracle"])
        XCTAssertGreaterThan(oracle, 0.95)
        XCTAssertLessThanOrEqual(oracle, 1)
        XCTAssertGreaterThan(oracle, try hitRate(["--baseline", "popular"]) + 0.5)
        // Its generative row answers its top candidate.
        let generative = try runTMF(["eval", "--data", shop, "--baseline", "oracle", "--quiet"])
        XCTAssertEqual(generative.status, 0, generative.stderr)
        XCTAssertTrue(generative.stdout.contains(String(format: "HitRate@1(all): %.4f", oracle)), generative.stdout)

        // Another seed, or data tmf synth did not write: one line, non-zero exit.
        assertFailure(try runTMF(["eval", "--data", shop, "--baseline", "oracle", "--synth-seed", "2"]), mentions: "--synth-seed")
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("oracle-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: other) }
        let synth = try runTMF(["synth", other.path, "--users", "30", "--items", "40", "--seed", "5", "--quiet"])
        XCTAssertEqual(synth.status, 0, synth.stderr)
        let csv = other.appendingPathComponent("interactions.csv")
        var text = try String(contentsOf: csv, encoding: .utf8)
        text = text.replacingOccurrences(of: ",view,", with: ",cart,", options: [], range: text.range(of: ",view,"))
        try text.write(to: csv, atomically: true, encoding: .utf8)
        XCTAssertEqual(try runTMF(["eval", "--data", other.path, "--baseline", "oracle", "--synth-seed", "5", "--rank"]).status, 1)
        assertFailure(try runTMF(["eval", "--data", other.path, "--baseline", "oracle", "--synth-seed", "5"]), mentions: "tmf synth")
        assertFailure(try runTMF(["eval", "--data", shop, "--baseline", "oracl"]), argumentError: true)
    }
}
