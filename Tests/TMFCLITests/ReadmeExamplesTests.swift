import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// Every line of the README's usage block runs as printed, in order, in a scratch folder: its
/// placeholders mapped to `Fixtures/` (LLAMA_DIR, CLIP_DIR) or to files the test writes
/// (RECBOLE_DIR, requests.jsonl, a.png), and its step counts made small (the only edits).
final class ReadmeExamplesTests: XCTestCase {
    /// Splits a shell line into words (double and single quotes, no expansion) and drops a
    /// trailing `# comment`.
    static func words(_ line: String) -> [String] {
        var out: [String] = [], current = "", quote: Character?, inWord = false
        for c in line {
            if let q = quote {
                if c == q { quote = nil } else { current.append(c) }
            } else if c == "\"" || c == "'" {
                quote = c; inWord = true
            } else if c == "#" && !inWord {
                break
            } else if c == " " {
                if inWord { out.append(current); current = ""; inWord = false }
            } else {
                current.append(c); inWord = true
            }
        }
        if inWord { out.append(current) }
        return out
    }

    /// The commands of the first ```sh block after "## Using it".
    static func usageCommands() throws -> [[String]] {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let parts = readme.components(separatedBy: "## Using it")
        guard parts.count > 1 else { throw CocoaError(.fileReadCorruptFile) }
        let block = parts[1].components(separatedBy: "```sh\n")[1].components(separatedBy: "```")[0]
        return block.split(separator: "\n").map { words(String($0)) }.filter { !$0.isEmpty }
    }

    /// The test's only edits to a printed command: placeholders, and small budgets.
    static func adapted(_ command: [String], placeholders: [String: String]) -> [String] {
        var w = command.dropFirst().map { placeholders[$0] ?? $0 }
        func set(_ flag: String, _ value: String) {
            if let i = w.firstIndex(of: flag), i + 1 < w.count { w[i + 1] = value } else { w += [flag, value] }
        }
        switch w.first {
        case "synth":
            set("--users", "40"); set("--items", "40")
        case "train":
            set("--steps", "2"); set("--graph-epochs", "1"); set("--eval-limit", "2"); set("--batch-size", "2")
            if !w.contains("--llm") { set("--pretrain-steps", "10"); set("--pretrain-vocab", "500") }
            w += ["--threads", "2", "--quiet"]
        case "pretrain":
            set("--steps", "3"); set("--vocab", "500"); set("--seq-len", "32"); set("--batch-size", "2"); w.append("--quiet")
        case "eval":
            if !w.contains("--data") { set("--limit", "4") }
            w.append("--quiet")
        case "generate":
            set("--max-tokens", "4")
        case "bench":
            set("--repeats", "1"); set("--batch", "2")
        default:
            break
        }
        return w
    }

    func testUsageBlockRunsAsPrinted() throws {
        let commands = try Self.usageCommands()
        XCTAssertGreaterThanOrEqual(commands.count, 12, "the usage block")
        let work = try temporaryFolder(self)
        let recbole = work.appendingPathComponent("recbole-files")
        try FileManager.default.createDirectory(at: recbole, withIntermediateDirectories: true)
        try AnyDatasetCommandTests.writeRecBole(to: recbole)
        try FileManager.default.copyItem(at: fixturesURL.appendingPathComponent("shop/images/I000001.png"),
                                         to: work.appendingPathComponent("a.png"))
        try "{\"history\": \"view:I000003,purchase:I000007\"}\n{\"user\": \"U02\", \"top\": 2}\n"
            .write(to: work.appendingPathComponent("requests.jsonl"), atomically: true, encoding: .utf8)
        let placeholders = [
            "LLAMA_DIR": fixturesURL.appendingPathComponent("models/tiny-llama").path,
            "CLIP_DIR": fixturesURL.appendingPathComponent("models/tiny-clip").path,
            "RECBOLE_DIR": recbole.path,
        ]
        for command in commands {
            XCTAssertEqual(command.first, "tmf", "\(command)")
            let arguments = Self.adapted(command, placeholders: placeholders)
            let r = try runTMF(arguments, in: work)
            XCTAssertEqual(r.status, 0, "README: \(command.joined(separator: " ")) → tmf \(arguments.joined(separator: " ")): \(r.stderr)")
            if command.count > 1 && command[1] == "recommend" {
                XCTAssertFalse(r.stdout.isEmpty, "recommend always answers: \(command)")
            }
            if command.count > 1 && command[1] == "bench" {
                // tmf restarts itself on OpenBLAS's faster kernels when OpenBLAS fell back to its
                // generic ones (this test process has whatever OpenBLAS chose by itself), and with
                // OpenBLAS's workers spinning briefly where our bf16 kernels share the cores.
                let expected = BLAS.fasterCoreType ?? BLAS.coreName
                let timeout = ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"] ?? BLAS.workerSpinTimeout
                let spin = timeout.map { "2^\($0) cycles (OPENBLAS_THREAD_TIMEOUT)" } ?? "OpenBLAS's default time"
                XCTAssertTrue(r.stdout.hasPrefix("OpenBLAS kernels: \(expected); its workers spin \(spin) after a call\n"), r.stdout)
                if command.count > 2 && command[2] == "clip" {
                    // The work per image of the tiny CLIP is printed to three significant figures, not rounded to 0.0.
                    XCTAssertFalse(r.stdout.contains("executed: 0.0 GFLOP") || r.stdout.contains(", 0.0 per text"), r.stdout)
                    XCTAssertTrue(r.stdout.contains(" GFLOP per image, "), r.stdout)
                }
            }
        }
    }

    func testShellWords() {
        XCTAssertEqual(Self.words("tmf recommend m --history \"view:I1,cart:I2\" --top 3   # a comment"),
                       ["tmf", "recommend", "m", "--history", "view:I1,cart:I2", "--top", "3"])
        XCTAssertEqual(Self.words("tmf generate --prompt \"a # b\""), ["tmf", "generate", "--prompt", "a # b"])
    }
}
