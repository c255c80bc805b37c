import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// Size limits: a tensor claiming more than `maximumTensorElements`, and small JSON files of
/// gigabytes, are refused before anything is allocated for them.
final class LimitTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try makeTemporaryDirectory(self)
    }

    func open(_ header: String, data: [UInt8] = []) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: try writeFile(safetensorsBytes(header: header, data: data), "claim.safetensors", in: dir))
    }

    func testTensorClaimingTwoToTheFortyElementsIsRefusedOnOpen() throws {
        // 2^40 F32 elements with matching offsets (4 TiB) in a file of a few bytes.
        let n = 1 << 20
        let header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[\(n),\(n)],\"data_offsets\":[0,\(4 * n * n)]}}"
        let error = assertThrowsCheckpointError("tensorTooLarge") { try open(header) }
        XCTAssertEqual(error, .tensorTooLarge(path: dir.appendingPathComponent("claim.safetensors").path, tensor: "w",
                                              shape: [n, n], limit: SafeTensorsFile.maximumTensorElements))
        XCTAssertTrue(error?.errorDescription?.contains("1099511627776 elements") ?? false, "\(String(describing: error))")
        // Any dtype: a BF16 or U8 claim is counted in elements too.
        for dtype in ["BF16", "U8"] {
            let h = "{\"w\":{\"dtype\":\"\(dtype)\",\"shape\":[\(n),\(n)],\"data_offsets\":[0,8]}}"
            assertThrowsCheckpointError("tensorTooLarge") { try open(h) }
        }
    }

    func testTheLimitItselfPassesTheElementCheck() throws {
        // Exactly the limit is not "too large": it fails later, on its offsets.
        let n = SafeTensorsFile.maximumTensorElements
        assertThrowsCheckpointError("sizeMismatch") {
            try open("{\"w\":{\"dtype\":\"U8\",\"shape\":[\(n)],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0])
        }
        assertThrowsCheckpointError("tensorTooLarge") {
            try open("{\"w\":{\"dtype\":\"U8\",\"shape\":[\(n + 1)],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0])
        }
    }

    func testShapesWhoseProductOverflowsAndOffsetsPastTheFile() throws {
        assertThrowsCheckpointError("invalidShape") {
            try open("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
                     data: [0, 0, 0, 0])
        }
        assertThrowsCheckpointError("dataOutOfBounds") {
            try open("{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000],\"data_offsets\":[0,4000000]}}", data: [0, 0, 0, 0])
        }
    }

    func testSmallFileOfGigabytesIsRefusedFromItsSize() throws {
        let url = dir.appendingPathComponent("config.json")
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data("{}".utf8)))
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: 3 << 30)  // a hole: no disk space, no time
        try handle.close()
        XCTAssertThrowsError(try readSmallFile(url)) { error in
            XCTAssertEqual(error as? SmallFileError, .tooLarge(path: url.path, size: 3 << 30, limit: maximumSmallFileBytes))
        }
        // At the limit it is read.
        let handle2 = try FileHandle(forWritingTo: url)
        try handle2.truncate(atOffset: UInt64(maximumSmallFileBytes))
        try handle2.close()
        XCTAssertEqual(try readSmallFile(url).count, maximumSmallFileBytes)
        XCTAssertThrowsError(try readSmallFile(url, limit: 10)) { error in
            XCTAssertEqual(error as? SmallFileError, .tooLarge(path: url.path, size: maximumSmallFileBytes, limit: 10))
        }
        XCTAssertThrowsError(try readSmallFile(dir)) { error in
            XCTAssertEqual(error as? SmallFileError, .cannotRead(path: dir.path, reason: "it is a folder"))
        }
    }
}
