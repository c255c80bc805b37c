import Foundation
import XCTest
import TMFGraph

/// Timing, not a pass/fail check.
final class BenchTests: XCTestCase {
    /// Release-mode timing of one epoch on 10,000 synthetic users (reference hyper-parameters,
    /// T = 40). Skipped unless TMF_GRAPH_BENCH=1:
    /// `TMF_GRAPH_BENCH=1 swift test -c release --filter BenchTests`.
    func testBenchmarkEpoch() throws {
        guard ProcessInfo.processInfo.environment["TMF_GRAPH_BENCH"] == "1" else {
            throw XCTSkip("set TMF_GRAPH_BENCH=1 (release build) to time an epoch")
        }
        // TMF_GRAPH_BENCH_T picks the sequence length (a multiple of 40; the reference uses 200),
        // TMF_GRAPH_BENCH_USERS the number of users, TMF_GRAPH_BENCH_BATCHES e.g. "32,256".
        let env = ProcessInfo.processInfo.environment
        let t = Int(env["TMF_GRAPH_BENCH_T"] ?? "") ?? 40
        let users = Int(env["TMF_GRAPH_BENCH_USERS"] ?? "") ?? 10_000
        let batches = (env["TMF_GRAPH_BENCH_BATCHES"] ?? "32,256").split(separator: ",").compactMap { Int($0) }
        for batch in batches {
            let result = try MBHTBench.epoch(users: users, items: 2_000, sequenceLength: t, batchSize: batch)
            print(result.summary)
        }
    }
}
