import Foundation
import TMFData
import TMFGraph
import TMFTensor

extension Recommender {
    /// The prompt of `example` at `level` with its candidate set and a template drawn, as the
    /// paper samples templates at test time too, from `SeededRNG(seed:key: [user, split,
    /// "template"])`: every run and every model sees the same template for the same example.
    public func evaluationPrompt(_ example: Example, dataset: Dataset, seed: UInt64, historyLength: Int,
                                 level: TaskLevel) throws -> (prompt: Prompt, candidates: [Int]) {
        let candidates = try dataset.candidates(for: example, seed: seed)
        let prompt = PromptBuilder(dataset: dataset).prompt(for: example, in: dataset, candidates: candidates, level: level,
                                                           template: Self.evaluationTemplate(example, dataset: dataset, seed: seed),
                                                           historyLength: historyLength)
        return (prompt, candidates)
    }

    /// The template of an evaluation example (see `evaluationPrompt`).
    public static func evaluationTemplate(_ example: Example, dataset: Dataset, seed: UInt64) -> Int {
        var rng = SeededRNG(seed: seed, key: [dataset.userIDs[example.user], example.split.rawValue, "template"])
        return PromptBuilder.randomTemplate(using: &rng)
    }

    /// Answer tokens of candidate titles (as training encodes answers), for `scoreCandidates`.
    public func answerTokens(_ items: [Int], dataset: Dataset) throws -> [[Int]] {
        try items.map { try encoder.tokenizer.encode(dataset.items[$0].title, addBOS: false) }
    }

    /// Builds the evaluation prompts of `examples` at this model's hardest level in chunks of
    /// `batchSize` and hands each chunk (examples, encoded prompts, candidate sets) to `body`;
    /// reports (done, total) after each chunk and stops when `progress` returns false. In a
    /// group of several ranks, chunk k goes to rank k mod size (whole chunks, so every prompt
    /// meets the matrix sizes it meets in one process) and (done, total) count this rank's share.
    func forEachPromptBatch(dataset: Dataset, examples: [Example], seed: UInt64, historyLength: Int, batchSize: Int,
                            group: ProcessGroup = .single, progress: ((Int, Int) -> Bool)?,
                            _ body: ([Example], [EncodedPrompt], [[Int]]) throws -> Void) throws {
        let level = modalities.hardestLevel
        let mine = group.blocks(of: examples.count, block: batchSize)
        let total = mine.reduce(0) { $0 + $1.count }
        var done = 0
        for range in mine {
            let chunk = Array(examples[range])
            var encoded: [EncodedPrompt] = [], candidateSets: [[Int]] = []
            for ex in chunk {
                let (prompt, candidates) = try evaluationPrompt(ex, dataset: dataset, seed: seed, historyLength: historyLength, level: level)
                encoded.append(try encoder.encode(prompt, withAnswer: false))
                candidateSets.append(candidates)
            }
            try body(chunk, encoded, candidateSets)
            done += chunk.count
            if let progress, !progress(done, total) { break }
        }
    }

    /// Ranks each example's candidate set by the LLM's answer log-likelihood (`scoreCandidates`)
    /// at this model's hardest level, on the same seeded candidate sets and prompts as `evaluate`,
    /// optionally with MBHT's scores as a prior (`CandidateScores.scores(_:graphWeight:)`), weighted
    /// by whether the user touched one of the candidates before (`GraphWeights`).
    ///
    /// - Parameters:
    ///   - normalization: how log-likelihoods become scores.
    ///   - graph: MBHT, whose scores of each candidate set (history: the example's last
    ///     `maxSequenceLength` events) are attached to the `CandidateScores`; needed when
    ///     a weight is > 0.
    ///   - graphWeights: weights of MBHT's log-softmax in the ranking score (0: the LLM alone).
    ///   - answer: called once per example, in order, with its candidate set and their scores.
    ///   - group: ranks that share the examples (whole batches each); the metrics are summed
    ///     over them, and `answer` sees this rank's examples only.
    ///   - progress: called with (done, total) after each batch; return false to stop early.
    public func rank(dataset: Dataset, examples: [Example], seed: UInt64, historyLength: Int,
                     normalization: LengthNormalization, graph: MBHTModel? = nil, graphWeights: GraphWeights = GraphWeights(0),
                     batchSize: Int = 8, group: ProcessGroup = .single,
                     answer: ((Example, [Int], CandidateScores) throws -> Void)? = nil,
                     progress: ((Int, Int) -> Bool)? = nil) throws -> RankMetrics {
        precondition(!graphWeights.usesGraph || graph != nil, "a graph weight needs the graph model")
        var metrics = RankMetrics()
        try forEachPromptBatch(dataset: dataset, examples: examples, seed: seed, historyLength: historyLength,
                               batchSize: batchSize, group: group, progress: progress) { chunk, encoded, candidateSets in
            var scored = scoreCandidates(encoded, answers: try candidateSets.map { try answerTokens($0, dataset: dataset) },
                                         level: modalities.hardestLevel)
            if let graph {
                let histories = chunk.map { ex in
                    dataset.history(of: ex, maxLength: graph.configuration.maxSequenceLength)
                        .map { GraphEvent(item: $0.item, behavior: $0.behavior) }
                }
                let g = try graph.scores(histories: histories, candidates: candidateSets)
                for i in scored.indices { scored[i].graphScores = g[i].map(Double.init) }
            }
            for (i, ex) in chunk.enumerated() {
                let weight = graphWeights(touched: dataset.touchedBefore(ex, anyOf: candidateSets[i]))
                metrics.add(rank: rankOf(truth: candidateSets[i].firstIndex(of: ex.target)!,
                                         scores: scored[i].scores(normalization, graphWeight: weight)))
                try answer?(ex, candidateSets[i], scored[i])
            }
        }
        return metrics.reduced(over: group)
    }

    /// Scores greedy answers on `examples` with DESIGN.md §4's validity and HitRate rules, at this
    /// model's hardest task level, on the same seeded candidate sets every baseline sees.
    ///
    /// - Parameters:
    ///   - constrained: decode only token paths that spell a candidate title.
    ///   - answer: called once per example, in order, with its candidate set (item indices in prompt
    ///     order), the decoded answer text and its score.
    ///   - group: ranks that share the examples, as in `rank`.
    ///   - progress: called with (done, total) after each batch; return false to stop early.
    public func evaluate(dataset: Dataset, examples: [Example], seed: UInt64, historyLength: Int,
                         constrained: Bool = false, batchSize: Int = 8, group: ProcessGroup = .single,
                         answer: ((Example, [Int], String, AnswerScore) throws -> Void)? = nil,
                         progress: ((Int, Int) -> Bool)? = nil) throws -> EvalMetrics {
        var metrics = EvalMetrics()
        try forEachPromptBatch(dataset: dataset, examples: examples, seed: seed, historyLength: historyLength,
                               batchSize: batchSize, group: group, progress: progress) { chunk, encoded, candidateSets in
            let tries = constrained ? try candidateSets.map { TokenTrie(try answerTokens($0, dataset: dataset)) } : nil
            let outputs = generate(encoded, level: modalities.hardestLevel, constraints: tries)
            for (i, ex) in chunk.enumerated() {
                let text = encoder.tokenizer.decode(outputs[i])
                let titles = candidateSets[i].map { dataset.items[$0].title }
                let score = scoreAnswer(text, candidateTitles: titles, truth: candidateSets[i].firstIndex(of: ex.target)!)
                metrics.add(score)
                try answer?(ex, candidateSets[i], text, score)
            }
        }
        return metrics.reduced(over: group)
    }
}
