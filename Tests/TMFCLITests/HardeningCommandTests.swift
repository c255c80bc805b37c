import Foundation
import XCTest
import TMFCheckpoint

/// What a long `tmf train` meets on a shared machine, through the built binary on the tiny setup
/// of `PipelineCommandTests`: a second writer on its model folder, SIGTERM and SIGHUP, a second
/// signal, and what a killed run leaves behind.
final class HardeningCommandTests: XCTestCase {
    /// One writer per model folder: while a run holds it (held still with SIGSTOP, so the check
    /// does not depend on the machine's speed), a second `tmf train --out` and a `--resume` are
    /// refused with one line and touch nothing; readers are not blocked; the first run then
    /// finishes normally; a SIGKILLed run's lock dies with it.
    func testSecondWriterIsRefusedWhileARunHoldsTheFolder() throws {
        let s = try makeSetup()
        let model = s.root.appendingPathComponent("model"), metrics = model.appendingPathComponent("metrics.jsonl")
        let first = try BackgroundTMF(trainArguments(s, out: model, steps: 12) + ["--graph-weight", "0"])
        // The MBHT epoch and the first LLM step: tmf.json and graph.safetensors are written.
        XCTAssertTrue(first.waitForLines(2, in: metrics), "the first run should be training")
        first.send(SIGSTOP)
        let before = try listing(model)
        for extra in [[], ["--resume"]] {
            let second = try runTMF(trainArguments(s, out: model, steps: 12) + extra)
            assertFailure(second, mentions: model.path)
            XCTAssertTrue(second.stderr.contains("another tmf train is writing"), second.stderr)
        }
        XCTAssertEqual(try listing(model), before, "a refused run touches nothing in the folder")
        let reader = try runTMF(["eval", model.path, "--baseline", "mbht", "--limit", "2", "--threads", "1"])
        XCTAssertEqual(reader.status, 0, "tmf eval reads a folder being trained: \(reader.stderr)")
        first.send(SIGCONT)
        let finished = try first.finish()
        XCTAssertFalse(finished.signaled)
        XCTAssertEqual(finished.status, 0, finished.stderr)
        XCTAssertEqual(try loggedRecords(model).count, 1 + 12 + 1, "the first run trained all its steps")
        let ranked = try runTMF(["eval", model.path, "--rank", "--limit", "2", "--threads", "1"])
        XCTAssertEqual(ranked.status, 0, "the first run's model loads: \(ranked.stderr)")

        // A killed run holds nothing: the kernel drops its lock.
        let lines = try loggedRecords(model).count
        let killed = try BackgroundTMF(trainArguments(s, out: model, steps: 50) + ["--graph-weight", "0"])
        XCTAssertTrue(killed.waitForLines(lines + 1, in: metrics), "the run to kill should be training")
        killed.send(SIGKILL)
        let died = try killed.finish()
        XCTAssertTrue(died.signaled && died.status == SIGKILL, "status \(died.status)")
        let next = try runTMF(trainArguments(s, out: model, steps: 2) + ["--graph-weight", "0"])
        XCTAssertEqual(next.status, 0, next.stderr)
    }

    /// The folder's lock is taken before anything else: `--out` naming a file is one clear line,
    /// and a folder the lock had to create is removed again when the run fails before writing.
    func testOutMustBeAFolderAndAFailedRunLeavesNoEmptyOne() throws {
        let s = try makeSetup()
        let file = s.root.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        assertFailure(try runTMF(trainArguments(s, out: file, steps: 2)), mentions: file.path)
        let fresh = s.root.appendingPathComponent("fresh")
        var arguments = trainArguments(s, out: fresh, steps: 2)
        arguments[1] = s.root.appendingPathComponent("no-such-dataset").path
        assertFailure(try runTMF(arguments), mentions: "no-such-dataset")
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh.path), "no empty model folder is left behind")
    }

    /// SIGTERM and SIGHUP stop a run after a step as Ctrl-C does: non-zero exit, a checkpoint,
    /// and `--resume` logs the same records as an uninterrupted run.
    func testSIGTERMAndSIGHUPStopAfterAStepAndResumeExactly() throws {
        let s = try makeSetup()
        let straight = s.root.appendingPathComponent("straight")
        let run = try runTMF(trainArguments(s, out: straight, steps: 5) + ["--graph-weight", "0"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let records = try loggedRecords(straight)
        XCTAssertEqual(records.count, 1 + 5 + 1)
        for (signal, name) in [(SIGTERM, "sigterm"), (SIGHUP, "sighup")] {
            try assertStopsAndResumes(s, signal: signal, out: s.root.appendingPathComponent(name), extra: ["--graph-weight", "0"],
                                      matching: records)
        }
    }

    /// A signal during the `[graph]` stage stops MBHT's training without saving it (a half-trained
    /// encoder must not be reused as the stage's result); the same command then trains it anew.
    func testStopDuringTheGraphStageKeepsNoHalfTrainedEncoder() throws {
        let s = try makeSetup()
        let model = s.root.appendingPathComponent("model"), metrics = model.appendingPathComponent("metrics.jsonl")
        let arguments = trainArguments(s, out: model, steps: 1) + ["--stage", "graph", "--graph-epochs", "200"]
        let stopped = try runInterrupted(arguments, afterLines: 1, metrics: metrics, signal: SIGTERM)
        XCTAssertNotEqual(stopped.status, 0, stopped.stderr)
        XCTAssertTrue(stopped.stderr.contains("stopped before the LLM stage"), stopped.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: model.appendingPathComponent("graph.safetensors").path),
                       "a stopped MBHT is not saved")
        let again = try runTMF(arguments)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.appendingPathComponent("graph.safetensors").path))
        let firstEpochs = try loggedRecords(model).filter { $0.contains(#""epoch":1,"#) && $0.contains(#""stage":"graph""#) }
        XCTAssertEqual(firstEpochs.count, 2, "the second run trains MBHT from its first epoch: \(firstEpochs)")
    }

    /// A second signal quits at once with 128 + its number, leaving only complete files under
    /// their final names; the next run removes the temporaries of dead runs (not a live
    /// process's) and a metrics line torn by the exit, and starts cleanly.
    func testSecondSignalQuitsAtOnceAndTheNextRunCleansUp() throws {
        let s = try makeSetup()
        let model = s.root.appendingPathComponent("model"), metrics = model.appendingPathComponent("metrics.jsonl")
        let run = try BackgroundTMF(trainArguments(s, out: model, steps: 200))
        XCTAssertTrue(run.waitForLines(3, in: metrics), "the run should be training")
        // Two different signals while it is held still arrive together when it continues (two
        // of the same kind would merge into one pending signal).
        run.send(SIGSTOP)
        run.send(SIGTERM)
        run.send(SIGHUP)
        run.send(SIGCONT)
        let quit = try run.finish()
        XCTAssertFalse(quit.signaled, "tmf must exit, not die by the signal")
        XCTAssertTrue([128 + SIGTERM, 128 + SIGHUP].contains(quit.status), "status \(quit.status): \(quit.stderr)")
        XCTAssertTrue(quit.stderr.contains("quitting now"), quit.stderr)
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: model.path) where name.hasSuffix(".safetensors") {
            XCTAssertNoThrow(try SafeTensorsFile(contentsOf: model.appendingPathComponent(name)), name)
        }
        XCTAssertNoThrow(try JSONSerialization.jsonObject(with: Data(contentsOf: model.appendingPathComponent("tmf.json"))))

        // What an exit in the middle of a write leaves: a dead run's temporary, a metrics line
        // torn mid-record. A live process's temporary is not the next run's to remove.
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        let dead = model.appendingPathComponent(".adapter_model.safetensors.tmp-\(gone.processIdentifier)-12345")
        let live = model.appendingPathComponent(".fusion.safetensors.tmp-\(getpid())-12345")
        try Data("partial".utf8).write(to: dead)
        try Data("partial".utf8).write(to: live)
        let handle = try FileHandle(forWritingTo: metrics)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(#"{"answer_tokens":12,"level":"ea"#.utf8))
        try handle.close()

        let next = try runTMF(trainArguments(s, out: model, steps: 2) + ["--graph-weight", "0"])
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertFalse(next.stderr.contains("training.png"), "the curves are drawn: \(next.stderr)")
        XCTAssertFalse(fm.fileExists(atPath: dead.path), "a dead run's temporary is removed")
        XCTAssertTrue(fm.fileExists(atPath: live.path), "a live process's temporary is kept")
        XCTAssertNoThrow(try loggedRecords(model), "every metrics line is a record")
        XCTAssertEqual(try loggedRecords(model).last.map { $0.contains(#""kind":"validation""#) }, true)
    }

    /// A full disk and a read-only one, on small tmpfs mounts the test makes (skipped, with the
    /// reason, where the machine does not let it mount): every failed write is one line naming
    /// the file and the system's reason, leaves no temporary behind, and a finished model in the
    /// folder stays loadable.
    func testFullAndReadOnlyDisksStopWithOneLineAndKeepTheModel() throws {
        let s = try makeSetup()
        let disk = s.root.appendingPathComponent("disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)

        // Too small for the model: the first large write fails.
        try mountTmpfs(at: disk, size: "64k")
        let model = disk.appendingPathComponent("model")
        let tooSmall = try runTMF(trainArguments(s, out: model, steps: 2))
        assertFailure(tooSmall, mentions: "No space left on device")
        XCTAssertTrue(tooSmall.stderr.contains("cannot write \(model.path)/") || tooSmall.stderr.contains("write \(model.path)/"),
                      "the line names the file: \(tooSmall.stderr)")
        XCTAssertEqual(try temporaries(in: model), [], "no temporary is left behind")
        try unmount(disk)

        // Room for one model; then the disk fills and a new run into the same folder fails.
        try mountTmpfs(at: disk, size: "16m")
        let first = try runTMF(trainArguments(s, out: model, steps: 2) + ["--graph-weight", "0"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let filler = disk.appendingPathComponent("filler")
        XCTAssertTrue(FileManager.default.createFile(atPath: filler.path, contents: nil))
        let handle = try FileHandle(forWritingTo: filler)
        let block = Data(count: 1 << 16)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()
        let full = try runTMF(trainArguments(s, out: model, steps: 2) + ["--graph-weight", "0"])
        assertFailure(full, mentions: model.path)
        XCTAssertTrue(full.stderr.contains("No space left on device"), full.stderr)
        XCTAssertEqual(try temporaries(in: model), [], "no temporary is left behind")
        let ranked = try runTMF(["eval", model.path, "--rank", "--limit", "2", "--threads", "1"])
        XCTAssertEqual(ranked.status, 0, "the finished model still loads: \(ranked.stderr)")
        let resumable = try runTMF(["eval", model.path, "--baseline", "mbht", "--limit", "2", "--threads", "1"])
        XCTAssertEqual(resumable.status, 0, resumable.stderr)
        try FileManager.default.removeItem(at: filler)

        // Read-only: refused with one line; reading still works.
        try remountReadOnly(disk)
        let readOnly = try runTMF(trainArguments(s, out: model, steps: 2) + ["--graph-weight", "0"])
        assertFailure(readOnly, mentions: model.path)
        XCTAssertTrue(readOnly.stderr.lowercased().contains("read-only"), readOnly.stderr)
        let reader = try runTMF(["eval", model.path, "--rank", "--limit", "2", "--threads", "1"])
        XCTAssertEqual(reader.status, 0, "a read-only model folder is read: \(reader.stderr)")
    }

    /// Names in `folder` (recursively) that only a write in progress makes: `.NAME.tmp-…`
    /// temporaries and `checkpoint.new`.
    func temporaries(in folder: URL) throws -> [String] {
        guard FileManager.default.fileExists(atPath: folder.path) else { return [] }
        let names = FileManager.default.enumerator(atPath: folder.path)?.compactMap { $0 as? String } ?? []
        return names.filter { $0.contains(".tmp-") || $0.hasSuffix("checkpoint.new") || $0.hasSuffix(".tmp") }.sorted()
    }

    /// Mounts a tmpfs of `size` on `folder` (unmounted at teardown), or skips the test saying why.
    func mountTmpfs(at folder: URL, size: String) throws {
        let result = try runTool("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", folder.path])
        if result.status != 0 {
            throw XCTSkip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): \(result.output)")
        }
        addTeardownBlock { _ = try? runTool("/bin/umount", [folder.path]) }
    }

    func unmount(_ folder: URL) throws {
        let result = try runTool("/bin/umount", [folder.path])
        XCTAssertEqual(result.status, 0, result.output)
    }

    func remountReadOnly(_ folder: URL) throws {
        let result = try runTool("/bin/mount", ["-o", "remount,ro", folder.path])
        XCTAssertEqual(result.status, 0, result.output)
    }

    /// Every file under `folder`: its path, size and modification time.
    func listing(_ folder: URL) throws -> [String] {
        let keys: [URLResourceKey] = [.fileSizeKey, .contentModificationDateKey]
        let files = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: keys)?.compactMap { $0 as? URL } ?? []
        return try files.map { url in
            let v = try url.resourceValues(forKeys: Set(keys))
            return "\(url.path) \(v.fileSize ?? -1) \(v.contentModificationDate?.timeIntervalSince1970 ?? 0)"
        }.sorted()
    }
}
