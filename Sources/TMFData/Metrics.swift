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

    /// Scores a baseline on a split, over the same candidate sets every model sees.
    /// - Parameters:
    ///   - limit: score only the first `limit` examples.
    /// - Throws: `DataError` from candidate sampling.
    public func evaluate(baseline: Baseline, split: Split, seed: UInt64, limit: Int? = nil,
                         splits: SplitExamples? = nil) throws -> EvalMetrics {
        let splits = splits ?? SplitExamples(self)
        var examples = splits[split]
        if let limit { examples = Array(examples.prefix(limit)) }
        let popularity = baseline == .popular ? trainingPopularity(splits) : []
        var metrics = EvalMetrics()
        for x in examples {
            let cands = try candidates(for: x, seed: seed)
            let pick: Int
            switch baseline {
            case .popular:
                var best = 0
                for k in cands.indices.dropFirst() where popularity[cands[k]] > popularity[cands[best]] { best = k }
                pick = best
            case .random:
                var rng = SeededRNG(seed: seed, key: [userIDs[x.user], split.rawValue, "random"])
                pick = rng.nextInt(below: cands.count)
            }
            let titles = cands.map { items[$0].title }
            metrics.add(scoreAnswer(titles[pick], candidateTitles: titles, truth: cands.firstIndex(of: x.target)!))
        }
        return metrics
    }
}
