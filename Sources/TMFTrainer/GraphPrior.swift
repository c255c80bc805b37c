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
public enum GraphPrior {
    /// The weights tried, smallest first (0: the LLM alone; 16: MBHT, with the LLM breaking
    /// near-ties).
    public static let weights: [Double] = [0, 0.125, 0.25, 0.5, 1, 2, 4, 8, 16]

    /// One weight's validation figures.
    public struct Trial: Sendable, Equatable, Codable {
        public var weight: Double
        public var metrics: RankMetrics
    }

    /// The outcome of `choose`.
    public struct Choice: Sendable, Equatable {
        /// The chosen weight.
        public var weight: Double
        /// Every weight tried, in `weights` order.
        public var trials: [Trial]
        /// MBHT's scores alone on the same examples.
        public var graphAlone: RankMetrics

        /// The chosen weight's figures.
        public var chosen: RankMetrics { trials.first { $0.weight == weight }!.metrics }
    }

    /// Picks the weight with the highest HitRate@1 over `scored`, then the highest MRR, then the
    /// smallest weight.
    ///
    /// - Parameters:
    ///   - scored: per example, the ground truth's index in its candidate list and the candidates'
    ///     scores, with `graphScores` set.
    ///   - normalization: how the LLM's log-likelihoods become scores.
    /// - Precondition: `scored` is not empty and every entry has graph scores.
    public static func choose(_ scored: [(truth: Int, scores: CandidateScores)], normalization: LengthNormalization,
                              weights: [Double] = GraphPrior.weights) -> Choice {
        precondition(!scored.isEmpty && !weights.isEmpty, "nothing to choose from")
        precondition(scored.allSatisfy { $0.scores.graphScores != nil }, "every example needs its graph scores")
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
        var graph = RankMetrics()
        for s in scored { graph.add(rank: rankOf(truth: s.truth, scores: s.scores.graphScores!)) }
        return Choice(weight: best.weight, trials: trials, graphAlone: graph)
    }
}
