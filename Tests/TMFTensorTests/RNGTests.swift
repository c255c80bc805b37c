import XCTest
import TMFTensor

final class RNGTests: XCTestCase {
    func testSameSeedSameStream() {
        var a = SeededRNG(seed: 42), b = SeededRNG(seed: 42), c = SeededRNG(seed: 43)
        let xa = (0..<8).map { _ in a.next() }, xb = (0..<8).map { _ in b.next() }
        XCTAssertEqual(xa, xb)
        XCTAssertNotEqual(xa, (0..<8).map { _ in c.next() })
    }

    func testKeyedStreamsAreStableAndDistinct() {
        var a = SeededRNG(seed: 7, key: ["user1", "test"])
        var b = SeededRNG(seed: 7, key: ["user1", "valid"])
        XCTAssertNotEqual(a.next(), b.next())
        var again = SeededRNG(seed: 7, key: ["user1", "test"])
        var first = SeededRNG(seed: 7, key: ["user1", "test"])
        XCTAssertEqual(again.next(), first.next())
    }

    /// Golden values (splitmix64 seeding + xoshiro256**, computed independently in Python):
    /// streams must never change between releases, since candidate sets depend on them.
    func testGoldenStream() {
        var c = SeededRNG(seed: 1)
        XCTAssertEqual([c.next(), c.next(), c.next()], [0xb3f2af6d0fc710c5, 0x853b559647364cea, 0x92f89756082a4514])
    }

    func testStateRestore() {
        var a = SeededRNG(seed: 5)
        _ = a.next()
        let saved = a.state
        let x = a.next()
        var b = SeededRNG(state: saved)
        XCTAssertEqual(b.next(), x)
    }

    func testUniformAndNormalMoments() {
        var r = SeededRNG(seed: 3)
        let n = 100_000
        var s = 0.0, s2 = 0.0, u = 0.0
        for _ in 0..<n {
            let z = Double(r.nextNormal()); s += z; s2 += z * z
            u += Double(r.nextFloat())
        }
        XCTAssertEqual(s / Double(n), 0, accuracy: 0.02)
        XCTAssertEqual(s2 / Double(n), 1, accuracy: 0.02)
        XCTAssertEqual(u / Double(n), 0.5, accuracy: 0.01)
        for _ in 0..<1000 { XCTAssert((0..<7).contains(r.nextInt(below: 7))) }
    }
}
