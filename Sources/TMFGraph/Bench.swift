import Foundation
import TMFTensor
#if canImport(Glibc)
import Glibc
#endif

/// Timing of MBHT training for `tmf bench graph` (release builds).
public enum MBHTBench {
    /// One timed epoch.
    public struct Result: Sendable {
        public var users: Int
        public var items: Int
        public var sequenceLength: Int
        public var batchSize: Int
        public var examples: Int
        /// Wall-clock seconds of the epoch.
        public var seconds: Double
        /// CPU seconds of the whole process over the epoch, all threads (less sensitive than
        /// wall-clock time to other processes sharing the machine).
        public var cpuSeconds: Double
        public var meanLoss: Float
        /// One line for a terminal.
        public var summary: String {
            String(format: "MBHT epoch: %d users, %d items, T = %d, batch %d: %.1f s wall, %.1f CPU-s (%.0f sequences/s, loss %.3f)",
                   users, items, sequenceLength, batchSize, seconds, cpuSeconds, Double(examples) / seconds, meanLoss)
        }
    }

    /// Generates a Markov-chain dataset (`MBHTSyntheticData`, 8…`sequenceLength` events per user)
    /// and trains one epoch with the reference hyper-parameters (d 64, 2 layers, 2 heads,
    /// scales [5, 8, 40], hyper_len 6) at sequence length `sequenceLength` (a multiple of 40).
    /// - Throws: `GraphError` for an invalid configuration.
    public static func epoch(users: Int = 10_000, items: Int = 2_000, sequenceLength: Int = 40,
                             batchSize: Int = 32, seed: UInt64 = 0) throws -> Result {
        let data = MBHTSyntheticData.generate(users: users, items: items, eventsPerUser: 8...max(8, sequenceLength),
                                              markov: true, seed: seed)
        let c = MBHTConfiguration(numItems: items, numBehaviors: 3, targetBehavior: 2, maxSequenceLength: sequenceLength)
        let model = try MBHTModel(configuration: c, seed: seed)
        var p = MBHTTrainingParameters()
        p.epochs = 1
        p.batchSize = batchSize
        p.seed = seed
        let cpuStart = processCPUSeconds()
        let report = try model.train(data.training, parameters: p)
        return Result(users: users, items: items, sequenceLength: sequenceLength, batchSize: batchSize,
                      examples: data.training.examples(targetBehavior: 2, selection: p.examples).count,
                      seconds: report.seconds, cpuSeconds: processCPUSeconds() - cpuStart,
                      meanLoss: report.epochLosses.last ?? .nan)
    }

    /// User + system CPU time of this process so far.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        #else
        getrusage(RUSAGE_SELF, &usage)
        #endif
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }
}
