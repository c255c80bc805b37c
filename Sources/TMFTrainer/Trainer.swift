import Foundation
import TMFCheckpoint
import TMFData
import TMFFusion
import TMFLoRA
import TMFTensor

/// Hyper-parameters of the LoRA + fusion instruction tuning (paper §4.3).
public struct TrainingParameters: Codable, Sendable, Equatable {
    /// T: optimiser steps.
    public var steps: Int
    /// T1: the step after which the hard task enters (Eq. 13).
    public var threshold: Int
    /// Examples per micro-batch.
    public var batchSize: Int
    /// Micro-batches accumulated per step (the task is drawn once per step).
    public var accumulation: Int
    /// Peak learning rate.
    public var learningRate: Float
    /// Linear warm-up steps, then cosine decay to `minLearningRate` at `steps`.
    public var warmupSteps: Int
    public var minLearningRate: Float
    /// Global gradient-norm clip.
    public var clipNorm: Float
    /// Decoupled weight decay (AdamW) on matrices; 0 is Adam.
    public var weightDecay: Float
    /// Validate every this many steps (0: only at the end).
    public var evalEvery: Int
    /// Validation examples per validation (0: all).
    public var evalLimit: Int
    /// Save the resumable checkpoint every this many steps (and at the end or on a stop).
    public var checkpointEvery: Int
    /// Seed of data order, templates, curriculum draws and candidate sets.
    public var seed: UInt64
    /// History events in a prompt.
    public var historyLength: Int
    /// Weight λ of a listwise ranking term added to the answer-token loss: the cross-entropy of
    /// a softmax over the candidates' answer tokens at the answer's first position, with the
    /// true item as the label. Only for models whose titles are one token each (the `[pretrain]`
    /// stage's), where it is the softmax over the candidates' title log-likelihoods that ranking
    /// uses, without the end token; nil or 0: the paper's loss alone.
    public var rankLossWeight: Float?

    public init(steps: Int = 300, threshold: Int? = nil, batchSize: Int = 8, accumulation: Int = 1,
                learningRate: Float = 1e-3, warmupSteps: Int? = nil, minLearningRate: Float = 0, clipNorm: Float = 1,
                weightDecay: Float = 0, evalEvery: Int = 0, evalLimit: Int = 100, checkpointEvery: Int = 50,
                seed: UInt64 = 42, historyLength: Int = 20, rankLossWeight: Float? = nil) {
        self.steps = steps
        self.threshold = threshold ?? steps / 3
        self.batchSize = batchSize
        self.accumulation = accumulation
        self.learningRate = learningRate
        self.warmupSteps = warmupSteps ?? max(1, steps / 20)
        self.minLearningRate = minLearningRate
        self.clipNorm = clipNorm
        self.weightDecay = weightDecay
        self.evalEvery = evalEvery
        self.evalLimit = evalLimit
        self.checkpointEvery = checkpointEvery
        self.seed = seed
        self.historyLength = historyLength
        self.rankLossWeight = rankLossWeight
    }

    /// Throws `TrainerError.invalidParameter` naming the bad value.
    public func validate() throws {
        func bad(_ s: String) -> TrainerError { .invalidParameter(s) }
        if steps < 1 { throw bad("--steps must be at least 1") }
        if threshold < 0 || threshold >= steps { throw bad("--t1 must be in 0..<steps (got \(threshold) with \(steps) steps)") }
        if batchSize < 1 { throw bad("--batch-size must be at least 1") }
        if accumulation < 1 { throw bad("--grad-accum must be at least 1") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("--lr must be a positive number") }
        if historyLength < 1 { throw bad("--history must be at least 1") }
        if let w = rankLossWeight, !(w >= 0 && w.isFinite) { throw bad("--rank-loss must be a finite number ≥ 0") }
    }
}

/// One optimiser step's figures (a line of metrics.jsonl, with `"stage": "llm"`).
public struct StepReport: Codable, Sendable, Equatable {
    public var step: Int
    public var level: TaskLevel
    public var loss: Float
    public var learningRate: Float
    public var tokensPerSecond: Double
    public var answerTokens: Int

    enum CodingKeys: String, CodingKey {
        case step, level, loss, learningRate = "lr", tokensPerSecond = "tokens_per_s", answerTokens = "answer_tokens"
    }
}

/// What the trainer reports as it goes (the CLI prints; the library never does).
public enum TrainingEvent: Sendable {
    case step(StepReport)
    case validation(step: Int, metrics: EvalMetrics, improved: Bool)
    case checkpoint(step: Int)
}

/// The resumable state of a run (checkpoint/state.json).
struct TrainerState: Codable {
    var step: Int
    var rng: [String]
    var adamSteps: [Int]
    var parameterNames: [String]
    var bestScore: Double
    var bestStep: Int
}

/// Curriculum LoRA instruction tuning of a `Recommender` (paper §4.3, DESIGN.md §1 step 6).
///
/// Each step draws its task level from the curriculum (Eq. 12-14) once, builds that level's
/// prompts for a batch of training examples (random templates), takes the answer-token loss and
/// updates only the parameter groups of that level: LoRA (easy), + behavior adaptor (medium),
/// + fusion and item adaptor (hard). Adam with warm-up + cosine decay and clipping. Writes a
/// resumable `checkpoint/` (weights, optimiser, step, RNG) and keeps the best validation model
/// at the top of the model folder.
public final class LLMTrainer {
    public let recommender: Recommender
    public let dataset: Dataset
    public let splits: SplitExamples
    public let parameters: TrainingParameters
    public let curriculum: Curriculum
    /// The model folder.
    public let folder: URL
    let named: [(name: String, group: ParameterGroup, tensor: Tensor)]
    let optimizer: Adam
    /// Clipping, the warm-up + cosine rate and the Adam step.
    let update: ScheduledUpdate
    var rng: SeededRNG
    /// Steps completed.
    public private(set) var step = 0
    public private(set) var bestScore = -1.0
    public private(set) var bestStep = 0

    /// The ranks training together (data-parallel); a group of one by default.
    public let group: ProcessGroup

    /// - Parameter group: ranks that share every batch (each takes a contiguous slice, gradients
    ///   are summed with one all-reduce per step, every rank takes the same Adam step); rank 0
    ///   alone writes the folder.
    public init(recommender: Recommender, dataset: Dataset, splits: SplitExamples, parameters: TrainingParameters,
                folder: URL, group: ProcessGroup = .single) throws {
        self.group = group
        try parameters.validate()
        guard !splits.train.isEmpty else {
            throw TrainerError.invalidParameter("the dataset has no training examples (every user needs at least three target events)")
        }
        self.recommender = recommender
        self.dataset = dataset
        self.splits = splits
        self.parameters = parameters
        self.folder = folder
        curriculum = Curriculum(totalSteps: parameters.steps, threshold: parameters.threshold, modalities: recommender.modalities)
        var groups: [ParameterGroup] = [.lora]
        if recommender.modalities != .text { groups.append(.behaviorAdaptor) }
        if recommender.modalities.hardestLevel == .hard { groups += [.fusion, .itemAdaptor] }
        named = groups.flatMap { g in recommender.parameters(of: g).map { (name: $0.0, group: g, tensor: $0.1) } }
        for p in named { p.tensor.requiresGrad = true }
        optimizer = Adam(parameters: named.map(\.tensor), learningRate: parameters.learningRate,
                         weightDecay: parameters.weightDecay, decoupledWeightDecay: true)
        update = ScheduledUpdate(optimizers: [optimizer],
                                 schedule: .warmupCosine(peak: parameters.learningRate, warmupSteps: parameters.warmupSteps,
                                                         totalSteps: parameters.steps, minRate: parameters.minLearningRate),
                                 clipNorm: parameters.clipNorm)
        rng = SeededRNG(seed: parameters.seed, key: ["train"])
    }

    var checkpointURL: URL { folder.appendingPathComponent("checkpoint") }

    /// One optimiser step: draws the level and the batch, accumulates gradients, steps Adam.
    /// - Throws: `TrainerError.nonFiniteLoss` (nothing is updated then).
    public func trainStep() throws -> StepReport {
        let started = DispatchTime.now().uptimeNanoseconds
        let tau = step + 1
        let level = curriculum.draw(at: tau, rng: &rng)
        let trainable = ParameterGroup.trainable(at: level)
        let builder = PromptBuilder(dataset: dataset)
        var total: Float = 0, tokens = 0
        let rankWeight = parameters.rankLossWeight ?? 0
        for _ in 0..<parameters.accumulation {
            var encoded: [EncodedPrompt] = []
            var choices: [CandidateChoice?] = []
            for _ in 0..<parameters.batchSize {
                let ex = splits.train[rng.nextInt(below: splits.train.count)]
                let candidates = try dataset.candidates(for: ex, seed: parameters.seed)
                let template = PromptBuilder.randomTemplate(using: &rng)
                let prompt = builder.prompt(for: ex, in: dataset, candidates: candidates, level: level, template: template,
                                            historyLength: parameters.historyLength)
                encoded.append(try recommender.encoder.encode(prompt, withAnswer: true))
                choices.append(rankWeight > 0 ? try titleTokenChoice(candidates: candidates, target: ex.target) : nil)
            }
            // Every rank draws and encodes the whole batch (the same draws as one process) and
            // runs its contiguous slice; its mean loss counts by its share of the answer tokens
            // (the ranking term's by its share of the ranked prompts), so the summed gradients
            // are those of the whole batch's mean.
            let slice = group.isDistributed ? group.slice(of: encoded.count) : 0..<encoded.count
            let mine = Array(encoded[slice])
            guard !mine.isEmpty else { continue }
            let (answerLoss, count, rankLoss) = recommender.losses(mine, level: level, choices: Array(choices[slice]))
            let share = group.isDistributed ? Float(count) / Float(max(answerTokenCount(encoded), 1)) : 1
            var loss = answerLoss.scale(share)
            if let rankLoss {
                let ranked = Float(choices[slice].compactMap { $0 }.count), all = Float(choices.compactMap { $0 }.count)
                loss = loss + rankLoss.scale(rankWeight * ranked / all)
            }
            let value = loss.item
            if !group.isDistributed {
                guard value.isFinite else {
                    optimizer.zeroGrad()
                    throw TrainerError.nonFiniteLoss(step: tau, loss: value)
                }
            }
            loss.scale(1 / Float(parameters.accumulation)).backward()
            total += value / Float(parameters.accumulation)
            tokens += mine.reduce(0) { $0 + $1.tokens.count }
        }
        if group.isDistributed {
            total = group.sumGradients(of: named.map(\.tensor), loss: total)
            guard total.isFinite else {
                optimizer.zeroGrad()
                throw TrainerError.nonFiniteLoss(step: tau, loss: total)
            }
        }
        // Only the groups of this level learn (Eq. 9-11); the others have no gradient anyway.
        for p in named where !trainable.contains(p.group) { p.tensor.grad = nil }
        let (rate, _) = update.apply(to: named.map(\.tensor), step: step)
        step += 1
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return StepReport(step: step, level: level, loss: total, learningRate: rate,
                          tokensPerSecond: Double(tokens) / max(seconds, 1e-9), answerTokens: tokens)
    }

    /// The candidates' answer tokens and the true one's index, when every candidate title is one
    /// token (else nil: the prompt has no ranking term).
    func titleTokenChoice(candidates: [Int], target: Int) throws -> CandidateChoice? {
        let answers = try recommender.answerTokens(candidates, dataset: dataset)
        guard answers.allSatisfy({ $0.count == 1 }) else { return nil }
        return CandidateChoice(tokens: answers.map { $0[0] }, truth: candidates.firstIndex(of: target)!)
    }

    /// Validation HitRate on up to `evalLimit` validation examples (sharded over the group's ranks).
    public func validate() throws -> EvalMetrics {
        let examples = parameters.evalLimit > 0 ? Array(splits.valid.prefix(parameters.evalLimit)) : splits.valid
        return try recommender.evaluate(dataset: dataset, examples: examples, seed: parameters.seed,
                                        historyLength: parameters.historyLength, group: group)
    }

    /// Answer tokens (labelled positions) in a batch.
    func answerTokenCount(_ prompts: [EncodedPrompt]) -> Int {
        prompts.reduce(0) { $0 + $1.labels.reduce(0) { $0 + ($1 == -100 ? 0 : 1) } }
    }


    /// Runs to `parameters.steps` (from the current step, e.g. after `resume`).
    ///
    /// - Parameters:
    ///   - shouldStop: polled after each step; true stops after saving a checkpoint (Ctrl-C).
    ///   - onEvent: progress reports.
    /// - Returns: whether the run completed (false when stopped).
    @discardableResult
    public func run(shouldStop: () -> Bool = { false }, onEvent: (TrainingEvent) -> Void = { _ in }) throws -> Bool {
        let metrics = MetricsLog(folder: folder)
        while step < parameters.steps {
            let report = try trainStep()
            if group.isRoot {
                try metrics.append(.step(report))
                onEvent(.step(report))
            }
            let last = step == parameters.steps
            if parameters.evalEvery > 0 && step % parameters.evalEvery == 0 || last {
                let m = try validate()
                let score = m.hitRateAll
                let improved = score > bestScore
                if improved {
                    bestScore = score
                    bestStep = step
                    if group.isRoot { try saveWeights(to: folder) }
                }
                if group.isRoot {
                    try metrics.append(.validation(step: step, metrics: m, improved: improved))
                    onEvent(.validation(step: step, metrics: m, improved: improved))
                }
            }
            if step % max(parameters.checkpointEvery, 1) == 0 || last {
                if group.isRoot { try saveCheckpoint() }
                onEvent(.checkpoint(step: step))
            }
            // A stop (Ctrl-C, SIGTERM: mpirun forwards it to every rank) is agreed on by all
            // ranks, so they leave after the same step.
            if !last && group.any(shouldStop()) {
                if step % max(parameters.checkpointEvery, 1) != 0 {
                    if group.isRoot { try saveCheckpoint() }
                    onEvent(.checkpoint(step: step))
                }
                group.barrier()  // the checkpoint is complete before any rank exits
                return false
            }
        }
        return true
    }

    /// Writes the LoRA adapter (peft layout) and the fusion/adaptor weights into `directory`.
    func saveWeights(to directory: URL) throws {
        try recommender.lora.save(to: directory)
        try SafeTensorsWriter.write(Dictionary(uniqueKeysWithValues: recommender.fusion.namedParameters), as: .f32,
                                    metadata: [("format", "tmf")], to: directory.appendingPathComponent("fusion.safetensors"))
    }

    /// Saves the resumable state: weights, optimiser moments, step, RNG, best score. The folder
    /// is written under a new name and swapped in, so a kill never leaves a torn checkpoint.
    public func saveCheckpoint() throws {
        let fm = FileManager.default
        let fresh = folder.appendingPathComponent("checkpoint.new"), old = folder.appendingPathComponent("checkpoint.old")
        try? fm.removeItem(at: fresh)
        do {
            try fm.createDirectory(at: fresh, withIntermediateDirectories: true)
            try saveWeights(to: fresh)
            var moments: [String: Tensor] = [:]
            for (i, p) in named.enumerated() {
                moments["m." + p.name] = optimizer.m[i]
                moments["v." + p.name] = optimizer.v[i]
            }
            try SafeTensorsWriter.write(moments, as: .f32, metadata: [("format", "tmf")], to: fresh.appendingPathComponent("optimizer.safetensors"))
            let state = TrainerState(step: step, rng: rng.state.map { String($0) }, adamSteps: optimizer.steps,
                                     parameterNames: named.map(\.name), bestScore: bestScore, bestStep: bestStep)
            try JSONEncoder().encode(state).write(to: fresh.appendingPathComponent("state.json"), options: .atomic)
        } catch {
            try? fm.removeItem(at: fresh)  // a failed write (a full disk) leaves the previous checkpoint alone
            throw error
        }
        try? fm.removeItem(at: old)
        if fm.fileExists(atPath: checkpointURL.path) { try fm.moveItem(at: checkpointURL, to: old) }
        try fm.moveItem(at: fresh, to: checkpointURL)
        try? fm.removeItem(at: old)
    }

    /// Restores the state saved by `saveCheckpoint` (weights, optimiser, step, RNG): the run then
    /// continues exactly as an uninterrupted one.
    /// - Throws: `TrainerError.badModelFolder` when there is no usable checkpoint.
    public func resume() throws {
        let fm = FileManager.default
        var dir = checkpointURL
        if !fm.fileExists(atPath: dir.appendingPathComponent("state.json").path) {
            // A kill between the two renames leaves the complete old copy aside.
            let old = folder.appendingPathComponent("checkpoint.old")
            guard fm.fileExists(atPath: old.appendingPathComponent("state.json").path) else {
                throw TrainerError.badModelFolder(path: folder.path, reason: "no checkpoint to resume from; train without --resume")
            }
            dir = old
        }
        let state: TrainerState
        do { state = try JSONDecoder().decode(TrainerState.self, from: readSmallFile(dir.appendingPathComponent("state.json"))) } catch {
            throw TrainerError.badModelFolder(path: dir.path, reason: "checkpoint/state.json is unreadable")
        }
        let words = state.rng.compactMap(UInt64.init)
        guard state.parameterNames == named.map(\.name), words.count == 4, state.adamSteps.count == named.count else {
            throw TrainerError.badModelFolder(path: dir.path, reason: "the checkpoint was made with other settings (--modalities, --lora-*); start a new run")
        }
        try loadStrict(recommender.lora.peftNamedParameters, from: SafeTensorsFile(contentsOf: dir.appendingPathComponent("adapter_model.safetensors")))
        try loadStrict(Dictionary(uniqueKeysWithValues: recommender.fusion.namedParameters),
                       from: SafeTensorsFile(contentsOf: dir.appendingPathComponent("fusion.safetensors")))
        let moments = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("optimizer.safetensors"))
        let m = try named.map { try moments.tensor(named: "m." + $0.name).scalars }
        let v = try named.map { try moments.tensor(named: "v." + $0.name).scalars }
        optimizer.restore(steps: state.adamSteps, m: m, v: v)
        rng = SeededRNG(state: words)
        step = state.step
        bestScore = state.bestScore
        bestStep = state.bestStep
        try trimMetrics(after: step)
    }

    /// Drops metrics.jsonl's `llm` records of steps after `step` (logged after the last
    /// checkpoint by a killed run, about to be redone). Records of other stages are kept; a line
    /// without a stage is an `llm` record; a line that does not parse (torn) is dropped.
    func trimMetrics(after step: Int) throws {
        let url = MetricsLog(folder: folder).url
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return }
        struct Head: Decodable { let stage: String?; let step: Int? }
        let kept = text.split(separator: "\n").filter { line in
            guard let head = try? JSONDecoder().decode(Head.self, from: Data(line.utf8)) else { return false }
            if let stage = head.stage, stage != MetricsStage.llm.rawValue { return true }
            return head.step.map { $0 <= step } ?? false
        }
        try Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8).write(to: url, options: .atomic)
    }
}
