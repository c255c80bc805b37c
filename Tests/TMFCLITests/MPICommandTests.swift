import Foundation
import XCTest

/// `mpirun -np 2 tmf train|eval` on the tiny setup of `PipelineCommandTests`, through the built
/// binary: the same per-step losses and figures as one process, sharded evaluation equal to
/// unsharded, and a job whose rank is killed resumed to the uninterrupted run's records.
/// Skipped (with the reason) where Open MPI is not installed; the bootstrap installs it.
final class MPICommandTests: XCTestCase {
    override func setUpWithError() throws {
        guard mpirunExecutable != nil else { throw XCTSkip("Open MPI's mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)") }
    }

    /// Two ranks train as one process does: losses within 1e-5 relative, the same validation
    /// counts, one metrics log and folder written by rank 0 alone; then `tmf eval` (generative
    /// and `--rank`) under 2 ranks prints exactly what one process prints.
    func testTwoRanksTrainAndEvaluateAsOneProcess() throws {
        let s = try makeSetup()
        let one = s.root.appendingPathComponent("one"), two = s.root.appendingPathComponent("two")
        let single = try runTMF(trainArguments(s, out: one, steps: 6) + ["--graph-weight", "0", "--batch-size", "4"])
        XCTAssertEqual(single.status, 0, single.stderr)
        let parallel = try runTMF(trainArguments(s, out: two, steps: 6) + ["--graph-weight", "0", "--batch-size", "4"], ranks: 2)
        XCTAssertEqual(parallel.status, 0, parallel.stderr)
        try assertSameRecords(try records(one), try records(two))
        XCTAssertTrue(FileManager.default.fileExists(atPath: two.appendingPathComponent("checkpoint/state.json").path))

        for extra in [[], ["--rank"], ["--split", "valid", "--json"]] {
            let arguments = ["eval", one.path, "--limit", "21", "--batch-size", "4", "--quiet"] + extra
            let a = try runTMF(arguments), b = try runTMF(arguments, ranks: 2)
            XCTAssertEqual(a.status, 0, a.stderr)
            XCTAssertEqual(b.status, 0, b.stderr)
            XCTAssertEqual(b.stdout, a.stdout, "tmf eval \(extra) under 2 ranks")
            XCTAssertTrue(a.stdout.contains("Examples"), a.stdout)
        }
        let refused = try runTMF(["eval", one.path, "--predictions", s.root.appendingPathComponent("p.jsonl").path], ranks: 2)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--predictions is not available under mpirun"), refused.stderr)
    }

    /// The `[pretrain]` stage of a dataset without `--llm`, data-parallel by windows under 2
    /// ranks: rank 0 trains the tokenizer and makes the folder, every rank takes its weights,
    /// and the per-step losses and gradient norms equal one process's within 1e-5 relative.
    func testTwoRanksPretrainAsOneProcess() throws {
        let s = try makeSetup()
        let one = s.root.appendingPathComponent("one"), two = s.root.appendingPathComponent("two")
        let arguments = ["train", s.shop.path, "--stage", "pretrain", "--pretrain-steps", "6", "--threads", "1", "--quiet"]
        let single = try runTMF(arguments + ["--out", one.path])
        XCTAssertEqual(single.status, 0, single.stderr)
        let parallel = try runTMF(arguments + ["--out", two.path], ranks: 2)
        XCTAssertEqual(parallel.status, 0, parallel.stderr)
        let a = try records(one), b = try records(two)
        XCTAssertEqual(a.count, 1 + 6, "six steps and the held-out loss")
        XCTAssertEqual(a.count, b.count)
        for (x, y) in zip(a, b) {
            for key in ["loss", "grad_norm"] {
                guard let u = x[key] as? Double else { continue }
                let v = try XCTUnwrap(y[key] as? Double, "\(key) in \(y)")
                XCTAssertEqual(v, u, accuracy: 1e-5 * abs(u), "\(key) in \(x)")
            }
            XCTAssertEqual(x["step"] as? Int, y["step"] as? Int)
        }
        for file in ["tokenizer.model", "added_tokens.json", "config.json"] {
            XCTAssertEqual(try Data(contentsOf: one.appendingPathComponent("llm/\(file)")),
                           try Data(contentsOf: two.appendingPathComponent("llm/\(file)")), file)
        }
    }

    /// A rank SIGKILLed mid-run ends the job (non-zero); `--resume` under 2 ranks continues from
    /// the last checkpoint (every 50 steps) to the records of an uninterrupted one-process run.
    func testKilledRankEndsTheJobAndResumeContinuesExactly() throws {
        let s = try makeSetup()
        let straight = s.root.appendingPathComponent("straight"), model = s.root.appendingPathComponent("model")
        let steps = 56
        let run = try runTMF(trainArguments(s, out: straight, steps: steps) + ["--graph-weight", "0", "--batch-size", "4"])
        XCTAssertEqual(run.status, 0, run.stderr)

        let job = try BackgroundTMF(trainArguments(s, out: model, steps: steps) + ["--graph-weight", "0", "--batch-size", "4"], ranks: 2)
        // The MBHT epoch, 50 steps and the checkpoint at 50, then two more steps.
        XCTAssertTrue(job.waitForLines(1 + 52, in: model.appendingPathComponent("metrics.jsonl")), "the job should be training")
        let victim = try XCTUnwrap(rankProcess(1, under: job.process.processIdentifier), "rank 1's process")
        kill(victim, SIGKILL)
        let ended = try job.finish()
        XCTAssertNotEqual(ended.status, 0, "a job that lost a rank fails: \(ended.stderr)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: model.appendingPathComponent("checkpoint/state.json").path))

        let resumed = try runTMF(trainArguments(s, out: model, steps: steps) + ["--graph-weight", "0", "--batch-size", "4", "--resume"],
                                 ranks: 2)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        try assertSameRecords(try records(straight), try records(model))
    }

    /// Two hosts: two network namespaces joined by a veth pair, one rank in each, started by
    /// `mpirun --host` with an `ip netns exec` wrapper as its remote shell (no sshd, and no
    /// traffic leaves the machine). The job trains as one process does. Skipped where the test
    /// cannot make namespaces (needs root and CAP_SYS_ADMIN, and iproute2).
    func testTwoHostsInNetworkNamespacesTrainAsOneProcess() throws {
        let s = try makeSetup()
        let tag = String(getpid() % 100_000)
        let (a, b) = ("tmf\(tag)a", "tmf\(tag)b")
        let (ipA, ipB) = ("10.77.\(getpid() % 200 + 1).1", "10.77.\(getpid() % 200 + 1).2")
        let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let ip else { throw XCTSkip("iproute2's ip is not installed") }
        let setup: [[String]] = [
            ["netns", "add", a], ["netns", "add", b],
            ["link", "add", "v\(tag)a", "type", "veth", "peer", "name", "v\(tag)b"],
            ["link", "set", "v\(tag)a", "netns", a], ["link", "set", "v\(tag)b", "netns", b],
            ["-n", a, "addr", "add", ipA + "/24", "dev", "v\(tag)a"], ["-n", b, "addr", "add", ipB + "/24", "dev", "v\(tag)b"],
            ["-n", a, "link", "set", "v\(tag)a", "up"], ["-n", b, "link", "set", "v\(tag)b", "up"],
            ["-n", a, "link", "set", "lo", "up"], ["-n", b, "link", "set", "lo", "up"],
        ]
        addTeardownBlock {
            for ns in [a, b] { _ = try? runTool(ip, ["netns", "delete", ns]) }
        }
        for (k, command) in setup.enumerated() {
            let r = try runTool(ip, command)
            if r.status != 0 {
                if k == 0 { throw XCTSkip("cannot make network namespaces here (needs root and CAP_SYS_ADMIN): \(r.output)") }
                XCTFail("ip \(command.joined(separator: " ")): \(r.output)")
                return
            }
        }
        // Open MPI's remote shell: "HOST COMMAND…" runs COMMAND in HOST's namespace.
        let agent = s.root.appendingPathComponent("netns-rsh")
        try Data("""
            #!/bin/sh
            host="$1"; shift
            case "$host" in
              \(ipA)) ns=\(a) ;;
              \(ipB)) ns=\(b) ;;
              *) echo "netns-rsh: unknown host $host" >&2; exit 1 ;;
            esac
            echo "$ns" >> "\(s.root.path)/launched"
            exec \(ip) netns exec "$ns" sh -c "$*"

            """.utf8).write(to: agent)
        chmod(agent.path, 0o755)

        let one = s.root.appendingPathComponent("one"), two = s.root.appendingPathComponent("two")
        let arguments = trainArguments(s, out: one, steps: 4) + ["--graph-weight", "0", "--batch-size", "4"]
        let single = try runTMF(arguments)
        XCTAssertEqual(single.status, 0, single.stderr)
        let subnet = String(ipA.dropLast(2)) + ".0/24"
        let launcher = [ip, "netns", "exec", a, (mpirunExecutable ?? URL(fileURLWithPath: "/usr/bin/mpirun")).path,
                        "--allow-run-as-root", "--host", "\(ipA),\(ipB)", "-np", "2", "--mca", "plm_rsh_agent", agent.path,
                        "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", subnet, "--mca", "oob_tcp_if_include", subnet]
        var twoArguments = arguments
        twoArguments[twoArguments.firstIndex(of: one.path)!] = two.path
        let job = try BackgroundTMF(twoArguments, launcher: launcher).finish()
        XCTAssertEqual(job.status, 0, job.stderr)
        let launched = try String(contentsOf: s.root.appendingPathComponent("launched"), encoding: .utf8)
        XCTAssertTrue(launched.contains(b), "mpirun started a rank in the second namespace through the wrapper: \(launched)")
        try assertSameRecords(try records(one), try records(two))
    }

    // MARK: - Helpers

    /// The pid of the `tmf` process of `rank` among `mpirun`'s children.
    func rankProcess(_ rank: Int, under parent: Int32) -> Int32? {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
            for pid in pids {
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { continue }
                let fields = stat[stat.index(after: close)...].split(separator: " ")
                guard fields.count > 2, Int32(fields[1]) == parent,
                      let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { continue }
                let variables = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
            }
            usleep(50_000)
        }
        return nil
    }

    /// `folder/metrics.jsonl` as JSON objects, without the timing field.
    func records(_ folder: URL) throws -> [[String: Any]] {
        try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
            var o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
            o["tokens_per_s"] = nil
            o["answer_tokens"] = nil  // each rank counts the prompts it ran
            return o
        }
    }

    /// Same records, with the LLM's and MBHT's losses within 1e-5 relative (the slices pad to
    /// their own longest prompt, multiply smaller matrices and sum in another order) and every
    /// other field (MBHT's validation HitRate@1 among them) equal.
    func assertSameRecords(_ a: [[String: Any]], _ b: [[String: Any]], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(a.count, b.count, "record count", file: file, line: line)
        var compared = 0
        for (x, y) in zip(a, b) {
            XCTAssertEqual(Set(x.keys), Set(y.keys), file: file, line: line)
            for (key, value) in x {
                if key == "loss", ["llm", "graph"].contains(x["stage"] as? String), let u = value as? Double, let v = y[key] as? Double {
                    XCTAssertEqual(v, u, accuracy: 1e-5 * abs(u), "\(x)", file: file, line: line)
                    compared += 1
                } else {
                    XCTAssertEqual("\(value)", "\(y[key] ?? "missing")", "\(key) in \(x)", file: file, line: line)
                }
            }
        }
        XCTAssertGreaterThan(compared, 1, "no LLM step or MBHT epoch was compared", file: file, line: line)
    }
}
