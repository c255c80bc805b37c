import Foundation
import XCTest
@testable import TMFTrainer
import TMFData
import TMFTensor
import TMFTestSupport

/// Candidate ranking: the cached, batched scorer against one plain forward pass per candidate,
/// and the ranking metrics' definitions (DESIGN.md §4).
final class RankingTests: XCTestCase {
    /// Each candidate's log-likelihood from `scoreCandidates` (prompt once, cache replicated,
    /// continuations batched) equals the one from a full forward pass over prompt + title + EOS
    /// (the training loss's path: no cache, no batching), at every task level.
    func testScoresEqualFullForwardPasses() throws {
        for level in [TaskLevel.easy, .medium, .hard] {
            let s = try TinySetup(seed: 3)
            let r = s.recommender
            // Make LoRA non-trivial, so the adapters' path is part of the comparison.
            for (_, t) in r.parameters(of: .lora) { for i in 0..<t.count { t.pointer[i] = 0.05 * Float((i * 7919) % 13) - 0.3 } }
            let prompts = try s.prompts(level: level, count: 3, withAnswer: false)
            let candidateSets = try s.splits.train.prefix(3).map { try TinySetup.dataset.candidates(for: $0, seed: 42) }
            let answers = try candidateSets.map { try r.answerTokens($0, dataset: TinySetup.dataset) }
            let scored = r.scoreCandidates(prompts, answers: answers, level: level)
            XCTAssertEqual(scored.count, 3)
            let eos = r.encoder.tokenizer.eosID
            for (b, p) in prompts.enumerated() {
                XCTAssertEqual(scored[b].logLikelihoods.count, candidateSets[b].count)
                for (k, a) in answers[b].enumerated() {
                    let prompt = Array(p.tokens[..<p.promptLength])
                    let full = prompt + a + [eos]
                    var labels = [Int](repeating: -100, count: full.count)
                    for i in (prompt.count - 1)..<(full.count - 1) { labels[i] = full[i + 1] }
                    let one = EncodedPrompt(tokens: full, labels: labels, promptLength: p.promptLength,
                                            itemSlots: p.itemSlots, behaviorSlots: p.behaviorSlots)
                    let (loss, _) = withNoGrad { r.loss([one], level: level) }
                    let reference = -Double(loss.item) * Double(a.count + 1)
                    XCTAssertEqual(scored[b].tokenCounts[k], a.count + 1)
                    XCTAssertEqual(scored[b].logLikelihoods[k], reference, accuracy: 1e-4 * max(1, abs(reference)),
                                   "\(level) prompt \(b) candidate \(k)")
                }
            }
            // Normalisations and the softmax.
            let sum = scored[0].scores(.sum), mean = scored[0].scores(.mean)
            for k in sum.indices { XCTAssertEqual(mean[k], sum[k] / Double(scored[0].tokenCounts[k]), accuracy: 1e-12) }
            let probs = scored[0].probabilities(.mean)
            XCTAssertEqual(probs.reduce(0, +), 1, accuracy: 1e-9)
            XCTAssertEqual(rankedCandidates(probs), rankedCandidates(mean))
        }
    }

    /// `rank` over examples agrees with scoring the same prompts by hand, and the metrics count
    /// the ground truth's rank.
    func testRankMatchesScores() throws {
        let s = try TinySetup(seed: 5)
        let r = s.recommender
        let examples = Array(s.splits.valid.prefix(5))
        var seen: [(Example, [Int], CandidateScores)] = []
        let metrics = try r.rank(dataset: TinySetup.dataset, examples: examples, seed: 42, historyLength: 3,
                                 normalization: .sum, batchSize: 2) { seen.append(($0, $1, $2)) }
        XCTAssertEqual(metrics.examples, 5)
        XCTAssertEqual(seen.count, 5)
        var expected = RankMetrics()
        for (ex, candidates, scores) in seen {
            XCTAssertEqual(candidates, try TinySetup.dataset.candidates(for: ex, seed: 42))
            expected.add(rank: rankOf(truth: candidates.firstIndex(of: ex.target)!, scores: scores.scores(.sum)))
        }
        XCTAssertEqual(metrics, expected)
    }

    func testRankOfBreaksTiesByCandidateOrder() {
        XCTAssertEqual(rankOf(truth: 1, scores: [0.5, 0.9, 0.1]), 1)
        XCTAssertEqual(rankOf(truth: 2, scores: [0.5, 0.9, 0.1]), 3)
        XCTAssertEqual(rankOf(truth: 1, scores: [0.5, 0.5, 0.5]), 2)
        XCTAssertEqual(rankOf(truth: 0, scores: [0.5, 0.5, 0.5]), 1)
        XCTAssertEqual(rankedCandidates([0.1, 0.7, 0.7, 0.3]), [1, 2, 3, 0])
    }

    func testRankMetricsDefinitions() {
        var m = RankMetrics()
        for rank in [1, 2, 3, 4, 11] { m.add(rank: rank) }
        XCTAssertEqual(m.hitRate1, 0.2, accuracy: 1e-12)
        XCTAssertEqual(m.hitRate3, 0.6, accuracy: 1e-12)
        let ndcg = (1 + 1 / log2(3.0) + 1 / log2(4.0) + 1 / log2(5.0)) / 5
        XCTAssertEqual(m.ndcg10, ndcg, accuracy: 1e-12)
        XCTAssertEqual(m.mrr, (1 + 0.5 + 1 / 3.0 + 0.25 + 1 / 11.0) / 5, accuracy: 1e-12)
        XCTAssertEqual(m.lines, ["HitRate@1: 0.2000", "HitRate@3: 0.6000", String(format: "NDCG@10: %.4f", ndcg),
                                 String(format: "MRR: %.4f", m.mrr), "ValidRatio: 1.0000", "Examples: 5"])
        XCTAssertEqual(m.json, "{\"HitRate@1\": 0.2000, \"HitRate@3\": 0.6000, \"NDCG@10\": \(String(format: "%.4f", ndcg)), "
                       + "\"MRR\": \(String(format: "%.4f", m.mrr)), \"ValidRatio\": 1.0000, \"Examples\": 5}")
    }

    /// The baselines' ranked top item is their generative answer: ranking HitRate@1 equals
    /// generative HitRate@1(all); popular's scores are the training counts.
    func testBaselineRankingAgreesWithGenerativeRows() throws {
        let d = TinySetup.dataset
        let splits = SplitExamples(d)
        for kind in Baseline.allCases {
            let gen = try d.evaluate(baseline: kind, split: .test, seed: 42, splits: splits)
            var checked = 0
            let popularity = d.trainingPopularity(splits)
            let ranked = try d.rank(baseline: kind, split: .test, seed: 42, splits: splits) { _, candidates, scores in
                XCTAssertEqual(candidates.count, scores.count)
                switch kind {
                case .random: XCTAssertEqual(Set(scores).count, scores.count, "random is a permutation")
                case .popular: XCTAssertEqual(scores, candidates.map { Double(popularity[$0]) })
                }
                checked += 1
            }
            XCTAssertEqual(checked, gen.examples)
            XCTAssertEqual(ranked.examples, gen.examples)
            XCTAssertEqual(ranked.hitRate1, gen.hitRateAll, accuracy: 1e-12, "\(kind)")
            XCTAssertGreaterThan(ranked.hitRate3, ranked.hitRate1)
        }
        // A seeded shuffle: random ranks the truth about uniformly (MRR of 11 uniform ranks ≈ 0.27).
        let random = try d.rank(baseline: .random, split: .test, seed: 42)
        XCTAssertEqual(random.mrr, (1...11).map { 1 / Double($0) }.reduce(0, +) / 11, accuracy: 0.05)
    }

    /// The training split's repeat rate: the bundled shop repeats history items, a shop where
    /// every purchase is new does not.
    func testRepeatRate() throws {
        let d = TinySetup.dataset
        let rate = d.repeatRate(SplitExamples(d).train)
        XCTAssertGreaterThan(rate, 0.3)
        XCTAssertLessThanOrEqual(rate, 1)
        XCTAssertEqual(d.repeatRate([]), 0)
    }
}
