import Foundation
import TMFData
import TMFGraph

/// The graph prior of candidate ranking: MBHT's opinion of each candidate, weighted into the LLM's
/// answer log-likelihood (`CandidateScores.scores(_:graphWeight:)`), with the weight chosen on
/// the validation split at the end of `tmf train` and kept in tmf.json (`graphWeight`).
///
/// Why: TMF ranks the candidates an MBHT-style generator proposes; a re-ranker that may ignore
/// the generator's collaborative signal can end up worse than the generator itself (a small LLM
/// on MovieLens-100k does). With the weight chosen on validation among `weights`, 0 included,
/// the combination is at least as good as the LLM alone there, and close to MBHT alone when
/// that is better.
///
/// The weight is chosen twice more, once for the examples where the user touched one of the
/// candidates before and once for the rest (`GraphWeights`): MBHT learns repeats from sequences
/// that are mostly repeats and can be a poor judge of items new to the user, where the LLM's
/// knowledge of the items counts most; each kind gets its own weight when validation has at
/// least `minimumGroup` examples of it, else the overall one.
public enum GraphPrior {
    /// The weights tried, smallest first (0: the LLM alone; 16: MBHT, with the LLM breaking
    /// near-ties).
    public static let weights: [Double] = [0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16]

    /// One weight's validation figures.
    public struct Trial: Sendable, Equatable, Codable {
        public var weight: Double
        public var metrics: RankMetrics
    }

    /// Validation examples a kind needs for a weight of its own.
    public static let minimumGroup = 50

    /// The outcome of `choose`.
    public struct Choice: Sendable, Equatable {
        /// The weight chosen over every example.
        public var weight: Double
        /// The weights by kind of example (each kind's own choice, or `weight` for a kind with
        /// fewer than `minimumGroup` examples).
        public var byHistory: GraphWeights
        /// Validation examples where the user touched a candidate before, and the rest.
        public var touchedCount: Int
        public var untouchedCount: Int
        /// The figures of `byHistory` over every example.
        public var combined: RankMetrics
        /// Every weight tried, in `weights` order.
        public var trials: [Trial]
        /// MBHT's scores alone on the same examples.
        public var graphAlone: RankMetrics

        /// The chosen weight's figures.
        public var chosen: RankMetrics { trials.first { $0.weight == weight }!.metrics }
    }

    /// Picks the weight with the highest HitRate@1 over `scored`, then the highest MRR, then the
    /// smallest weight; and the same over each kind of example (`touched`) with at least
    /// `minimumGroup` examples.
    ///
    /// - Parameters:
    ///   - scored: per example, the ground truth's index in its candidate list and the candidates'
    ///     scores, with `graphScores` set.
    ///   - touched: per example, whether the user touched one of its candidates before (nil:
    ///     none did).
    ///   - normalization: how the LLM's log-likelihoods become scores.
    /// - Precondition: `scored` is not empty, every entry has graph scores, and `touched` (when
    ///   given) has one flag per entry.
    public static func choose(_ scored: [(truth: Int, scores: CandidateScores)], touched: [Bool]? = nil,
                              normalization: LengthNormalization, weights: [Double] = GraphPrior.weights) -> Choice {
        precondition(!scored.isEmpty && !weights.isEmpty, "nothing to choose from")
        precondition(scored.allSatisfy { $0.scores.graphScores != nil }, "every example needs its graph scores")
        precondition(touched.map { $0.count == scored.count } ?? true, "one touched flag per example")
        let overall = best(scored, normalization: normalization, weights: weights)
        let flags = touched ?? Array(repeating: false, count: scored.count)
        func own(_ kind: Bool) -> (weight: Double, count: Int) {
            let part = zip(scored, flags).filter { $0.1 == kind }.map(\.0)
            return (part.count >= minimumGroup ? best(part, normalization: normalization, weights: weights).weight : overall.weight,
                    part.count)
        }
        let (t, u) = (own(true), own(false))
        let byHistory = GraphWeights(touched: t.weight, untouched: u.weight)
        var combined = RankMetrics(), graph = RankMetrics()
        for (s, kind) in zip(scored, flags) {
            combined.add(rank: rankOf(truth: s.truth, scores: s.scores.scores(normalization, graphWeight: byHistory(touched: kind))))
            graph.add(rank: rankOf(truth: s.truth, scores: s.scores.graphScores!))
        }
        return Choice(weight: overall.weight, byHistory: byHistory, touchedCount: t.count, untouchedCount: u.count,
                      combined: combined, trials: overall.trials, graphAlone: graph)
    }

    /// The best weight over `scored` (see `choose`) and every weight's figures.
    static func best(_ scored: [(truth: Int, scores: CandidateScores)], normalization: LengthNormalization,
                     weights: [Double]) -> (weight: Double, trials: [Trial]) {
        let trials = weights.map { w in
            var m = RankMetrics()
            for s in scored { m.add(rank: rankOf(truth: s.truth, scores: s.scores.scores(normalization, graphWeight: w))) }
            return Trial(weight: w, metrics: m)
        }
        var best = trials[0]
        for t in trials.dropFirst() where t.metrics.hits1 > best.metrics.hits1
            || (t.metrics.hits1 == best.metrics.hits1 && t.metrics.reciprocalRankSum > best.metrics.reciprocalRankSum + 1e-9) {
            best = t
        }
        return (best.weight, trials)
    }
}

/// The graph prior's weights (`GraphPrior`) for the two kinds of ranking request: the user touched
/// (any behavior) one of the candidates before, or none of them.
public struct GraphWeights: Codable, Sendable, Equatable {
    public var touched: Double
    public var untouched: Double

    public init(touched: Double, untouched: Double) {
        self.touched = touched
        self.untouched = untouched
    }

    /// One weight for both kinds.
    public init(_ weight: Double) {
        self.init(touched: weight, untouched: weight)
    }

    /// The weight for a request of that kind.
    public func callAsFunction(touched: Bool) -> Double { touched ? self.touched : untouched }

    /// The weight for ranking `candidates` for a user whose history holds `history`.
    public func callAsFunction(candidates: [Int], history: Set<Int>) -> Double {
        self(touched: candidates.contains { history.contains($0) })
    }

    /// Whether MBHT's scores are needed at all.
    public var usesGraph: Bool { touched > 0 || untouched > 0 }
}
