import Foundation
import TMFData
import TMFTestSupport
import XCTest

final class SynthTests: XCTestCase {
    func tempDir() -> URL {
        scratchURL("tmfsynth")
    }

    func files(_ url: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let e = FileManager.default.enumerator(atPath: url.path)!
        while let p = e.nextObject() as? String {
            var isDir: ObjCBool = false
            let full = url.appendingPathComponent(p).path
            if FileManager.default.fileExists(atPath: full, isDirectory: &isDir), !isDir.boolValue {
                out[p] = FileManager.default.contents(atPath: full)
            }
        }
        return out
    }

    func testDeterministicAndLoadable() throws {
        let a = tempDir(), b = tempDir(), c = tempDir()
        let opts = SynthOptions(users: 40, items: 60, seed: 9)
        let ra = try synthesizeShop(to: a, options: opts)
        _ = try synthesizeShop(to: b, options: opts)
        _ = try synthesizeShop(to: c, options: SynthOptions(users: 40, items: 60, seed: 10))
        let fa = try files(a)
        XCTAssertEqual(fa.count, 60 + 3)
        XCTAssertEqual(fa, try files(b))
        XCTAssertNotEqual(fa["interactions.csv"], try files(c)["interactions.csv"])
        let d = try Dataset.load(from: a)
        XCTAssertEqual(d.items.count, 60)
        XCTAssertEqual(d.userIDs.count, 40)
        XCTAssertEqual(d.eventCount, ra.events)
        XCTAssertEqual(Set(d.items.map { normalizeTitle($0.title) }).count, 60)
        let s = SplitExamples(d)
        XCTAssertEqual(s.test.count, 40)  // every user's last session purchases
        XCTAssertEqual(try Dataset.load(from: b).fingerprint, d.fingerprint)
        XCTAssertNotEqual(try Dataset.load(from: c).fingerprint, d.fingerprint)
        // Refuses to overwrite.
        XCTAssertThrowsError(try synthesizeShop(to: a, options: opts))
    }

    func testBundledShopBaselines() throws {
        let d = try Dataset.load(from: fixturesURL.appendingPathComponent("shop"))
        XCTAssertEqual(d.items.count, 300)
        let random = try d.evaluate(baseline: .random, split: .test, seed: 42)
        let popular = try d.evaluate(baseline: .popular, split: .test, seed: 42)
        XCTAssertEqual(random.examples, 500)
        XCTAssertEqual(random.hitRate, 1.0 / 11, accuracy: 0.04)
        XCTAssertGreaterThan(popular.hitRate, random.hitRate)
        XCTAssertEqual(popular.validRatio, 1)
    }
}
