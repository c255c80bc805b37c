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
        // TMF_GRAPH_BENCH_T picks the sequence length (a multiple of 40; the reference uses 200).
        let t = Int(ProcessInfo.processInfo.environment["TMF_GRAPH_BENCH_T"] ?? "") ?? 40
        for batch in [32, 256] {
            let result = try MBHTBench.epoch(users: 10_000, items: 2_000, sequenceLength: t, batchSize: batch)
            print(result.summary)
        }
    }
}
