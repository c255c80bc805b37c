import Foundation
import TMFData
import TMFTestSupport
import XCTest

final class RecBoleTests: XCTestCase {
    func folder(_ files: [String: String]) throws -> URL {
        let dir = scratchURL("tmfrb")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        return dir
    }

    func testBehaviorField() throws {
        let src = try folder([
            "tb.inter": "user_id:token\titem_id:token\tbehavior_type:token\ttimestamp:float\n"
                + "1\ta\tpv\t100\n1\tb\tcart\t101\n1\tb\tbuy\t102.0\n2\ta\tbuy\t50\n2\tzz\tpv\t51\n",
            "tb.item": "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\n"
                + "a\tRed, \"Bike\"  Helmet\tCycling Helmets\tZed\nb\tBlue Shorts\t\t\nc\tRED, \"Bike\" helmet\t\t\n",
        ])
        let out = src.appendingPathComponent("out")
        let r = try importRecBole(from: src, to: out)
        XCTAssertEqual(r.behaviors, ["pv", "cart", "buy"])
        XCTAssertEqual(r.target, "buy")
        XCTAssertEqual(r.events, 4)
        XCTAssertEqual(r.droppedUnknownItems, 1)
        XCTAssertEqual(r.renamedTitles, 1)
        let d = try Dataset.load(from: out)
        XCTAssertEqual(d.items.map(\.title), ["Red, \"Bike\" Helmet", "Blue Shorts", "RED, \"Bike\" helmet (c)"])
        XCTAssertEqual(d.items[0].categories, ["Cycling", "Helmets"])
        XCTAssertEqual(d.items[0].brand, "Zed")
        XCTAssertEqual(d.behaviors.map(\.phrase), ["views", "adds to cart", "purchases"])
        XCTAssertEqual(d.behaviors[d.target].name, "buy")
        XCTAssertEqual(SplitExamples(d).test.map(\.target), [1])
    }

    func testRatingField() throws {
        let src = try folder([
            "ml.inter": "user_id:token\titem_id:token\trating:float\n1\ta\t5\n1\tb\t2\n1\tc\t4\n",
            "ml.item": "item_id:token\tmovie_title:token_seq\ta:token\ta\tHeat\nb\tAlien\nc\tBrazil\n"
                .replacingOccurrences(of: "\ta:token\ta", with: "\na"),
        ])
        let out = src.appendingPathComponent("out")
        let r = try importRecBole(from: src, to: out)
        XCTAssertEqual(r.target, "rate_high")
        XCTAssertEqual(Set(r.behaviors), ["rate_high", "rate_low"])
        let d = try Dataset.load(from: out)
        XCTAssertEqual(Array(d.eventTimes), [1, 2, 3])  // file order without timestamps
        XCTAssertEqual(d.items.map(\.title), ["Heat", "Alien", "Brazil"])
    }

    /// Found by fuzzing (Fixtures/fuzz/regressions/recbole): a timestamp past Int64's range
    /// trapped the conversion; it, infinity and NaN are now a bad timestamp naming the line.
    func testTimestampsThatAreNotTimesAreRefused() throws {
        for value in ["8812509777777777777777777777777777755", "1e30", "inf", "nan", "-9.1e15"] {
            let src = try folder([
                "x.inter": "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\ta\t5\t100\n1\ta\t4\t\(value)\n",
                "x.item": "item_id:token\ttitle:token_seq\na\tHeat\n",
            ])
            XCTAssertThrowsError(try importRecBole(from: src, to: src.appendingPathComponent("out")), value) { error in
                guard case let .badTimestamp(_, line, _) = error as? DataError else { return XCTFail("\(value): \(error)") }
                XCTAssertEqual(line, 3, value)
            }
        }
    }

    func testMissingTitleField() throws {
        let src = try folder([
            "x.inter": "user_id:token\titem_id:token\trating:float\n1\ta\t5\n",
            "x.item": "item_id:token\tprice:float\na\t3\n",
        ])
        XCTAssertThrowsError(try importRecBole(from: src, to: src.appendingPathComponent("out"))) { error in
            guard case .missingColumn = error as? DataError else { return XCTFail("\(error)") }
        }
    }
}
