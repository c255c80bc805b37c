import Foundation
import TMFTensor

/// Lower-cases, trims and collapses runs of whitespace to one space.
public func normalizeTitle(_ s: String) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(s.utf8.count)
    for b in s.utf8 {
        if b >= 0x80 {  // non-ASCII: the general (slower) path
            return s.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        }
        if b == 0x20 || (b >= 0x09 && b <= 0x0D) {
            if let last = bytes.last, last != 0x20 { bytes.append(0x20) }
        } else {
            bytes.append(b >= 0x41 && b <= 0x5A ? b + 0x20 : b)
        }
    }
    if bytes.last == 0x20 { bytes.removeLast() }
    return String(decoding: bytes, as: UTF8.self)
}

/// How one generated answer scores against a candidate set (DESIGN.md §4).
public struct AnswerScore: Sendable, Equatable {
    /// The candidate (index into the candidate list) the answer names, or nil if it is not valid.
    public var chosen: Int?
    /// Whether the answer is valid and names the ground truth.
    public var correct: Bool

    public init(chosen: Int?, correct: Bool) {
        self.chosen = chosen
        self.correct = correct
    }

    /// Whether the answer names exactly one candidate.
    public var valid: Bool { chosen != nil }
}

/// Scores an answer: after `normalizeTitle`, it is valid if exactly one candidate title equals
/// it, or failing that, exactly one candidate title appears in it; correct if valid and that
/// candidate is `truth`.
/// - Parameters:
///   - output: the generated text.
///   - candidateTitles: the titles of the candidate set, in prompt order.
///   - truth: the index of the ground truth in `candidateTitles`.
public func scoreAnswer(_ output: String, candidateTitles: [String], truth: Int) -> AnswerScore {
    let out = normalizeTitle(output)
    let titles = candidateTitles.map(normalizeTitle)
    var hits = titles.indices.filter { titles[$0] == out }
    if hits.isEmpty {
        hits = titles.indices.filter { !titles[$0].isEmpty && out.contains(titles[$0]) }
    }
    guard hits.count == 1 else { return AnswerScore(chosen: nil, correct: false) }
    return AnswerScore(chosen: hits[0], correct: hits[0] == truth)
}

/// HitRate@1 / ValidRatio counts (DESIGN.md §4).
public struct EvalMetrics: Sendable, Equatable, Codable {
    public var examples = 0
    public var valid = 0
    public var correct = 0

    public init() {}

    /// Adds one scored answer.
    public mutating func add(_ score: AnswerScore) {
        examples += 1
        if score.valid { valid += 1 }
        if score.correct { correct += 1 }
    }

    /// correct / valid (the paper's and LLaRA's convention); 0 when nothing is valid.
    public var hitRate: Double { valid == 0 ? 0 : Double(correct) / Double(valid) }
    /// correct / examples.
    public var hitRateAll: Double { examples == 0 ? 0 : Double(correct) / Double(examples) }
    /// valid / examples.
    public var validRatio: Double { examples == 0 ? 0 : Double(valid) / Double(examples) }

    /// The lines `tmf eval` prints: `HitRate@1: 0.xxxx`, `ValidRatio`, `HitRate@1(all)`, `Examples`.
    public var lines: [String] {
        [
            "HitRate@1: \(String(format: "%.4f", hitRate))",
            "ValidRatio: \(String(format: "%.4f", validRatio))",
            "HitRate@1(all): \(String(format: "%.4f", hitRateAll))",
            "Examples: \(examples)",
        ]
    }

    /// One JSON object with the same keys as `lines`.
    public var json: String {
        "{\"HitRate@1\": \(String(format: "%.4f", hitRate)), \"ValidRatio\": \(String(format: "%.4f", validRatio)), "
            + "\"HitRate@1(all)\": \(String(format: "%.4f", hitRateAll)), \"Examples\": \(examples)}"
    }
}

/// The 1-based rank of candidate `truth` when candidates are sorted by `scores`, highest first,
/// ties broken by candidate order (DESIGN.md §4).
public func rankOf(truth: Int, scores: [Double]) -> Int {
    precondition(scores.indices.contains(truth), "truth outside the candidate list")
    var rank = 1
    for (k, s) in scores.enumerated() where s > scores[truth] || (s == scores[truth] && k < truth) { rank += 1 }
    return rank
}

/// Candidate indices sorted by `scores`, highest first, ties by candidate order.
public func rankedCandidates(_ scores: [Double]) -> [Int] {
    scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
}

/// Ranking metrics over the whole candidate set (DESIGN.md §4, `tmf eval --rank`): HitRate@1,
/// HitRate@3, NDCG@10 (1 / log2(1 + rank) when rank ≤ 10) and MRR (1 / rank), means over examples.
public struct RankMetrics: Sendable, Equatable, Codable {
    public var examples = 0
    public var hits1 = 0
    public var hits3 = 0
    public var ndcgSum = 0.0
    public var reciprocalRankSum = 0.0

    public init() {}

    /// Adds one example whose ground truth is ranked `rank` (1-based).
    public mutating func add(rank: Int) {
        precondition(rank >= 1, "ranks are 1-based")
        examples += 1
        if rank == 1 { hits1 += 1 }
        if rank <= 3 { hits3 += 1 }
        if rank <= 10 { ndcgSum += 1 / log2(1 + Double(rank)) }
        reciprocalRankSum += 1 / Double(rank)
    }

    func mean(_ x: Double) -> Double { examples == 0 ? 0 : x / Double(examples) }
    public var hitRate1: Double { mean(Double(hits1)) }
    public var hitRate3: Double { mean(Double(hits3)) }
    public var ndcg10: Double { mean(ndcgSum) }
    public var mrr: Double { mean(reciprocalRankSum) }

    /// The named figures in `tmf eval --rank`'s order.
    public var figures: [(String, String)] {
        [("HitRate@1", String(format: "%.4f", hitRate1)), ("HitRate@3", String(format: "%.4f", hitRate3)),
         ("NDCG@10", String(format: "%.4f", ndcg10)), ("MRR", String(format: "%.4f", mrr)),
         ("ValidRatio", "1.0000"), ("Examples", String(examples))]
    }

    /// The lines `tmf eval --rank` prints: `HitRate@1`, `HitRate@3`, `NDCG@10`, `MRR`,
    /// `ValidRatio: 1.0000`, `Examples`.
    public var lines: [String] { figures.map { "\($0.0): \($0.1)" } }

    /// One JSON object with the same keys as `lines`.
    public var json: String { "{" + figures.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}" }
}

/// The non-LLM baselines that need only data.
public enum Baseline: String, Sendable, CaseIterable {
    /// The candidate with the most target-behavior events in the training data (every event
    /// except the valid and test targets); ties go to the earlier candidate in the (shuffled) list.
    case popular
    /// A uniformly random candidate, from `SeededRNG(seed:key: [user, split, "random"])`.
    case random
}

extension Dataset {
    /// Target-behavior event counts per item, leaving out the valid and test target events.
    public func trainingPopularity(_ splits: SplitExamples) -> [Int] {
        var counts = [Int](repeating: 0, count: items.count)
        let t = UInt8(target)
        for e in 0..<eventCount where eventBehaviors[e] == t { counts[Int(eventItems[e])] += 1 }
        for x in splits.valid + splits.test { counts[x.target] -= 1 }
        return counts
    }

    /// A baseline's scores of one example's candidates (higher is better): popularity counts, or
    /// for `random` a seeded random permutation keyed by (seed, user, split) — its top item is the
    /// generative row's pick.
    public func baselineScores(_ baseline: Baseline, example x: Example, candidates cands: [Int], seed: UInt64,
                               popularity: [Int]) -> [Double] {
        switch baseline {
        case .popular:
            return cands.map { Double(popularity[$0]) }
        case .random:
            var rng = SeededRNG(seed: seed, key: [userIDs[x.user], x.split.rawValue, "random"])
            let pick = rng.nextInt(below: cands.count)
            // The rest in a seeded order below the pick.
            var order = Array(cands.indices.filter { $0 != pick })
            for k in order.indices.reversed() where k > 0 { order.swapAt(k, rng.nextInt(below: k + 1)) }
            var scores = [Double](repeating: 0, count: cands.count)
            scores[pick] = Double(cands.count)
            for (r, k) in order.enumerated() { scores[k] = Double(cands.count - 1 - r) }
            return scores
        }
    }

    /// Ranks the candidate sets of a split with a baseline (`tmf eval --baseline NAME --rank`).
    /// - Parameters:
    ///   - answer: called per example with its candidates and their scores.
    public func rank(baseline: Baseline, split: Split, seed: UInt64, limit: Int? = nil, splits: SplitExamples? = nil,
                     answer: ((Example, [Int], [Double]) throws -> Void)? = nil) throws -> RankMetrics {
        let splits = splits ?? SplitExamples(self)
        var examples = splits[split]
        if let limit { examples = Array(examples.prefix(limit)) }
        let popularity = baseline == .popular ? trainingPopularity(splits) : []
        var metrics = RankMetrics()
        for x in examples {
            let cands = try candidates(for: x, seed: seed)
            let scores = baselineScores(baseline, example: x, candidates: cands, seed: seed, popularity: popularity)
            metrics.add(rank: rankOf(truth: cands.firstIndex(of: x.target)!, scores: scores))
            try answer?(x, cands, scores)
        }
        return metrics
    }

    /// Scores a baseline on a split, over the same candidate sets every model sees: its answer is
    /// its top-ranked candidate (popular: the earlier one on ties).
    /// - Parameters:
    ///   - limit: score only the first `limit` examples.
    ///   - answer: called per example with its candidates and the answer's score.
    /// - Throws: `DataError` from candidate sampling.
    public func evaluate(baseline: Baseline, split: Split, seed: UInt64, limit: Int? = nil,
                         splits: SplitExamples? = nil,
                         answer: ((Example, [Int], AnswerScore) throws -> Void)? = nil) throws -> EvalMetrics {
        var metrics = EvalMetrics()
        _ = try rank(baseline: baseline, split: split, seed: seed, limit: limit, splits: splits) { x, cands, scores in
            let pick = rankedCandidates(scores)[0]
            let titles = cands.map { items[$0].title }
            let score = scoreAnswer(titles[pick], candidateTitles: titles, truth: cands.firstIndex(of: x.target)!)
            metrics.add(score)
            try answer?(x, cands, score)
        }
        return metrics
    }
}
