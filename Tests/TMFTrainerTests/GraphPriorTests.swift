import Foundation
import XCTest
@testable import TMFTrainer
import TMFData
import TMFGraph
import TMFTensor
import TMFTestSupport

/// The graph prior of candidate ranking: the score formula, the choice of its weight on
/// validation, and `rank` with MBHT attached.
final class GraphPriorTests: XCTestCase {
    /// score = LLM score (sum or mean) + w · log softmax(graph scores), by hand.
    func testScoreFormula() {
        let c = CandidateScores(logLikelihoods: [-2, -6, -3], tokenCounts: [2, 3, 1], graphScores: [1, 3, 0])
        let lse = log(exp(1.0) + exp(3.0) + exp(0.0))
        let expected = [-2 + 0.5 * (1 - lse), -6 + 0.5 * (3 - lse), -3 + 0.5 * (0 - lse)]
        for (a, b) in zip(c.scores(.sum, graphWeight: 0.5), expected) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        let expectedMean = [-1 + 2 * (1 - lse), -2 + 2 * (3 - lse), -3 + 2 * (0 - lse)]
        for (a, b) in zip(c.scores(.mean, graphWeight: 2), expectedMean) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        // Weight 0 is the LLM alone, with or without graph scores.
        XCTAssertEqual(c.scores(.sum, graphWeight: 0), [-2, -6, -3])
        XCTAssertEqual(CandidateScores(logLikelihoods: [-2, -6, -3], tokenCounts: [2, 3, 1]).scores(.sum), [-2, -6, -3])
        // The order flips from the LLM's (0 first) to the graph's (1 first) as the weight grows.
        XCTAssertEqual(rankedCandidates(c.scores(.sum, graphWeight: 0))[0], 0)
        XCTAssertEqual(rankedCandidates(c.scores(.sum, graphWeight: 8))[0], 1)
        let p = c.probabilities(.sum, graphWeight: 1)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-12)
        XCTAssertEqual(rankedCandidates(p), rankedCandidates(c.scores(.sum, graphWeight: 1)))
    }

    /// The weight with the best HitRate@1 wins; among equals the better MRR, then the smaller weight.
    func testChooseWeight() {
        // Example A: the LLM is right (truth 0), the graph mildly disagrees; B and C: the LLM is
        // wrong, the graph strongly right. A middle weight gets all three; 0 gets only A, a large
        // weight loses A.
        let a = (truth: 0, scores: CandidateScores(logLikelihoods: [-1, -1.5], tokenCounts: [1, 1], graphScores: [0, 1]))
        let b = (truth: 1, scores: CandidateScores(logLikelihoods: [-1, -1.2], tokenCounts: [1, 1], graphScores: [0, 3]))
        let c = (truth: 1, scores: CandidateScores(logLikelihoods: [-1, -1.4], tokenCounts: [1, 1], graphScores: [0, 4]))
        let choice = GraphPrior.choose([a, b, c], normalization: .sum, weights: [0, 0.25, 1, 16])
        XCTAssertEqual(choice.weight, 0.25)
        XCTAssertEqual(choice.trials.map(\.weight), [0, 0.25, 1, 16])
        XCTAssertEqual(choice.trials.map(\.metrics.hits1), [1, 3, 2, 2])
        XCTAssertEqual(choice.chosen.hits1, 3)
        XCTAssertEqual(choice.graphAlone.hits1, 2)
        // All weights equal: the smallest is kept.
        let same = (truth: 0, scores: CandidateScores(logLikelihoods: [0, -5], tokenCounts: [1, 1], graphScores: [1, 0]))
        XCTAssertEqual(GraphPrior.choose([same], normalization: .sum).weight, 0)
        // Equal HitRate@1, better MRR: the larger weight (truth moves from rank 3 to rank 2).
        let mrr = (truth: 2, scores: CandidateScores(logLikelihoods: [0, -1, -2], tokenCounts: [1, 1, 1], graphScores: [0, 0, 1.5]))
        XCTAssertEqual(GraphPrior.choose([mrr], normalization: .sum, weights: [0, 1]).weight, 1)
        XCTAssertEqual(GraphPrior.weights.first, 0)
    }

    /// `rank` with MBHT attaches MBHT's own scores of each candidate set (the `--baseline mbht`
    /// history) and ranks by the combined score.
    func testRankWithGraphPrior() throws {
        let s = try TinySetup(seed: 9)
        let data = TinySetup.dataset
        let graph = try MBHTModel(configuration: Pipeline.graphConfiguration(data, length: 40), seed: 3)
        let examples = Array(s.splits.valid.prefix(6))
        var seen: [(Example, [Int], CandidateScores)] = []
        let metrics = try s.recommender.rank(dataset: data, examples: examples, seed: 42, historyLength: 3, normalization: .sum,
                                             graph: graph, graphWeight: 2, batchSize: 4) { seen.append(($0, $1, $2)) }
        XCTAssertEqual(seen.count, 6)
        let reference = try Pipeline.graphExamples(data, examples: examples, seed: 42, length: 40)
        let graphScores = try graph.scores(histories: reference.map(\.history), candidates: reference.map(\.candidates))
        var expected = RankMetrics()
        for (i, (ex, candidates, scores)) in seen.enumerated() {
            XCTAssertEqual(candidates, reference[i].candidates)
            // Equal up to summation order: `rank` scores 4 examples at a time and the reference
            // all 6, and OpenBLAS may block a product differently for another row count (Zen 4).
            let got = try XCTUnwrap(scores.graphScores)
            XCTAssertEqual(got.count, graphScores[i].count)
            for (a, b) in zip(got, graphScores[i]) { XCTAssertEqual(a, Double(b), accuracy: 1e-6) }
            expected.add(rank: rankOf(truth: candidates.firstIndex(of: ex.target)!, scores: scores.scores(.sum, graphWeight: 2)))
        }
        XCTAssertEqual(metrics, expected)
        // The LLM's part is the same as without the graph.
        var plain: [CandidateScores] = []
        _ = try s.recommender.rank(dataset: data, examples: examples, seed: 42, historyLength: 3, normalization: .sum,
                                   batchSize: 4) { plain.append($2) }
        XCTAssertEqual(plain.map(\.logLikelihoods), seen.map(\.2.logLikelihoods))
        XCTAssertTrue(plain.allSatisfy { $0.graphScores == nil })
    }
}
