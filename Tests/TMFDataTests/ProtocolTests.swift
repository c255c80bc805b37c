import Foundation
import TMFData
import XCTest

/// A dataset built in memory: items "i0"... titled "Item 0"..., standard behaviors.
func memoryDataset(items n: Int, events: [(String, Int, String, Double)]) throws -> Dataset {
    let items = (0..<n).map { Item(id: "i\($0)", title: "Item \($0)") }
    let b = ["view": 0, "cart": 1, "purchase": 2]
    return try Dataset(
        url: URL(fileURLWithPath: "/mem"), items: items, config: .standard,
        events: events.map { (user: $0.0, item: $0.1, behavior: b[$0.2]!, time: $0.3) })
}

final class ProtocolTests: XCTestCase {
    /// u1: v0 p1 v2 c3 p3 v4 p4 p5 (with a timestamp tie and out-of-order rows);
    /// u2: one purchase only (no history: no example); u3: views only (dropped).
    func handMade() throws -> Dataset {
        try memoryDataset(items: 30, events: [
            ("u1", 0, "view", 10),
            ("u2", 7, "purchase", 5),
            ("u1", 1, "purchase", 20),
            ("u1", 4, "view", 60),      // out of order: after the 50s
            ("u1", 2, "view", 30),
            ("u1", 3, "cart", 40),
            ("u1", 3, "purchase", 50),
            ("u3", 9, "view", 1),
            ("u1", 4, "purchase", 60),  // tie with the view at 60: file order keeps view first
            ("u1", 5, "purchase", 70),
        ])
    }

    func testLeaveOneOutSplit() throws {
        let d = try handMade()
        let s = SplitExamples(d)
        XCTAssertEqual(s.test.map(\.target), [5])
        XCTAssertEqual(s.valid.map(\.target), [4])
        XCTAssertEqual(s.train.map(\.target), [1, 3])
        XCTAssertEqual(s.train.map(\.ordinal), [0, 1])
        XCTAssertEqual(d.history(of: s.test[0]).map(\.item), [0, 1, 2, 3, 3, 4, 4])
        XCTAssertEqual(d.history(of: s.test[0]).map(\.behavior), [0, 2, 0, 1, 2, 0, 2])
        XCTAssertEqual(d.history(of: s.valid[0]).map(\.item), [0, 1, 2, 3, 3, 4])
        XCTAssertEqual(d.history(of: s.train[0]).map(\.item), [0])
        XCTAssertEqual(d.history(of: s.test[0], maxLength: 3).map(\.item), [3, 4, 4])
        XCTAssertTrue(s.test.allSatisfy { d.userIDs[$0.user] == "u1" })
    }

    func testFirstEventTargetHasNoExample() throws {
        let d = try memoryDataset(items: 20, events: [("u", 1, "purchase", 1), ("u", 2, "view", 2), ("u", 3, "purchase", 3)])
        let s = SplitExamples(d)
        XCTAssertEqual(s.test.map(\.target), [3])
        XCTAssertTrue(s.valid.isEmpty)  // the first event has no history
        XCTAssertTrue(s.train.isEmpty)
    }

    func testCandidatesAreStableDisjointAndContainTruthOnce() throws {
        let d = try handMade()
        let s = SplitExamples(d)
        let touched = d.interactedItems(ofUser: s.test[0].user)
        for x in s.test + s.valid + s.train {
            let c = try d.candidates(for: x, seed: 42)
            XCTAssertEqual(c.count, 11)
            XCTAssertEqual(Set(c).count, 11)
            XCTAssertEqual(c.filter { $0 == x.target }.count, 1)
            XCTAssertTrue(Set(c.filter { $0 != x.target }).isDisjoint(with: touched))
            XCTAssertEqual(try d.candidates(for: x, seed: 42), c)  // same run
        }
        XCTAssertNotEqual(try d.candidates(for: s.test[0], seed: 42), try d.candidates(for: s.valid[0], seed: 42))
        XCTAssertNotEqual(try d.candidates(for: s.test[0], seed: 42), try d.candidates(for: s.test[0], seed: 43))
        // Fixed values: the sets must not change between runs, processes or releases.
        XCTAssertEqual(try d.candidates(for: s.test[0], seed: 42), Self.goldenTest)
        XCTAssertEqual(try d.candidates(for: s.valid[0], seed: 42), Self.goldenValid)
    }

    static let goldenTest = [21, 13, 24, 11, 9, 22, 5, 14, 6, 10, 27]
    static let goldenValid = [20, 7, 17, 19, 24, 8, 26, 25, 4, 29, 22]

    func testCandidatesWhenUserTouchedMostItems() throws {
        // 12 items, the user touched 2: the complement path (exactly 10 left).
        let d = try memoryDataset(items: 12, events: [("u", 0, "view", 1), ("u", 1, "purchase", 2)])
        let x = SplitExamples(d).test[0]
        let c = try d.candidates(for: x, seed: 1)
        XCTAssertEqual(Set(c), Set([1] + Array(2..<12)))
    }

    func testTooFewItems() throws {
        let d = try memoryDataset(items: 10, events: [("u", 0, "view", 1), ("u", 1, "purchase", 2)])
        XCTAssertThrowsError(try d.candidates(for: SplitExamples(d).test[0], seed: 1)) { error in
            XCTAssertEqual(error as? DataError, .tooFewItems(count: 10, needed: 11))
        }
        let e = try memoryDataset(items: 11, events: [("u", 0, "view", 1), ("u", 1, "purchase", 2)])
        XCTAssertThrowsError(try e.candidates(for: SplitExamples(e).test[0], seed: 1)) { error in
            XCTAssertEqual(error as? DataError, .tooFewNegatives(user: "u", available: 9, needed: 10))
        }
    }

    func testScoring() {
        let titles = ["Red Helmet", "Blue Shorts", "Red Helmet Pro"]
        XCTAssertEqual(scoreAnswer("  red   helmet\n", candidateTitles: titles, truth: 0), AnswerScore(chosen: 0, correct: true))
        XCTAssertEqual(scoreAnswer("Red Helmet Pro", candidateTitles: titles, truth: 0), AnswerScore(chosen: 2, correct: false))
        XCTAssertEqual(scoreAnswer("I pick blue shorts.", candidateTitles: titles, truth: 1), AnswerScore(chosen: 1, correct: true))
        // Contains two candidate titles and equals none: not valid.
        XCTAssertEqual(scoreAnswer("the red helmet pro", candidateTitles: titles, truth: 0), AnswerScore(chosen: nil, correct: false))
        XCTAssertEqual(scoreAnswer("tent", candidateTitles: titles, truth: 0), AnswerScore(chosen: nil, correct: false))
        var m = EvalMetrics()
        m.add(AnswerScore(chosen: 0, correct: true))
        m.add(AnswerScore(chosen: 1, correct: false))
        m.add(AnswerScore(chosen: nil, correct: false))
        m.add(AnswerScore(chosen: 2, correct: true))
        XCTAssertEqual(m.lines, ["HitRate@1: 0.6667", "ValidRatio: 0.7500", "HitRate@1(all): 0.5000", "Examples: 4"])
        XCTAssertEqual(m.json, "{\"HitRate@1\": 0.6667, \"ValidRatio\": 0.7500, \"HitRate@1(all)\": 0.5000, \"Examples\": 4}")
    }

    func testBaselines() throws {
        // Item 0 is bought by every user in training; users' tests are item 0 for half of them.
        var events: [(String, Int, String, Double)] = []
        for u in 0..<40 {
            events.append(("u\(u)", 1 + u % 5, "view", 1))
            events.append(("u\(u)", 0, "purchase", 2))
            events.append(("u\(u)", 6 + u % 7, "view", 3))
            events.append(("u\(u)", 20 + u % 10, "purchase", 4))  // valid
            events.append(("u\(u)", 40 + u % 10, "purchase", 5))  // test
        }
        let d = try memoryDataset(items: 100, events: events)
        let s = SplitExamples(d)
        let pop = d.trainingPopularity(s)
        XCTAssertEqual(pop[0], 40)
        XCTAssertEqual(pop[40], 0)  // test targets do not count
        let p = try d.evaluate(baseline: .popular, split: .test, seed: 3)
        XCTAssertEqual(p.examples, 40)
        XCTAssertEqual(p.validRatio, 1)
        let r = try d.evaluate(baseline: .random, split: .test, seed: 3)
        XCTAssertEqual(r.validRatio, 1)
        XCTAssertEqual(try d.evaluate(baseline: .random, split: .test, seed: 3), r)
        XCTAssertEqual(try d.evaluate(baseline: .random, split: .test, seed: 3, limit: 5).examples, 5)
    }
}

final class HashAndNormaliseTests: XCTestCase {
    func testSHA256Vectors() {
        XCTAssertEqual(SHA256().hexDigest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var h = SHA256()
        h.update(string: "abc")
        XCTAssertEqual(h.hexDigest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        var m = SHA256()
        for _ in 0..<1000 { m.update([UInt8](repeating: 0x61, count: 1000)) }  // fed in uneven pieces
        XCTAssertEqual(m.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// The hash is a value: a copy goes on from the same state without touching the original,
    /// a digest does not end it, and slices and non-contiguous collections feed their bytes.
    func testSHA256IsAValue() {
        var a = SHA256()
        a.update(string: "abcdbcdecdefdefgefghfghighij")
        var b = a
        b.update(Array("hijkijkljklmklmnlmnomnopnopq".utf8)[...])
        XCTAssertEqual(b.hexDigest(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(b.hexDigest(), b.hexDigest())
        a.update("hijkijkljklmklmnlmnomnopnopq".utf8.lazy.map { $0 })
        XCTAssertEqual(a.hexDigest(), b.hexDigest())
        var c = SHA256()
        c.update(string: "ab")
        _ = c.hexDigest()
        c.update([UInt8(ascii: "c")])
        XCTAssertEqual(c.hexDigest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testNormalizeTitle() {
        XCTAssertEqual(normalizeTitle("  Red\t\tBIKE  Helmet \n"), "red bike helmet")
        XCTAssertEqual(normalizeTitle("Café  ÉCLAIR\u{00A0}Box"), "café éclair box")
        XCTAssertEqual(normalizeTitle(" \t "), "")
    }
}
