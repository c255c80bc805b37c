import ArgumentParser
import Foundation
import TMFData
import TMFTensor
import TMFTrainer

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
        printError("tmf: \(rankPrefix)\(describe(error))")
        throw ExitCode(1)
    }
}

/// "rank N: " on the ranks other than 0 of an MPI job (whose lines would otherwise look like
/// rank 0's), else "".
var rankPrefix: String {
    let group = ProcessGroup.world
    return group.isDistributed && !group.isRoot ? "rank \(group.rank): " : ""
}

/// One line for an error. Foundation's file-system errors ("The operation could not be completed.
/// There isn't enough space.") say neither which file nor what the system said: those become
/// "cannot write PATH: No space left on device (errno 28)" when the error carries its path, and
/// at least name the system's reason otherwise.
func describe(_ error: Error) -> String {
    let ns = error as NSError
    guard ns.domain == NSCocoaErrorDomain || ns.domain == NSPOSIXErrorDomain else { return flat(error.localizedDescription) }
    var posix: Int32? = ns.domain == NSPOSIXErrorDomain ? Int32(ns.code) : nil
    if posix == nil, let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        posix = Int32(underlying.code)
    }
    let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    if posix == nil, ns.domain == NSCocoaErrorDomain {
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileWriteOutOfSpace: posix = ENOSPC
        case .fileWriteVolumeReadOnly: posix = EROFS
        case .fileWriteNoPermission, .fileReadNoPermission: posix = EACCES
        case .fileNoSuchFile, .fileReadNoSuchFile: posix = ENOENT
        default: break
        }
    }
    let reason = posix.map { String(cString: strerror($0)) + " (errno \($0))" } ?? flat(error.localizedDescription)
    guard let path else { return posix == nil ? reason : "a file operation failed: " + reason }
    let code = CocoaError.Code(rawValue: ns.code)
    let verb = ns.domain != NSCocoaErrorDomain ? "cannot access"
        : (CocoaError.Code.fileWriteUnknown.rawValue...CocoaError.Code.fileWriteVolumeReadOnly.rawValue).contains(code.rawValue) ? "cannot write"
        : (CocoaError.Code.fileReadUnknown.rawValue...CocoaError.Code.fileReadUnknownStringEncoding.rawValue + 10).contains(code.rawValue) ? "cannot read"
        : "cannot access"
    return "\(verb) \(path): \(reason)"
}

/// `s` on one line (line breaks become spaces).
private func flat(_ s: String) -> String {
    s.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
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
            writeToStandardError("\r\(label) [\(bar)] \(done)/\(total) \(extra)\u{1B}[K")
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
        if open { writeToStandardError("\n"); open = false }
    }
}

/// Ctrl-C (SIGINT), SIGTERM and SIGHUP: the first asks the running task to stop at the next
/// safe point (`isSet`); a second, of any of the three, exits at once with status 128 + its
/// number. That exit tears no file: tmf writes every file under a temporary name and renames it
/// into place (see `ModelFolderLock.removeStaleTemporaries` for what an exit mid-write leaves).
/// A signal ignored when tmf started (`nohup`, a shell's background job) stays ignored.
final class InterruptFlag: @unchecked Sendable {
    /// The signals handled and how the messages name them.
    static let signals: [(number: Int32, name: String)] = [(SIGINT, "Ctrl-C"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")]

    private let lock = NSLock()
    private var flagged = false
    private var sources: [DispatchSourceSignal] = []

    func install() {
        // A closed stderr pipe (`tmf train | tee log` after its terminal hung up) must not kill
        // the run between checkpoints: writes to it fail quietly instead (`writeToStandardError`).
        signal(SIGPIPE, SIG_IGN)
        for (number, name) in Self.signals {
            let previous = signal(number, SIG_IGN)
            if unsafeBitCast(previous, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            let index = sources.count
            source.setEventHandler { [weak self] in
                // `data`: how many of this signal arrived since the last call (they coalesce).
                guard let self else { return }
                self.received(number, name: name, count: Int(self.sources[index].data))
            }
            sources.append(source)
        }
        for source in sources { source.resume() }
    }

    private func received(_ number: Int32, name: String, count: Int) {
        lock.lock()
        let again = flagged || count > 1
        flagged = true
        lock.unlock()
        // Under mpirun every rank gets the signal; rank 0 speaks for the job.
        let speaks = ProcessGroup.world.isRoot
        if again {
            if speaks { writeToStandardError("tmf: \(name) again: quitting now without saving (the last checkpoint, if any, is kept)\n") }
            // _exit, not exit: no atexit handlers or static destructors run under the busy threads.
            _exit(128 + number)
        }
        if speaks { writeToStandardError(number == SIGINT
            ? "tmf: stopping after the current step (Ctrl-C again to quit now)\n"
            : "tmf: \(name) received: stopping after the current step (a second signal quits now)\n") }
    }

    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flagged }
}

/// `tmf train`'s claim on its model folder: an advisory exclusive `flock` on the folder itself,
/// so a second `tmf train` on it is refused while this one runs. No lock file: it works in a
/// read-only folder, and the kernel drops the lock when the process ends, however it ends.
/// Readers (`tmf eval`, `tmf recommend`) take no lock and are never blocked.
final class ModelFolderLock {
    /// The folder as the user named it (`--out`), for messages.
    let name: String
    let url: URL
    /// Why the folder could not be locked when its file system has no locks (nil: locked).
    private(set) var unlockedReason: String?
    private var descriptor: Int32
    /// Whether this lock created the folder (then `release` removes it if it is still empty).
    private let created: Bool

    /// Creates `folder` (and its parents) if it does not exist, then locks it.
    /// - Throws: `ModelFolderLockError` when another process holds the lock, or the folder
    ///   cannot be made or opened.
    init(folder: URL, name: String) throws {
        self.name = name
        url = folder
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        let existed = fm.fileExists(atPath: folder.path, isDirectory: &isDirectory)
        if existed && !isDirectory.boolValue { throw ModelFolderLockError.notAFolder(name) }
        if !existed {
            do { try fm.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
                throw ModelFolderLockError.cannotCreate(name, reason: error.localizedDescription)
            }
        }
        created = !existed
        descriptor = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if descriptor < 0 { throw ModelFolderLockError.cannotOpen(name, reason: String(cString: strerror(errno))) }
        var status: Int32
        repeat { status = flock(descriptor, LOCK_EX | LOCK_NB) } while status != 0 && errno == EINTR
        if status != 0 {
            let code = errno
            if code == EWOULDBLOCK {
                close(descriptor)
                throw ModelFolderLockError.busy(name)
            }
            unlockedReason = String(cString: strerror(code))  // e.g. ENOLCK: a file system without locks
        }
    }

    /// Removes what an earlier run killed mid-write left in the folder: tmf's temporary files
    /// (`.NAME.tmp-PID` and `.NAME.tmp-PID-N`) whose process is gone. Safe only under the lock.
    /// Temporary folders (`checkpoint.new`, `llm.tmp`) are replaced by the stage that writes them.
    func removeStaleTemporaries() {
        guard unlockedReason == nil,
              let names = try? FileManager.default.contentsOfDirectory(atPath: url.path) else { return }
        for file in names where file.hasPrefix(".") {
            guard let marker = file.range(of: ".tmp-", options: .backwards) else { continue }
            let fields = file[marker.upperBound...].split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(fields.count), fields.allSatisfy({ !$0.isEmpty && $0.allSatisfy { "0"..."9" ~= $0 } }),
                  let pid = pid_t(fields[0]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                let path = url.appendingPathComponent(file).path
                var info = stat()
                if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG { unlink(path) }
            }
        }
    }

    /// Drops the lock (and the folder, if this lock made it and nothing was written in it).
    func release() {
        guard descriptor >= 0 else { return }
        if created { rmdir(url.path) }
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}

/// Why `tmf train` cannot take its model folder.
enum ModelFolderLockError: LocalizedError {
    case busy(String)
    case notAFolder(String)
    case cannotCreate(String, reason: String)
    case cannotOpen(String, reason: String)

    var errorDescription: String? {
        switch self {
        case let .busy(name):
            "another tmf train is writing the model folder \(name); wait for it to finish (or stop it), or choose another --out"
        case let .notAFolder(name):
            "\(name) is a file, not a model folder; choose another --out"
        case let .cannotCreate(name, reason):
            "cannot create the model folder \(name): \(reason)"
        case let .cannotOpen(name, reason):
            "cannot open the model folder \(name) to lock it: \(reason)"
        }
    }
}

/// Writes `text` to standard error with write(2), ignoring failures: after a hang-up (SIGHUP),
/// or into a closed pipe, a message must not crash the run (`FileHandle.write` traps on errors).
func writeToStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    bytes.withUnsafeMutableBytes { buffer in
        var done = 0
        while done < buffer.count {
            let n = posixWrite(2, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}

/// `write(2)`, named apart from Foundation's `write` methods.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}

extension ComputeOptions {
    /// `--threads`, clamped to the machine's cores (more only slows the work); by default all
    /// cores, shared out among the ranks of an MPI job on this host.
    var effectiveThreads: Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return min(threads ?? max(1, cores / ProcessGroup.localRanks), cores)
    }

    /// Applies `effectiveThreads` to OpenBLAS and the kernels.
    func apply() {
        BLAS.setThreads(effectiveThreads)
    }
}

/// The largest sizes the command line accepts (README "Limits"). A value past one is refused
/// with one `tmf:` line before any work: it cannot be meant, and honouring it would allocate
/// without bound or overflow.
enum CommandLimits {
    /// `--threads`: 1,024 (values above the machine's cores are clamped to the cores).
    static let threads = 1024
    /// `--batch-size` of train, eval, pretrain and embed: 1,024 examples (activations grow with it).
    static let batchSize = 1024
    /// `--grad-accum`: 1,024 batches a step.
    static let accumulation = 1024
    /// `--steps`, `--pretrain-steps`: 10,000,000 optimiser steps (also what `--epochs` may come to).
    static let steps = 10_000_000
    /// `--top` and candidates of one request (`--candidates`, a batch line's "candidates" and
    /// "top"): 1,000 (every candidate is a row of one scoring batch).
    static let candidates = 1000
    /// A line of a `--batch` requests file or of a `--history-file`: 64 MiB (a history of about
    /// four million events; longer ones belong in a `--history-file`, one event a line).
    static let requestLineBytes = 64 << 20
}

/// Refuses a command-line value past a limit: one `tmf:` line on stderr, exit status 64 (the
/// status of ArgumentParser's own validation errors).
func refuseLimit(_ message: String) -> ExitCode {
    printError("tmf: \(message)")
    return ExitCode.validationFailure
}

/// The message refusing `--batch-size n` past `CommandLimits.batchSize`.
func batchSizeMessage(_ n: Int) -> String {
    "--batch-size \(n) is more than the \(CommandLimits.batchSize) allowed: a batch's activations are allocated at once; use a smaller batch (and --grad-accum to train on more examples a step)"
}

/// The message refusing a step count past `CommandLimits.steps`.
func stepsMessage(_ option: String, _ n: String) -> String {
    "\(option) \(n) is more than the \(CommandLimits.steps) optimiser steps allowed; give fewer"
}
