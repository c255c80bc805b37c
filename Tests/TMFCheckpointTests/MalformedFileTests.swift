import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// Each malformed file is refused with its own error case; nothing crashes.
final class MalformedFileTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try makeTemporaryDirectory(self)
    }

    /// Opens `bytes` as a file and asserts the error case; returns the error.
    @discardableResult
    func refuse(_ bytes: [UInt8], _ expectedCase: String, file: StaticString = #filePath,
                line: UInt = #line) throws -> CheckpointError? {
        let url = try writeFile(bytes, "bad.safetensors", in: dir)
        let error = assertThrowsCheckpointError(expectedCase, file: file, line: line) {
            try SafeTensorsFile(contentsOf: url)
        }
        if let message = error?.errorDescription {
            XCTAssertTrue(message.contains("bad.safetensors"), message, file: file, line: line)
        }
        return error
    }

    /// A one-tensor header with the given JSON fields for tensor "w".
    func entry(_ fields: String) -> String { "{\"w\":{\(fields)}}" }

    func testMissingFile() {
        assertThrowsCheckpointError("cannotOpen") {
            try SafeTensorsFile(contentsOf: dir.appendingPathComponent("absent.safetensors"))
        }
        assertThrowsCheckpointError("cannotOpen") { try SafeTensorsFile(contentsOf: dir) }
    }

    func testFileShorterThanEightBytes() throws {
        try refuse([], "fileTooShort")
        try refuse([1, 0, 0, 0, 0], "fileTooShort")
    }

    func testHeaderLengthPastEndOfFile() throws {
        try refuse(safetensorsBytes(header: "{}", claimedLength: 100), "headerPastEndOfFile")
    }

    func testAbsurdHeaderLengthIsRefusedWithoutAllocating() throws {
        try refuse(safetensorsBytes(header: "{}", claimedLength: 10_000_000_000), "headerTooLarge")
        try refuse(safetensorsBytes(header: "{}", claimedLength: UInt64.max), "headerTooLarge")
        try refuse(safetensorsBytes(header: "{}", claimedLength: UInt64(SafeTensorsFile.maximumHeaderSize) + 1),
                   "headerTooLarge")
    }

    func testHeaderNotUTF8() throws {
        var bytes = safetensorsBytes(header: "{\"a\":1}")
        bytes[10] = 0xFF
        let e = try refuse(bytes, "invalidHeader")
        XCTAssertTrue(e?.errorDescription?.contains("UTF-8") ?? false)
        // Overlong encoding of "/" and a lone surrogate are not UTF-8 either.
        var overlong = safetensorsBytes(header: "{\"ab\":1}")
        overlong[10] = 0xC0; overlong[11] = 0xAF
        try refuse(overlong, "invalidHeader")
        var surrogate = safetensorsBytes(header: "{\"abc\":1}")
        surrogate[10] = 0xED; surrogate[11] = 0xA0; surrogate[12] = 0x80
        try refuse(surrogate, "invalidHeader")
    }

    func testHeaderNotJSONObject() throws {
        try refuse(safetensorsBytes(header: "{\"w\": "), "invalidHeader")
        try refuse(safetensorsBytes(header: "[1, 2]"), "invalidHeader")
        try refuse(safetensorsBytes(header: "{\"w\": 3}"), "invalidHeader")
        try refuse(safetensorsBytes(header: "{\"__metadata__\": {\"k\": 1}}"), "invalidHeader")
        try refuse(safetensorsBytes(header: "{} trailing"), "invalidHeader")
        try refuse(safetensorsBytes(header: entry("\"shape\":[],\"data_offsets\":[0,4]")), "invalidHeader")
    }

    func testUnknownDType() throws {
        let e = try refuse(safetensorsBytes(header: entry("\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]"),
                                            data: [0, 0, 0, 0]), "unknownDType")
        XCTAssertTrue(e?.errorDescription?.contains("F17") ?? false)
        XCTAssertTrue(e?.errorDescription?.contains("'w'") ?? false)
    }

    func testKnownButNonFloatDTypeCannotConvert() throws {
        for (dtype, bytes) in [("I32", 4), ("BOOL", 1), ("F8_E4M3", 1), ("U8", 1), ("I64", 8)] {
            let url = try writeFile(safetensorsBytes(
                header: entry("\"dtype\":\"\(dtype)\",\"shape\":[2],\"data_offsets\":[0,\(2 * bytes)]"),
                data: [UInt8](repeating: 1, count: 2 * bytes)), "\(dtype).safetensors", in: dir)
            let file = try SafeTensorsFile(contentsOf: url)
            XCTAssertEqual(try file.info(named: "w").dtype.rawValue, dtype)
            assertThrowsCheckpointError("cannotConvertToFloat32") { try file.tensor(named: "w") }
            XCTAssertEqual(try file.rawBytes(named: "w").count, 2 * bytes)
        }
    }

    func testShapeNotAListOfNonNegativeInts() throws {
        for shape in ["[-1]", "[1.5]", "\"abc\"", "[\"2\"]", "[2, null]", "3", "[1e2]",
                      "[4294967296, 4294967296, 4294967296]"] {
            try refuse(safetensorsBytes(header: entry("\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,4]"),
                                        data: [0, 0, 0, 0]), "invalidShape")
        }
        try refuse(safetensorsBytes(header: entry("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), data: [0, 0, 0, 0]),
                   "invalidShape")
    }

    func testDataOffsetsNotBeginEnd() throws {
        for offsets in ["[0]", "[0, 4, 8]", "[8, 4]", "[-4, 0]", "\"0-4\"", "[0.0, 4.0]"] {
            try refuse(safetensorsBytes(header: entry("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\(offsets)"),
                                        data: [UInt8](repeating: 0, count: 8)), "invalidDataOffsets")
        }
    }

    func testOffsetsOutsideTheDataRegion() throws {
        let e = try refuse(safetensorsBytes(header: entry("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]"),
                                            data: [UInt8](repeating: 0, count: 8)), "dataOutOfBounds")
        XCTAssertTrue(e?.errorDescription?.contains("'w'") ?? false)
    }

    func testOverlappingTensors() throws {
        let header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
            + "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}"
        let e = try refuse(safetensorsBytes(header: header, data: [UInt8](repeating: 0, count: 24)), "overlappingTensors")
        XCTAssertTrue(e?.errorDescription?.contains("'a'") ?? false)
        XCTAssertTrue(e?.errorDescription?.contains("'b'") ?? false)
    }

    func testShapeTimesDTypeSizeDisagreesWithOffsets() throws {
        try refuse(safetensorsBytes(header: entry("\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]"),
                                    data: [UInt8](repeating: 0, count: 16)), "sizeMismatch")
        try refuse(safetensorsBytes(header: entry("\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]"),
                                    data: [UInt8](repeating: 0, count: 4)), "sizeMismatch")
        // Packed 4-bit floats must fill whole bytes.
        try refuse(safetensorsBytes(header: entry("\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,1]"),
                                    data: [0]), "sizeMismatch")
    }

    func testTruncatedFileWithValidHeader() throws {
        let original = Array(try Data(contentsOf: safetensorsFixtures.appendingPathComponent("f32.safetensors")))
        let e = try refuse(Array(original.dropLast(10)), "dataOutOfBounds")
        XCTAssertTrue(e?.errorDescription?.contains("truncated") ?? false)
        // Cut inside the header too.
        try refuse(Array(original.prefix(40)), "headerPastEndOfFile")
    }

    func testEmptyAndZeroSizedTensorsAreFine() throws {
        let header = "{\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
            + "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}"
        let url = try writeFile(safetensorsBytes(header: header, data: [0, 0, 0x80, 0x3F]), "ok.safetensors", in: dir)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(try file.tensor(named: "e").shape, [0, 5])
        XCTAssertEqual(try file.tensor(named: "s").scalars, [1])
    }
}
