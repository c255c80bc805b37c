import ArgumentParser
import Foundation
import TMFData
import TMFTensor

/// Runs a command body, turning any library error into one `tmf: …` line on stderr and exit
/// status 1 (argument errors keep the parser's own message).
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch let e as ValidationError {
        throw e
    } catch {
        printError("tmf: \(error.localizedDescription)")
        throw ExitCode(1)
    }
}

/// The repository's bundled defaults (`Fixtures/`): next to the working directory, or where
/// this binary was built from.
enum BundledDefaults {
    static var fixtures: URL {
        let cwd = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("Fixtures")
        if FileManager.default.fileExists(atPath: cwd.appendingPathComponent("shop").path) { return cwd }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fixtures")
    }
    static var shop: URL { fixtures.appendingPathComponent("shop") }
    static var llm: URL { fixtures.appendingPathComponent("models/tiny-llama") }
    static var clip: URL { fixtures.appendingPathComponent("models/tiny-clip") }

    /// The content fingerprint of the bundled shop (the data the bundled tiny Llama was made on);
    /// "" when the fixtures are not there.
    static func shopFingerprint() throws -> String {
        guard FileManager.default.fileExists(atPath: shop.appendingPathComponent("items.jsonl").path) else { return "" }
        return try Dataset.load(from: shop, options: LoadOptions(checkImages: false)).fingerprint
    }
}

/// Progress output: a redrawn bar on a terminal, plain periodic lines otherwise, nothing with
/// `--quiet`. Goes to stderr so stdout stays the command's result.
final class Progress: @unchecked Sendable {
    let quiet: Bool
    let tty = isatty(2) != 0
    var lastLine = DispatchTime.now().uptimeNanoseconds
    var open = false

    init(quiet: Bool) { self.quiet = quiet }

    /// A progress update of a long task; throttled on a pipe (one line every few seconds).
    func update(_ label: String, _ done: Int, _ total: Int, _ extra: String = "") {
        guard !quiet else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        if tty {
            let width = 30, filled = total > 0 ? width * done / total : 0
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total) \(extra)\u{1B}[K".utf8))
            open = true
            if done >= total { finish() }
        } else if done >= total || now - lastLine > 5_000_000_000 {
            lastLine = now
            printError("\(label): \(done)/\(total) \(extra)")
        }
    }

    /// A line of its own.
    func line(_ s: String) {
        guard !quiet else { return }
        finish()
        printError(s)
    }

    func finish() {
        if open { FileHandle.standardError.write(Data("\n".utf8)); open = false }
    }
}

/// Ctrl-C: the first press asks the running task to stop at the next safe point; a second
/// press exits at once.
final class InterruptFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flagged = false
    private var source: DispatchSourceSignal?

    func install() {
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        s.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock()
            let second = self.flagged
            self.flagged = true
            self.lock.unlock()
            if second { exit(130) }
            printError("tmf: stopping after the current step (Ctrl-C again to quit now)")
        }
        s.resume()
        source = s
    }

    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flagged }
}

extension ComputeOptions {
    /// Applies `--threads` (default all cores) to OpenBLAS and the kernels.
    func apply() {
        BLAS.setThreads(threads ?? ProcessInfo.processInfo.activeProcessorCount)
    }
}
