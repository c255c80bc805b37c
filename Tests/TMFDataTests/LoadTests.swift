import Foundation
import TMFData
import TMFTestSupport
import XCTest

/// Writes a tiny dataset folder under a fresh temporary directory.
func makeDataset(
    items: String? = ItemsText.standard,
    interactions: String? = "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,b,purchase,2\n",
    config: String? = nil,
    files: [String: [UInt8]] = [:]
) throws -> URL {
    let dir = scratchURL("tmfdata")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    if let items { try Data(items.utf8).write(to: dir.appendingPathComponent("items.jsonl")) }
    if let interactions { try Data(interactions.utf8).write(to: dir.appendingPathComponent("interactions.csv")) }
    if let config { try Data(config.utf8).write(to: dir.appendingPathComponent("dataset.json")) }
    for (path, bytes) in files {
        let url = dir.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }
    return dir
}

enum ItemsText {
    static let standard = """
        {"item_id": "a", "title": "Red Helmet"}
        {"item_id": "b", "title": "Blue Shorts"}
        {"item_id": "c", "title": "Green Bottle"}

        """
}

/// Asserts that loading throws exactly `expected`.
func assertLoadFails(_ url: URL, _ expected: (URL) -> DataError, options: LoadOptions = LoadOptions(),
                     file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try Dataset.load(from: url, options: options)
        XCTFail("expected \(expected(url))", file: file, line: line)
    } catch let error as DataError {
        XCTAssertEqual(error, expected(url), file: file, line: line)
        XCTAssertFalse(error.localizedDescription.isEmpty, file: file, line: line)
    } catch {
        XCTFail("unexpected \(error)", file: file, line: line)
    }
}

final class LoadTests: XCTestCase {
    func items(_ u: URL) -> String { u.appendingPathComponent("items.jsonl").path }
    func inter(_ u: URL) -> String { u.appendingPathComponent("interactions.csv").path }

    func testLoadsValidDataset() throws {
        let url = try makeDataset(
            items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"Pink, \\\"Shorts\\\"\", \"brand\": \"Zed\", \"categories\": [\"x\", \"y\"], \"image\": \"images/d.png\"}\n",
            interactions: "timestamp,behavior,item_id,user_id,extra\r\n"
                + "1714564800,view,a,u1,\"x,\"\"y\"\"\r\nz\"\r\n"
                + "2024-05-01T12:00:01Z,purchase,d,u1,\r\n"
                + "5,purchase,b,u2,\r\n",
            files: ["images/d.png": [1, 2, 3]])
        let d = try Dataset.load(from: url)
        XCTAssertEqual(d.items.count, 4)
        XCTAssertEqual(d.items[3].title, "Pink, \"Shorts\"")
        XCTAssertEqual(d.items[3].categories, ["x", "y"])
        XCTAssertEqual(d.userIDs, ["u1", "u2"])
        XCTAssertEqual(d.eventCount, 3)
        XCTAssertEqual(Array(d.eventItems), [0, 3, 1])
        XCTAssertEqual(d.eventTimes[1], 1_714_564_801)
        XCTAssertEqual(d.behaviors.map(\.name), ["view", "cart", "purchase"])
        XCTAssertEqual(d.target, 2)
        XCTAssertEqual(d.fingerprint.count, 64)
        // Same contents, same fingerprint; a changed image, another one.
        XCTAssertEqual(try Dataset.load(from: url).fingerprint, d.fingerprint)
        try Data([9]).write(to: url.appendingPathComponent("images/d.png"))
        XCTAssertNotEqual(try Dataset.load(from: url).fingerprint, d.fingerprint)
    }

    func testTimestampFormats() {
        XCTAssertEqual(parseTimestamp("0"), 0)
        XCTAssertEqual(parseTimestamp("1714564800"), 1_714_564_800)
        XCTAssertEqual(parseTimestamp("2024-05-01"), 1_714_521_600)
        XCTAssertEqual(parseTimestamp("2024-05-01T12:00:00Z"), 1_714_564_800)
        XCTAssertEqual(parseTimestamp("2024-05-01 14:00:00+02:00"), 1_714_564_800)
        XCTAssertEqual(parseTimestamp("2024-05-01T12:00:00.5Z"), 1_714_564_800.5)
        XCTAssertEqual(parseTimestamp("1970-01-01T00:00"), 0)
        for bad in ["", "yesterday", "2024-13-01", "2024-02-30", "2024-05-01T25:00", "12ab", "1-2"] {
            XCTAssertNil(parseTimestamp(bad), bad)
        }
    }

    func testConfigBehaviorsAndTarget() throws {
        let url = try makeDataset(
            interactions: "user_id,item_id,behavior,timestamp\nu1,a,click,1\nu1,b,fav,2\nu1,c,buy,3\n",
            config: #"{"behaviors": {"click": "clicks", "fav": "favourites", "buy": "buys"}, "target": "fav"}"#)
        let d = try Dataset.load(from: url)
        XCTAssertEqual(d.behaviors.map(\.name), ["click", "fav", "buy"])
        XCTAssertEqual(d.behaviors[d.target].phrase, "favourites")
        let e = try Dataset.load(from: url, options: LoadOptions(target: "buy"))
        XCTAssertEqual(e.behaviors[e.target].name, "buy")
        XCTAssertNotEqual(d.fingerprint, e.fingerprint)
    }

    // MARK: one fixture per validation error

    func testMissingItemsFile() throws {
        let url = try makeDataset(items: nil)
        assertLoadFails(url) { .missingFile(path: self.items($0), hint: "the dataset folder needs items.jsonl: one JSON object per item: {\"item_id\": ..., \"title\": ...}") }
    }

    func testMissingInteractionsFile() throws {
        let url = try makeDataset(interactions: nil)
        assertLoadFails(url) { .missingFile(path: self.inter($0), hint: "the dataset folder needs interactions.csv: a CSV with header user_id,item_id,behavior,timestamp") }
    }

    func testMissingFolder() {
        let url = URL(fileURLWithPath: "/nonexistent/tmf-dataset")
        XCTAssertThrowsError(try Dataset.load(from: url)) { error in
            guard case .missingFile = error as? DataError else { return XCTFail("\(error)") }
        }
    }

    func testMissingColumn() throws {
        let url = try makeDataset(interactions: "user_id,item_id,timestamp\nu1,a,1\n")
        assertLoadFails(url) { .missingColumn(file: self.inter($0), column: "behavior", header: ["user_id", "item_id", "timestamp"]) }
    }

    func testWrongFieldCount() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,b,purchase\n")
        assertLoadFails(url) { .wrongFieldCount(file: self.inter($0), line: 3, expected: 4, found: 3) }
    }

    func testUnterminatedQuote() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\n\"u1,b,purchase,2\n")
        assertLoadFails(url) { .unterminatedQuote(file: self.inter($0), line: 3) }
    }

    func testDuplicateItemID() throws {
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"b\", \"title\": \"Other\"}\n")
        assertLoadFails(url) { .duplicateItemID(file: self.items($0), line: 4, id: "b", firstLine: 2) }
    }

    func testDuplicateTitle() throws {
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"  red   HELMET \"}\n")
        assertLoadFails(url) { .duplicateTitle(file: self.items($0), line: 4, title: "  red   HELMET ", firstLine: 1) }
    }

    func testMissingTitle() throws {
        let url = try makeDataset(items: "{\"item_id\": \"a\", \"title\": \"A\"}\n{\"item_id\": \"b\"}\n")
        assertLoadFails(url) { .missingField(file: self.items($0), line: 2, field: "title") }
    }

    func testBadJSON() throws {
        let url = try makeDataset(items: "{\"item_id\": \"a\", \"title\": \"A\"}\n{\"item_id\": \"b\",\n")
        assertLoadFails(url) { .badJSON(file: self.items($0), line: 2, reason: "not valid JSON") }
    }

    func testUnknownItem() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,zz,purchase,2\n")
        assertLoadFails(url) { .unknownItem(file: self.inter($0), line: 3, id: "zz") }
    }

    func testUnknownBehavior() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,like,1\nu1,b,purchase,2\n")
        assertLoadFails(url) { .unknownBehavior(file: self.inter($0), line: 2, behavior: "like", known: ["view", "cart", "purchase"]) }
    }

    func testBadTimestamp() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,b,purchase,tuesday\n")
        assertLoadFails(url) { .badTimestamp(file: self.inter($0), line: 3, value: "tuesday") }
    }

    func testNonUTF8Interactions() throws {
        let url = try makeDataset(interactions: nil, files: [
            "interactions.csv": Array("user_id,item_id,behavior,timestamp\nu1,a,view,1\n".utf8) + [0x75, 0xFF, 0xFE] + Array(",b,purchase,2\n".utf8),
        ])
        assertLoadFails(url) { .notUTF8(file: self.inter($0), line: 3) }
    }

    func testNonUTF8Items() throws {
        let url = try makeDataset(items: nil, files: [
            "items.jsonl": Array("{\"item_id\": \"a\", \"title\": \"A\"}\n{\"item_id\": \"b\", \"title\": \"".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8),
        ])
        assertLoadFails(url) { .notUTF8(file: self.items($0), line: 2) }
    }

    func testImagePathWithDotDot() throws {
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"D\", \"image\": \"images/../../x.png\"}\n")
        assertLoadFails(url) { .imageEscapes(file: self.items($0), line: 4, path: "images/../../x.png") }
    }

    func testAbsoluteImagePath() throws {
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"D\", \"image\": \"/etc/passwd\"}\n")
        assertLoadFails(url) { .imageEscapes(file: self.items($0), line: 4, path: "/etc/passwd") }
    }

    func testSymlinkOutOfDataset() throws {
        let outside = try makeDataset(files: ["secret.png": [1]])
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"D\", \"image\": \"images/link.png\"}\n",
                                  files: ["images/keep": []])
        try FileManager.default.createSymbolicLink(
            atPath: url.appendingPathComponent("images/link.png").path,
            withDestinationPath: outside.appendingPathComponent("secret.png").path)
        assertLoadFails(url) { .imageEscapes(file: self.items($0), line: 4, path: "images/link.png") }
    }

    func testMissingImage() throws {
        let url = try makeDataset(items: ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"D\", \"image\": \"images/nope.png\"}\n")
        assertLoadFails(url) { .missingImage(file: self.items($0), line: 4, path: "images/nope.png") }
    }

    func testNoTargetBehavior() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,b,cart,2\n")
        assertLoadFails(url) { .noTargetBehavior(file: self.inter($0), target: "purchase") }
    }

    func testTooFewBehaviorsInConfig() throws {
        let url = try makeDataset(config: #"{"behaviors": {"purchase": "purchases"}}"#)
        XCTAssertThrowsError(try Dataset.load(from: url)) { error in
            guard case .badConfig = error as? DataError else { return XCTFail("\(error)") }
        }
    }

    func testTargetNotABehavior() throws {
        let url = try makeDataset(config: #"{"target": "rent"}"#)
        XCTAssertThrowsError(try Dataset.load(from: url)) { error in
            guard case .badConfig = error as? DataError else { return XCTFail("\(error)") }
        }
    }

    func testSkipInvalidDropsAndCounts() throws {
        let url = try makeDataset(
            items: ItemsText.standard + "{\"item_id\": \"b\", \"title\": \"Dup\"}\n{\"item_id\": \"e\", \"title\": \"E\", \"image\": \"../e.png\"}\n",
            interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,zz,view,2\nu1,b,like,3\nu1,b,view,never\nu1,c,purchase,4\nu1,c\n")
        assertLoadFails(url) { .duplicateItemID(file: self.items($0), line: 4, id: "b", firstLine: 2) }
        let d = try Dataset.load(from: url, options: LoadOptions(skipInvalid: true))
        XCTAssertEqual(d.items.count, 3)
        XCTAssertEqual(d.eventCount, 2)
        XCTAssertEqual(d.skipped.total, 6)
        XCTAssertEqual(d.skipped.counts["unknown item"], 1)
        XCTAssertEqual(d.skipped.counts["bad timestamp"], 1)
        XCTAssertNotNil(d.skipped.summary)
    }

    func testErrorMessagesNameFileLineAndFix() throws {
        let url = try makeDataset(interactions: "user_id,item_id,behavior,timestamp\nu1,a,view,1\nu1,zz,purchase,2\n")
        do {
            _ = try Dataset.load(from: url)
            XCTFail("expected an error")
        } catch {
            let message = error.localizedDescription
            XCTAssertTrue(message.contains("interactions.csv:3:"), message)
            XCTAssertTrue(message.contains("--skip-invalid"), message)
        }
    }

    func testStreamsAcrossChunkBoundaries() throws {
        // Over 1 MiB so records and quoted fields straddle the chunk boundary.
        var csv = "user_id,item_id,behavior,timestamp\n"
        var n = 0
        while csv.utf8.count < (1 << 20) + 50_000 {
            csv += "\"user \(n % 97)\",\(["a", "b", "c"][n % 3]),\(n % 5 == 0 ? "purchase" : "view"),\(n)\r\n"
            n += 1
        }
        let url = try makeDataset(interactions: csv)
        let d = try Dataset.load(from: url)
        XCTAssertEqual(d.eventCount, n)
        XCTAssertEqual(d.userIDs.count, 97)
        XCTAssertEqual(d.userIDs[5], "user 5")
    }
}
