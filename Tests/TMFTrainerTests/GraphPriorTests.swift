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

    /// Each kind of example (the user touched a candidate before, or not) gets the weight best for
    /// it when validation has at least `minimumGroup` of it, else the overall weight.
    func testChooseWeightsByHistory() {
        // Touched examples: the graph right, the LLM wrong; untouched ones: the LLM right, the
        // graph wrong (as MBHT on Retailrocket's new items).
        let graphRight = (truth: 1, scores: CandidateScores(logLikelihoods: [-1, -1.2], tokenCounts: [1, 1], graphScores: [0, 3]))
        let llmRight = (truth: 0, scores: CandidateScores(logLikelihoods: [-1, -1.5], tokenCounts: [1, 1], graphScores: [0, 5]))
        let n = GraphPrior.minimumGroup
        let weights: [Double] = [0, 0.25, 1, 16]
        var scored = Array(repeating: graphRight, count: n + 10) + Array(repeating: llmRight, count: n)
        var touched = Array(repeating: true, count: n + 10) + Array(repeating: false, count: n)
        var choice = GraphPrior.choose(scored, touched: touched, normalization: .sum, weights: weights)
        XCTAssertEqual(choice.weight, 0.25, "overall: the touched majority wins, from weight 0.25 on")
        XCTAssertEqual(choice.byHistory, GraphWeights(touched: 0.25, untouched: 0))
        XCTAssertEqual([choice.touchedCount, choice.untouchedCount], [n + 10, n])
        XCTAssertEqual(choice.combined.hits1, 2 * n + 10, "each kind at its own weight: every example right")
        XCTAssertEqual(choice.chosen.hits1, n + 10)
        // Too few untouched examples for a weight of their own: the overall weight.
        scored = Array(scored.prefix(n + 10)) + Array(repeating: llmRight, count: n - 1)
        touched = Array(touched.prefix(n + 10)) + Array(repeating: false, count: n - 1)
        choice = GraphPrior.choose(scored, touched: touched, normalization: .sum, weights: weights)
        XCTAssertEqual(choice.byHistory, GraphWeights(touched: 0.25, untouched: 0.25))
        XCTAssertEqual(choice.untouchedCount, n - 1)
        // No flags: every example is untouched.
        choice = GraphPrior.choose(Array(repeating: llmRight, count: n), normalization: .sum, weights: weights)
        XCTAssertEqual(choice.byHistory, GraphWeights(0))
        XCTAssertEqual([choice.touchedCount, choice.untouchedCount], [0, n])
        XCTAssertEqual(GraphWeights(touched: 2, untouched: 0.5)(touched: true), 2)
        XCTAssertEqual(GraphWeights(touched: 2, untouched: 0.5)(touched: false), 0.5)
        // `tmf recommend`'s kind: whether the request's history holds a candidate.
        XCTAssertEqual(GraphWeights(touched: 2, untouched: 0.5)(candidates: [4, 9, 1], history: [7, 9]), 2)
        XCTAssertEqual(GraphWeights(touched: 2, untouched: 0.5)(candidates: [4, 1], history: [7, 9]), 0.5)
        XCTAssertEqual(GraphWeights(touched: 2, untouched: 0.5)(candidates: [4], history: []), 0.5)
        XCTAssertFalse(GraphWeights(0).usesGraph)
        XCTAssertTrue(GraphWeights(touched: 0, untouched: 0.125).usesGraph)
    }

    /// tmf.json's weights: `--graph-weight` overrides both; folders from before the weights by
    /// history use `graphWeight` for both; neither: the LLM alone.
    func testRankingWeightsFromSpec() throws {
        let s = try TinySetup(seed: 9)
        var spec = ModelSpec(dataset: "shop", datasetFingerprint: "f", llm: "llm", clip: "clip", modalities: .full,
                             lora: s.recommender.lora.configuration, fusion: s.recommender.fusion.configuration,
                             training: TrainingParameters(), graph: Pipeline.graphConfiguration(TinySetup.dataset, length: 40),
                             graphTraining: MBHTTrainingParameters(), behaviors: ["view"], target: "view", specialTokens: [:])
        XCTAssertEqual(spec.rankingWeights(), GraphWeights(0))
        spec.graphWeight = 2
        XCTAssertEqual(spec.rankingWeights(), GraphWeights(2))
        spec.graphWeights = GraphWeights(touched: 4, untouched: 0.25)
        XCTAssertEqual(spec.rankingWeights(), GraphWeights(touched: 4, untouched: 0.25))
        XCTAssertEqual(spec.rankingWeights(override: 0), GraphWeights(0))
        let decoded = try JSONDecoder().decode(ModelSpec.self, from: JSONEncoder().encode(spec))
        XCTAssertEqual(decoded.graphWeights, spec.graphWeights)
    }

    /// `rank` with MBHT attaches MBHT's own scores of each candidate set (the `--baseline mbht`
    /// history) and ranks by the combined score.
    func testRankWithGraphPrior() throws {
        let s = try TinySetup(seed: 9)
        let data = TinySetup.dataset
        // Larger initial weights than training starts from, so that MBHT's scores differ enough
        // between candidates for its weight to change rankings.
        var configuration = Pipeline.graphConfiguration(data, length: 40)
        configuration.initializerRange = 0.5
        let graph = try MBHTModel(configuration: configuration, seed: 3)
        let examples = Array(s.splits.valid.prefix(12))
        let weights = GraphWeights(touched: 16, untouched: 0)
        var seen: [(Example, [Int], CandidateScores)] = []
        let metrics = try s.recommender.rank(dataset: data, examples: examples, seed: 42, historyLength: 3, normalization: .sum,
                                             graph: graph, graphWeights: weights, batchSize: 4) { seen.append(($0, $1, $2)) }
        XCTAssertEqual(seen.count, examples.count)
        let reference = try Pipeline.graphExamples(data, examples: examples, seed: 42, length: 40)
        let graphScores = try graph.scores(histories: reference.map(\.history), candidates: reference.map(\.candidates))
        var expected = RankMetrics()
        var kinds = Set<Bool>()
        for (i, (ex, candidates, scores)) in seen.enumerated() {
            XCTAssertEqual(candidates, reference[i].candidates)
            // Equal up to summation order: `rank` scores 4 examples at a time and the reference
            // all 6, and OpenBLAS may block a product differently for another row count (Zen 4).
            let got = try XCTUnwrap(scores.graphScores)
            XCTAssertEqual(got.count, graphScores[i].count)
            for (a, b) in zip(got, graphScores[i]) { XCTAssertEqual(a, Double(b), accuracy: 1e-6) }
            // The weight of the example's kind: the user touched one of its candidates before, or not.
            let history = Set(data.history(of: ex, maxLength: 1_000_000).map(\.item))
            let touched = candidates.contains { history.contains($0) }
            XCTAssertEqual(data.touchedBefore(ex, anyOf: candidates), touched)
            kinds.insert(touched)
            expected.add(rank: rankOf(truth: candidates.firstIndex(of: ex.target)!, scores: scores.scores(.sum, graphWeight: weights(touched: touched))))
        }
        XCTAssertEqual(metrics, expected)
        XCTAssertEqual(kinds, [true, false], "the examples hold both kinds")
        // Each kind's weight matters here: either weight for both kinds ranks otherwise.
        for both in [GraphWeights(16), GraphWeights(0)] {
            let other = try s.recommender.rank(dataset: data, examples: examples, seed: 42, historyLength: 3, normalization: .sum,
                                               graph: graph, graphWeights: both, batchSize: 4)
            XCTAssertNotEqual(other, metrics, "\(both)")
        }
        // The LLM's part is the same as without the graph.
        var plain: [CandidateScores] = []
        _ = try s.recommender.rank(dataset: data, examples: examples, seed: 42, historyLength: 3, normalization: .sum,
                                   batchSize: 4) { plain.append($2) }
        XCTAssertEqual(plain.map(\.logLikelihoods), seen.map(\.2.logLikelihoods))
        XCTAssertTrue(plain.allSatisfy { $0.graphScores == nil })
    }
}
