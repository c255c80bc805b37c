import Foundation
import TMFData
import TMFTestSupport
import XCTest

/// Resource limits of the dataset readers: a line of gigabytes is refused while streaming, a
/// `dataset.json` of gigabytes from its size, and a user with very many events costs linear time.
final class DataLimitsTests: XCTestCase {
    /// Writes `prefix` to `url`, then extends the file with a hole to `size` bytes (zeros that
    /// take no disk space): a file of gigabytes in a millisecond.
    func writeSparse(_ url: URL, prefix: String, size: UInt64) throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(prefix.utf8)))
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: size)
        try handle.close()
    }

    func assertError(_ expected: DataError, file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? DataError, expected, file: file, line: line)
        }
    }

    func testItemLineOfGigabytesIsRefusedAfterTheLimit() throws {
        let dir = try makeDataset()
        let items = dir.appendingPathComponent("items.jsonl")
        try writeSparse(items, prefix: ItemsText.standard, size: 4 << 30)  // line 4: 4 GiB of zeros
        let start = Date()
        assertError(.lineTooLong(file: items.path, line: 4, limit: DataLimits.maximumLineBytes)) {
            _ = try Dataset.load(from: dir)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5, "only the first MiB of the line may be read")
    }

    func testCSVRecordOfGigabytesIsRefusedAfterTheLimit() throws {
        let dir = try makeDataset()
        let csv = dir.appendingPathComponent("interactions.csv")
        // An unquoted field of zeros, and a quoted field whose newlines stay inside the record.
        for (prefix, line) in [("user_id,item_id,behavior,timestamp\nu1,a,view,1\nu2,", 3),
                               ("user_id,item_id,behavior,timestamp\nu1,a,view,1\nu2,\"a\n\n", 3)] {
            try writeSparse(csv, prefix: prefix, size: 3 << 30)
            assertError(.lineTooLong(file: csv.path, line: line, limit: DataLimits.maximumLineBytes)) {
                _ = try Dataset.load(from: dir)
            }
        }
        // --skip-invalid cannot skip it: the record has no end to skip to within the limit.
        assertError(.lineTooLong(file: csv.path, line: 3, limit: DataLimits.maximumLineBytes)) {
            _ = try Dataset.load(from: dir, options: LoadOptions(skipInvalid: true))
        }
    }

    func testLinesUpToTheLimitAreRead() throws {
        // A description of almost 1 MiB is long but allowed.
        let long = String(repeating: "x", count: DataLimits.maximumLineBytes - 100)
        let items = ItemsText.standard + "{\"item_id\": \"d\", \"title\": \"Long\", \"description\": \"\(long)\"}\n"
        let dataset = try Dataset.load(from: try makeDataset(items: items))
        XCTAssertEqual(dataset.items.last?.description?.count, long.count)
    }

    func testDatasetJSONOfGigabytesIsRefusedFromItsSize() throws {
        let dir = try makeDataset()
        let config = dir.appendingPathComponent("dataset.json")
        try writeSparse(config, prefix: "{\"target\": \"purchase\"}", size: 2 << 30)
        assertError(.fileTooLarge(path: config.path, size: 2 << 30, limit: DataLimits.maximumJSONFileBytes)) {
            _ = try Dataset.load(from: dir)
        }
    }

    func testRecBoleLineOfGigabytesIsRefused() throws {
        let dir = scratchURL("recbole")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("user_id:token\titem_id:token\ttimestamp:float\n1\t10\t1\n".utf8)
            .write(to: dir.appendingPathComponent("ml.inter"))
        let item = dir.appendingPathComponent("ml.item")
        try writeSparse(item, prefix: "item_id:token\tmovie_title:token_seq\n10\tA Film\n", size: 3 << 30)
        assertError(.lineTooLong(file: item.path, line: 3, limit: DataLimits.maximumLineBytes)) {
            _ = try importRecBole(from: dir, to: scratchURL("recbole-out"))
        }
    }

    func testLineReaderHonoursItsLimitExactly() throws {
        let url = scratchURL("lines")
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data("abcd\r\nefgh\nijklm\n".utf8).write(to: url)
        var lines: [String] = []
        try forEachLine(of: url.path, maxLineBytes: 5) { bytes, _ in lines.append(String(decoding: bytes, as: UTF8.self)) }
        XCTAssertEqual(lines, ["abcd", "efgh", "ijklm"])
        assertError(.lineTooLong(file: url.path, line: 3, limit: 4)) {
            try forEachLine(of: url.path, maxLineBytes: 4) { _, _ in }
        }
    }

    /// A dataset whose first user has `events` events over items 0..<30 (a purchase every 100th),
    /// and 20 light users, over 100 items.
    func heavyDataset(events: Int) throws -> Dataset {
        let items = (0..<100).map { Item(id: "I\($0)", title: "Item \($0)") }
        var list: [(user: String, item: Int, behavior: Int, time: Double)] = []
        list.reserveCapacity(events + 200)
        for k in 0..<events {
            list.append((user: "heavy", item: (k * 7) % 30, behavior: k % 100 == 99 ? 2 : 0, time: Double(k)))
        }
        for u in 0..<20 {
            for k in 0..<6 { list.append((user: "u\(u)", item: (u + 3 * k) % 100, behavior: k % 2 == 1 ? 2 : 0, time: Double(k))) }
        }
        return try Dataset(url: URL(fileURLWithPath: "/heavy"), items: items, config: .standard, events: list)
    }

    func testManyEventsOfOneUserCostLinearTime() throws {
        let start = Date()
        let dataset = try heavyDataset(events: 300_000)
        let splits = SplitExamples(dataset)
        XCTAssertEqual(splits.train.filter { $0.user == 0 }.count, 3000 - 2)
        let rate = dataset.repeatRate(splits.train)
        var sets: [[Int]] = []
        for ex in splits.train { sets.append(try dataset.candidates(for: ex, seed: 1)) }
        // Before: every example scanned (or hashed) its user's whole history: 3,000 examples × 300,000
        // events took minutes. Now one pass per user and a binary search per draw.
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        XCTAssertGreaterThan(rate, 0.9)  // all but the first few purchases repeat an item
        XCTAssertEqual(sets.count, splits.train.count)
    }

    /// Under the protocol's candidate sets (negatives never touched) a user touched one of the
    /// candidates before exactly when the target repeats a history item; a list of items the user
    /// touched only later, or never, is untouched.
    func testTouchedBeforeMatchesTheRepeatsUnderTheProtocol() throws {
        let dataset = try heavyDataset(events: 20_000)
        let splits = SplitExamples(dataset)
        let examples = splits.valid + splits.test + splits.train.prefix(200)
        var kinds = Set<Bool>()
        for ex in examples {
            let set = try dataset.candidates(for: ex, seed: 1)
            let repeats = (dataset.events(ofUser: ex.user).lowerBound..<ex.event).contains { Int(dataset.eventItems[$0]) == ex.target }
            XCTAssertEqual(dataset.touchedBefore(ex, anyOf: set), repeats)
            kinds.insert(repeats)
            let later = (ex.event..<dataset.events(ofUser: ex.user).upperBound).map { Int(dataset.eventItems[$0]) }
            let before = Set((dataset.events(ofUser: ex.user).lowerBound..<ex.event).map { Int(dataset.eventItems[$0]) })
            XCTAssertFalse(dataset.touchedBefore(ex, anyOf: later.filter { !before.contains($0) }))
        }
        XCTAssertEqual(kinds, [true, false])
        XCTAssertFalse(dataset.touchedBefore(examples[0], anyOf: []))
    }

    func testLinearRepeatRateAndCandidatesMatchThePlainDefinitions() throws {
        let dataset = try heavyDataset(events: 20_000)
        let splits = SplitExamples(dataset)
        let rate = dataset.repeatRate(splits.train)
        let naiveRepeats = splits.train.filter { x in
            (dataset.events(ofUser: x.user).lowerBound..<x.event).contains { Int(dataset.eventItems[$0]) == x.target }
        }.count
        XCTAssertEqual(rate, Double(naiveRepeats) / Double(splits.train.count))
        let touched = (0..<dataset.userIDs.count).map { dataset.interactedItems(ofUser: $0) }
        XCTAssertEqual(touched[0], Set(0..<30))
        for ex in splits.train {
            let set = try dataset.candidates(for: ex, seed: 1)
            XCTAssertEqual(set.count, 11)
            XCTAssertEqual(set.filter { $0 == ex.target }.count, 1)
            XCTAssertTrue(set.filter { $0 != ex.target }.allSatisfy { !touched[ex.user].contains($0) })
        }
    }
}
