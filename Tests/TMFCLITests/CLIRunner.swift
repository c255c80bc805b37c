import Foundation
import XCTest
import TMFTestSupport

/// What one run of the `tmf` binary did.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String
    /// Whether a signal ended it (then `status` is the signal's number).
    var signaled = false

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

/// Open MPI's `mpirun`, when installed.
let mpirunExecutable: URL? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].map(URL.init(fileURLWithPath:))
    .first { FileManager.default.isExecutableFile(atPath: $0.path) }

/// The repository root (the working directory of every run).
let packageRoot = fixturesURL.deletingLastPathComponent()

/// Runs `tmf arguments...` in `directory` (default: the package root) and collects its exit status and output (through
/// files, so a large output never blocks on a full pipe).
func runTMF(_ arguments: [String], in directory: URL? = nil, ranks: Int = 0, file: StaticString = #filePath, line: UInt = #line) throws -> CLIResult {
    let result = try BackgroundTMF(arguments, in: directory, ranks: ranks, file: file, line: line).finish()
    XCTAssertFalse(result.signaled, "tmf \(arguments) ended by signal \(result.status)", file: file, line: line)
    return result
}

/// A `tmf` run started in the background: signal it, wait for its files to grow, then `finish()`
/// to collect what it did (as `runTMF` does).
final class BackgroundTMF {
    let process = Process()
    private let scratch: URL
    private let out: FileHandle, err: FileHandle

    /// - Parameter ranks: when positive, `tmf` runs under `mpirun -np ranks` (as root, with
    ///   Open MPI's container settings; `mpirunExecutable` must exist).
    /// - Parameter launcher: a command that starts `tmf` (its path is appended, then
    ///   `arguments`), e.g. `ip netns exec NS mpirun --host …`; Open MPI's container setting is
    ///   added to its environment.
    init(_ arguments: [String], in directory: URL? = nil, ranks: Int = 0, launcher: [String] = [],
         file: StaticString = #filePath, line: UInt = #line) throws {
        guard let executable = tmfExecutable else {
            XCTFail("no built tmf executable next to the tests; run `swift build --build-tests` first", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        let fm = FileManager.default
        scratch = fm.temporaryDirectory.appendingPathComponent("tmf-cli-\(UUID().uuidString)")
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        _ = fm.createFile(atPath: scratch.appendingPathComponent("stdout").path, contents: nil)
        _ = fm.createFile(atPath: scratch.appendingPathComponent("stderr").path, contents: nil)
        out = try FileHandle(forWritingTo: scratch.appendingPathComponent("stdout"))
        err = try FileHandle(forWritingTo: scratch.appendingPathComponent("stderr"))
        let launcher = ranks > 0
            ? [(mpirunExecutable ?? URL(fileURLWithPath: "/usr/bin/mpirun")).path, "--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)"]
            : launcher
        if !launcher.isEmpty {
            process.executableURL = URL(fileURLWithPath: launcher[0])
            process.arguments = Array(launcher.dropFirst()) + [executable.path] + arguments
            var environment = ProcessInfo.processInfo.environment
            environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"  // fails in containers
            process.environment = environment
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        process.currentDirectoryURL = directory ?? packageRoot
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
        try? FileManager.default.removeItem(at: scratch)
    }

    /// Waits until `file` has at least `count` lines; false when the run ended first or
    /// `timeout` seconds passed.
    @discardableResult
    func waitForLines(_ count: Int, in file: URL, timeout: TimeInterval = 300) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let text = try? String(contentsOf: file, encoding: .utf8), text.split(separator: "\n").count >= count { return true }
            if !process.isRunning { return false }
            usleep(20_000)
        }
        return false
    }

    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the run to end and collects its status and output.
    func finish() throws -> CLIResult {
        process.waitUntilExit()
        try out.close()
        try err.close()
        return CLIResult(status: process.terminationStatus,
                         stdout: String(decoding: try Data(contentsOf: scratch.appendingPathComponent("stdout")), as: UTF8.self),
                         stderr: String(decoding: try Data(contentsOf: scratch.appendingPathComponent("stderr")), as: UTF8.self),
                         signaled: process.terminationReason == .uncaughtSignal)
    }
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

/// Runs a tool other than tmf (mount, ip, tmf-fuzz) to its end: its exit status and its stdout and
/// stderr together, trimmed.
func runTool(_ tool: String, _ arguments: [String], in directory: URL? = nil,
             environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: tool)
    p.arguments = arguments
    if let directory { p.currentDirectoryURL = directory }
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
}
