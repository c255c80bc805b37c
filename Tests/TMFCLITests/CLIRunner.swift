import Foundation
import XCTest
import TMFTestSupport

/// What one run of the `tmf` binary did.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// The non-empty lines of standard error.
    var stderrLines: [String] { stderr.split(separator: "\n", omittingEmptySubsequences: true).map(String.init) }
}

/// The built `tmf` executable: next to the test bundle (SwiftPM puts every product of a build
/// configuration in one folder), else `.build/debug/tmf` in the package.
let tmfExecutable: URL? = {
    let fm = FileManager.default
    var folders: [URL] = []
    if let url = Bundle.main.executableURL { folders.append(url.deletingLastPathComponent()) }
    folders += Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
    folders.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    folders.append(fixturesURL.deletingLastPathComponent().appendingPathComponent(".build/debug"))
    for folder in folders {
        let candidate = folder.appendingPathComponent("tmf")
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
           fm.isExecutableFile(atPath: candidate.path) {
            return candidate
        }
    }
    return nil
}()

/// The repository root (the working directory of every run).
let packageRoot = fixturesURL.deletingLastPathComponent()

/// Runs `tmf arguments...` in `directory` (default: the package root) and collects its exit status and output (through
/// files, so a large output never blocks on a full pipe).
func runTMF(_ arguments: [String], in directory: URL? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> CLIResult {
    guard let executable = tmfExecutable else {
        XCTFail("no built tmf executable next to the tests; run `swift build --build-tests` first", file: file, line: line)
        throw CocoaError(.fileNoSuchFile)
    }
    let fm = FileManager.default
    let scratch = fm.temporaryDirectory.appendingPathComponent("tmf-cli-\(UUID().uuidString)")
    try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
    defer { try? fm.removeItem(at: scratch) }
    let outURL = scratch.appendingPathComponent("stdout"), errURL = scratch.appendingPathComponent("stderr")
    _ = fm.createFile(atPath: outURL.path, contents: nil)
    _ = fm.createFile(atPath: errURL.path, contents: nil)
    let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    process.currentDirectoryURL = directory ?? packageRoot
    process.standardOutput = out
    process.standardError = err
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try out.close()
    try err.close()
    XCTAssertEqual(process.terminationReason, .exit, "tmf \(arguments) ended by a signal", file: file, line: line)
    return CLIResult(status: process.terminationStatus,
                     stdout: String(decoding: try Data(contentsOf: outURL), as: UTF8.self),
                     stderr: String(decoding: try Data(contentsOf: errURL), as: UTF8.self))
}

/// Asserts a failed run: non-zero status, nothing on stdout, and either exactly one stderr line
/// starting with `tmf:` or (`argumentError`) the argument parser's `Error:` first line.
func assertFailure(_ r: CLIResult, argumentError: Bool = false, mentions: String? = nil,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertNotEqual(r.status, 0, "exit status", file: file, line: line)
    XCTAssertEqual(r.stdout, "", "stdout must be empty on failure", file: file, line: line)
    let lines = r.stderrLines
    if argumentError {
        XCTAssertTrue(lines.first?.hasPrefix("Error:") == true, "stderr: \(r.stderr)", file: file, line: line)
    } else {
        XCTAssertEqual(lines.count, 1, "exactly one stderr line, got: \(r.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("tmf: ") == true, "stderr: \(r.stderr)", file: file, line: line)
    }
    if let mentions {
        XCTAssertTrue(r.stderr.contains(mentions), "stderr should mention \(mentions): \(r.stderr)", file: file, line: line)
    }
}

/// A fresh temporary folder, removed by the test's teardown.
func temporaryFolder(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-cli-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}
