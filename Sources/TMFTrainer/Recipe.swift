import Foundation
import TMFData
import TMFLoRA

/// The defaults `tmf train` fills in for what the user did not set: one recipe for a small Llama
/// (the bundled one, or one the `[pretrain]` stage made for the dataset) and one for a real
/// checkpoint given with `--llm`. Options override each field.
public struct TrainingRecipe: Sendable, Equatable {
    /// LoRA target modules.
    public var loraTargets: [String]
    public var loraRank: Int
    public var learningRate: Float
    /// History events per prompt.
    public var historyLength: Int
    /// Optimiser steps T.
    public var steps: Int
    /// Weight of the listwise ranking term (`TrainingParameters.rankLossWeight`; it applies only
    /// where every title is one token).
    public var rankLossWeight: Float = 0

    /// A small model (under a few million weights) needs a stronger recipe than a real
    /// checkpoint: every projection adapted, a higher rate, shorter prompts, more steps.
    public static let smallModel = TrainingRecipe(loraTargets: loraTargetNames, loraRank: 16, learningRate: 5e-3,
                                                  historyLength: 3, steps: 600)
    /// A small Llama the `[pretrain]` stage made for a new dataset: the small-model recipe with a
    /// longer history and more steps, since its answers are ranked and a dataset without repeats
    /// (MovieLens-100k) is predicted from taste, not from the last events (validation ranking
    /// HitRate@1 on MovieLens-100k: 0.390 with history 3 and 600 steps, 0.400 with 2,400 steps,
    /// 0.426 with history 10 and 1,200 steps, 0.406 with history 20; popularity 0.414). Its titles
    /// are one token each, so it trains with the listwise ranking term (weight 1): on
    /// MovieLens-100k's validation split, mean of four runs (training seeds 42 / 7 / 3 on one
    /// thread, 42 on two), the LLM alone ranks 0.593 instead of 0.497 (no run below 0.556, where
    /// two of four were near 0.41 without it), and with the graph prior 0.651 as without it (0.653).
    public static let datasetModel = TrainingRecipe(loraTargets: loraTargetNames, loraRank: 16, learningRate: 5e-3,
                                                    historyLength: 10, steps: 1200, rankLossWeight: 1)
    /// A real checkpoint (`--llm`): the paper's and LLaRA's setting (q and v, rank 8, 20 events).
    public static let checkpoint = TrainingRecipe(loraTargets: ["q_proj", "v_proj"], loraRank: 8, learningRate: 1e-3,
                                                  historyLength: 20, steps: 300)
}

/// The `[pretrain]` stage's plan: the size of the dataset's own small Llama and its corpus.
///
/// The rule (`forDataset`): hidden 128, 4 layers, 4 heads / 2 key-value heads, FFN 344 (the
/// bundled model's shape); a SentencePiece vocabulary of 1,000 pieces plus one per two items,
/// rounded to 100 and at most 4,000 (titles are the answers, so more items need more pieces);
/// windows of 256 tokens, 8 per step, lr 3e-3; a corpus of the dataset's text, history and
/// question sentences (`PretrainCorpus.build`), plus copy drills (one per item, 1,000 to 3,000)
/// and look-up drills (two per item, 2,000 to 6,000; only when items have categories); steps
/// = two passes over that corpus's estimated tokens, between 600 and 1,500; every item title one
/// token (`titleTokens`).
public struct LanguageModelPlan: Codable, Sendable, Equatable {
    public var parameters: PretrainParameters
    public var copyDrills: Int
    public var lookupDrills: Int
    /// Every item title is one token of the model (`added_tokens.json`, after the trained
    /// pieces): a candidate's ranking score is then one token's log-probability (plus the end
    /// token's), with no length effects, and the model learns each item's token from every
    /// sentence that names it. MovieLens-100k, test ranking HitRate@1 of the LLM alone: 0.520
    /// with title tokens, 0.390 without (popularity 0.402).
    public var titleTokens: Bool

    public init(parameters: PretrainParameters, copyDrills: Int, lookupDrills: Int, titleTokens: Bool = true) {
        self.parameters = parameters
        self.copyDrills = copyDrills
        self.lookupDrills = lookupDrills
        self.titleTokens = titleTokens
    }

    /// The documented size rule for `dataset`; `steps` overrides the step budget.
    public static func forDataset(_ dataset: Dataset, steps: Int? = nil, seed: UInt64 = 0) -> LanguageModelPlan {
        let items = dataset.items.count
        let vocabulary = min(4000, 100 * Int((Double(1000 + items / 2) / 100).rounded()))
        let copy = min(3000, max(1000, items))
        let hasCategories = dataset.items.contains { !$0.categories.isEmpty }
        let lookup = hasCategories ? min(6000, max(2000, 2 * items)) : 0
        // Documents: item texts, one history sentence per 20 events, three question sentences per
        // user or item, the drills; about 60 tokens each on average.
        let documents = items + dataset.eventCount / 20 + 3 * max(items, dataset.userIDs.count) + copy + lookup
        let budget = steps ?? min(1500, max(600, 2 * documents * 60 / (8 * 256)))
        let p = PretrainParameters(vocabularySize: vocabulary, hiddenSize: 128, layers: 4, heads: 4, kvHeads: 2,
                                   intermediateSize: 344, context: 512, steps: budget, batchSize: 8, sequenceLength: 256,
                                   learningRate: 3e-3, seed: seed, checkpointEvery: budget, dtype: .f32)
        return LanguageModelPlan(parameters: p, copyDrills: copy, lookupDrills: lookup)
    }
}
