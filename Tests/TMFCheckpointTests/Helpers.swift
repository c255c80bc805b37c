import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor
import TMFTestSupport

/// `Fixtures/safetensors/`.
let safetensorsFixtures = fixturesURL.appendingPathComponent("safetensors")

/// The expected values Python wrote next to a fixture (see Scripts/make_safetensors_fixtures.py).
struct ExpectedFile: Decodable {
    struct Entry: Decodable {
        var dtype: String
        var shape: [Int]
        var source_bits: [UInt32]?
        var expected_bits: [UInt32]?
        var int_values: [Int]?
    }
    var file: String
    var metadata: [[String]]?
    var tensors: [String: Entry]

    static func load(_ name: String) throws -> ExpectedFile {
        let data = try Data(contentsOf: safetensorsFixtures.appendingPathComponent(name + ".json"))
        return try JSONDecoder().decode(ExpectedFile.self, from: data)
    }

    var metadataEntries: [(key: String, value: String)]? {
        metadata?.map { ($0[0], $0[1]) }
    }
}

/// A fresh temporary directory, removed at the end of the test.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("tmf-checkpoint-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// The enum case name of a `CheckpointError` (e.g. "fileTooShort").
func caseName(_ error: Error) -> String {
    guard let e = error as? CheckpointError else { return "not a CheckpointError: \(error)" }
    return Mirror(reflecting: e).children.first?.label ?? "\(e)"
}

/// Asserts that `body` throws a `CheckpointError` of case `name`; returns the error.
@discardableResult
func assertThrowsCheckpointError<T>(_ name: String, file: StaticString = #filePath, line: UInt = #line,
                                    _ body: () throws -> T) -> CheckpointError? {
    do {
        _ = try body()
        XCTFail("expected CheckpointError.\(name), nothing was thrown", file: file, line: line)
        return nil
    } catch {
        XCTAssertEqual(caseName(error), name, "\(error)", file: file, line: line)
        let message = (error as? LocalizedError)?.errorDescription ?? ""
        XCTAssertFalse(message.isEmpty, file: file, line: line)
        return error as? CheckpointError
    }
}

/// Float32 bit patterns of `t`'s elements.
func bits(_ t: Tensor) -> [UInt32] { t.scalars.map(\.bitPattern) }

/// A tensor holding the float32 values with bit patterns `bits`.
func tensor(bits: [UInt32], shape: [Int]) -> Tensor {
    Tensor(bits.map { Float(bitPattern: $0) }, shape: shape)
}

/// The bytes of a safetensors file with the given header text, data and optional length override.
func safetensorsBytes(header: String, data: [UInt8] = [], claimedLength: UInt64? = nil) -> [UInt8] {
    var out: [UInt8] = []
    let h = Array(header.utf8)
    withUnsafeBytes(of: (claimedLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    out.append(contentsOf: h)
    out.append(contentsOf: data)
    return out
}

/// Writes `bytes` to `name` in `dir` and returns its URL.
func writeFile(_ bytes: [UInt8], _ name: String, in dir: URL) throws -> URL {
    let url = dir.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    return url
}
