import TMFTensor

/// Synthetic multi-behavior sequences for tests and `tmf bench graph`.
///
/// Behaviors: 0 view, 1 cart, 2 purchase (the target). Each user has a sequence whose item
/// process is either a **Markov chain** (the next item is a fixed successor of the current one
/// with probability `followProbability`, else uniform) or **random** (items independent and
/// uniform, so the next purchase cannot be predicted from the sequence). The last two events
/// of every user are purchases: the second-to-last is the validation target, the last the test
/// target; training sequences stop before them.
public struct MBHTSyntheticData: Sendable {
    public var numItems: Int
    public let numBehaviors = 3
    public let targetBehavior = 2
    /// Per-user sequences without the validation and test targets.
    public var training: MBHTTrainingData
    /// History before the validation target, 10 negatives + ground truth.
    public var validation: [MBHTRankingExample]
    /// History before the test target (including the validation target), 10 negatives + truth.
    public var test: [MBHTRankingExample]
    /// The successor of each item in the Markov chain (unused for random data).
    public var successor: [Int]

    /// Generates the data.
    /// - Parameters:
    ///   - markov: Markov-chain items (true) or independent uniform items (false).
    ///   - negativesAvoidHistory: draw negatives among items the user never interacted with
    ///     (DESIGN.md §4). With false they are drawn among all items except the ground truth,
    ///     so that under random data the ground truth is exchangeable with the negatives and
    ///     any model's expected HitRate@1 is exactly 1/11.
    public static func generate(users: Int, items: Int, eventsPerUser: ClosedRange<Int> = 8...20,
                                markov: Bool, followProbability: Float = 0.9,
                                negativesAvoidHistory: Bool = true, seed: UInt64) -> MBHTSyntheticData {
        precondition(items >= 12 && eventsPerUser.lowerBound >= 3)
        var rng = SeededRNG(seed: seed, key: ["mbht-synthetic"])
        var successor = Array(0..<items)
        successor.shuffle(using: &rng)
        var train: [[GraphEvent]] = []
        var valid: [MBHTRankingExample] = []
        var test: [MBHTRankingExample] = []
        func candidates(_ truth: Int, _ history: [GraphEvent], _ rng: inout SeededRNG) -> [Int] {
            let seen = negativesAvoidHistory ? Set(history.map(\.item)) : []
            var pool = (0..<items).filter { $0 != truth && !seen.contains($0) }
            if pool.count < 10 {  // the user has seen almost everything: fall back to any other item
                pool += (0..<items).filter { $0 != truth && seen.contains($0) }
            }
            // Partial Fisher–Yates: 10 distinct negatives, uniform.
            for k in 0..<10 { pool.swapAt(k, k + rng.nextInt(below: pool.count - k)) }
            var all = Array(pool[..<10]) + [truth]
            all.shuffle(using: &rng)
            return all
        }
        for _ in 0..<users {
            let n = eventsPerUser.lowerBound + rng.nextInt(below: eventsPerUser.count)
            var seq: [GraphEvent] = []
            var item = rng.nextInt(below: items)
            for p in 0..<n {
                if p > 0 {
                    if markov && rng.nextFloat() < followProbability { item = successor[item] }
                    else { item = rng.nextInt(below: items) }
                }
                let u = rng.nextFloat()
                let behavior = p >= n - 2 ? 2 : (u < 0.6 ? 0 : (u < 0.8 ? 1 : 2))
                seq.append(GraphEvent(item: item, behavior: behavior))
            }
            let vh = Array(seq[..<(n - 2)]), th = Array(seq[..<(n - 1)])
            valid.append(MBHTRankingExample(history: vh, candidates: candidates(seq[n - 2].item, vh, &rng),
                                            groundTruth: seq[n - 2].item))
            test.append(MBHTRankingExample(history: th, candidates: candidates(seq[n - 1].item, th, &rng),
                                           groundTruth: seq[n - 1].item))
            train.append(vh)
        }
        return MBHTSyntheticData(numItems: items, training: MBHTTrainingData(sequences: train),
                                 validation: valid, test: test, successor: successor)
    }

    /// HitRate@1 of the popularity baseline (items scored by their count in the training
    /// sequences) on `examples`.
    public func popularityHitRate(_ examples: [MBHTRankingExample]) -> Double {
        var counts = [Float](repeating: 0, count: numItems)
        for s in training.sequences { for e in s { counts[e.item] += 1 } }
        return hitRateAt1(scores: examples.map { $0.candidates.map { counts[$0] } },
                          candidates: examples.map(\.candidates), groundTruths: examples.map(\.groundTruth))
    }

    /// HitRate@1 of uniformly random scores on `examples`.
    public func randomHitRate(_ examples: [MBHTRankingExample], seed: UInt64) -> Double {
        var rng = SeededRNG(seed: seed, key: ["mbht-random-baseline"])
        return hitRateAt1(scores: examples.map { $0.candidates.map { _ in rng.nextFloat() } },
                          candidates: examples.map(\.candidates), groundTruths: examples.map(\.groundTruth))
    }
}
