import Foundation
import TMFTensor

/// How to train MBHT. Defaults follow the reference (RecBole: Adam, lr 1e-3, batch 32 in
/// `MBHT.yaml`, early stopping after 10 evaluations without improvement).
public struct MBHTTrainingParameters: Codable, Sendable, Equatable {
    /// Maximum number of epochs.
    public var epochs: Int = 300
    /// Sequences per step.
    public var batchSize: Int = 32
    /// Adam learning rate.
    public var learningRate: Float = 1e-3
    /// L2 weight decay added to the gradient (RecBole's `weight_decay`, default 0).
    public var weightDecay: Float = 0
    /// Optional global gradient-norm clip (the reference does not clip).
    public var maxGradientNorm: Float? = nil
    /// Stop after this many validations without a better HitRate@1 (RecBole's `stopping_step`).
    public var patience: Int = 10
    /// Validate every this many epochs.
    public var validateEvery: Int = 1
    /// Which target events become training examples.
    public var examples: MBHTExampleSelection = .lastTarget
    /// Seed of initialisation, shuffling, masking and dropout.
    public var seed: UInt64 = 0

    public init() {}
}

/// A training event reported to the progress callback.
public enum MBHTTrainingEvent: Sendable {
    /// One optimiser step finished.
    case step(epoch: Int, step: Int, stepsPerEpoch: Int, loss: Float)
    /// One epoch finished; `validationHitRate` is nil when no validation ran.
    case epochFinished(epoch: Int, meanLoss: Float, validationHitRate: Double?, seconds: Double)
    /// Training stopped early (patience exhausted); the best epoch's weights are restored.
    case stoppedEarly(epoch: Int, bestEpoch: Int, bestHitRate: Double)
}

/// What the progress callback asks for.
public enum MBHTTrainingControl: Sendable {
    case proceed
    case stop
}

/// The outcome of training.
public struct MBHTTrainingReport: Sendable, Equatable {
    /// Epochs run.
    public var epochs: Int
    /// Mean training loss per epoch.
    public var epochLosses: [Float]
    /// Validation HitRate@1 per validation (epoch, value).
    public var validation: [MBHTValidationPoint]
    /// The epoch whose weights the model holds (best validation), or the last epoch.
    public var bestEpoch: Int
    /// Its HitRate@1 (nil without validation).
    public var bestHitRate: Double?
    /// Whether early stopping ended training.
    public var stoppedEarly: Bool
    /// Whether the callback stopped training.
    public var stoppedByCallback: Bool
    /// Wall-clock seconds.
    public var seconds: Double
}

/// One validation result.
public struct MBHTValidationPoint: Sendable, Equatable {
    public var epoch: Int
    public var hitRate: Double
}

extension MBHTModel {
    /// Trains the model by Cloze masked-item prediction (Adam, cross-entropy over all items),
    /// validating HitRate@1 on `validation` (candidate lists with ground truth) for early stopping;
    /// at the end the model holds the best validated weights.
    ///
    /// Deterministic for a given `parameters.seed` and thread count. The library never prints:
    /// progress goes to `progress`, which may return `.stop`. Checks `Task.isCancelled` every step.
    ///
    /// Data-parallel with `group` (every rank calls `train` with the same arguments): each rank
    /// draws the same global batch and masks, runs its slice of the sequences (dropout drawn as
    /// one process would), weights its loss by its share of the batch's predicted positions, and
    /// the gradients are summed in one all-reduce per step before every rank takes the same Adam
    /// step; validation is sharded by whole batches and a stop any rank asks for is agreed.
    ///
    /// - Parameters:
    ///   - data: per-user training sequences (item and behavior indices in range).
    ///   - validation: ranking examples for early stopping; empty = train all epochs.
    ///   - group: the data-parallel ranks (nil: this process alone).
    /// - Throws: `GraphError.invalidInput` for bad indices or no training examples;
    ///   `GraphError.cancelled` when the task is cancelled (the best weights so far are kept).
    @discardableResult
    public func train(_ data: MBHTTrainingData, validation: [MBHTRankingExample] = [],
                      parameters: MBHTTrainingParameters = MBHTTrainingParameters(),
                      group: (any DataParallelGroup)? = nil,
                      progress: (MBHTTrainingEvent) -> MBHTTrainingControl = { _ in .proceed }) throws -> MBHTTrainingReport {
        let c = configuration
        for s in data.sequences { try checkHistory(s) }
        for v in validation {
            try checkHistory(v.history)
            guard v.candidates.contains(v.groundTruth) else {
                throw GraphError.invalidInput("a validation example's ground truth \(v.groundTruth) is not among its candidates")
            }
        }
        guard parameters.batchSize >= 1, parameters.epochs >= 0, parameters.validateEvery >= 1 else {
            throw GraphError.invalidInput("batch size and validateEvery must be positive, epochs non-negative")
        }
        let refs = data.examples(targetBehavior: c.targetBehavior, selection: parameters.examples)
        guard !refs.isEmpty else {
            throw GraphError.invalidInput("no training example: no sequence has a target-behavior event (\(c.targetBehavior)) after its first event")
        }
        let started = Date()
        let params = parameters
        let optimizer = Adam(parameters: self.parameters, learningRate: params.learningRate,
                             weightDecay: params.weightDecay)
        let update = ScheduledUpdate(optimizers: [optimizer], schedule: nil, clipNorm: params.maxGradientNorm)
        var rng = SeededRNG(seed: params.seed, key: ["mbht-train"])
        var report = MBHTTrainingReport(epochs: 0, epochLosses: [], validation: [], bestEpoch: 0, bestHitRate: nil,
                                        stoppedEarly: false, stoppedByCallback: false, seconds: 0)
        var best: [Tensor]? = nil
        var sinceBest = 0
        let stepsPerEpoch = (refs.count + params.batchSize - 1) / params.batchSize

        func restoreBest() {
            guard let best else { return }
            for (p, saved) in zip(self.parameters, best) { p.pointer.update(from: saved.pointer, count: p.count) }
        }

        epochs: for epoch in 1...max(params.epochs, 1) where params.epochs > 0 {
            let epochStart = Date()
            var order = Array(refs.indices)
            order.shuffle(using: &rng)
            var lossSum: Double = 0
            var stepsDone = 0
            for step in 0..<stepsPerEpoch {
                if Task.isCancelled { restoreBest(); throw GraphError.cancelled }
                let chunk = order[(step * params.batchSize)..<min((step + 1) * params.batchSize, order.count)]
                let examples = chunk.map { i -> (history: ArraySlice<GraphEvent>, target: Int) in
                    let r = refs[i]
                    let seq = data.sequences[r.sequence]
                    return (seq[..<r.end], seq[r.end].item)
                }
                let batch = trainingBatch(examples, rng: &rng)
                var ctx = ForwardContext(training: true, rng: SeededRNG(seed: rng.next()))
                optimizer.zeroGrad()
                let value: Float
                if let group, group.isDistributed {
                    // This rank's sequences; its mean loss weighted by its share of the predictions.
                    let mine = group.slice(of: batch.size)
                    ctx.part = (mine, batch.size)
                    var local: Float = 0
                    if !mine.isEmpty {
                        let part = batch.sequences(mine)
                        let loss = self.loss(part, &ctx).scale(Float(part.lossRows.count) / Float(batch.lossRows.count))
                        local = loss.item
                        loss.backward()
                    }
                    value = group.sumGradients(of: self.parameters, loss: local)
                } else {
                    let loss = self.loss(batch, &ctx)
                    value = loss.item
                    loss.backward()
                }
                zeroFrozenGradients()
                update.apply(to: self.parameters, step: 0)
                zeroFrozenRows()
                lossSum += Double(value)
                stepsDone += 1
                let stop = progress(.step(epoch: epoch, step: step + 1, stepsPerEpoch: stepsPerEpoch, loss: value)) == .stop
                if group?.any(stop) ?? stop { report.stoppedByCallback = true }
                if report.stoppedByCallback { break }
            }
            let meanLoss = Float(lossSum / Double(max(stepsDone, 1)))
            report.epochs = epoch
            report.epochLosses.append(meanLoss)
            var hit: Double? = nil
            if !validation.isEmpty && (epoch % params.validateEvery == 0 || epoch == params.epochs) {
                let h = try hitRate(validation, group: group)
                hit = h
                report.validation.append(MBHTValidationPoint(epoch: epoch, hitRate: h))
                if report.bestHitRate.map({ h > $0 }) ?? true {
                    report.bestHitRate = h
                    report.bestEpoch = epoch
                    best = self.parameters.map { $0.copy() }
                    sinceBest = 0
                } else {
                    sinceBest += 1
                }
            } else if validation.isEmpty {
                report.bestEpoch = epoch
            }
            let control = progress(.epochFinished(epoch: epoch, meanLoss: meanLoss, validationHitRate: hit,
                                                  seconds: Date().timeIntervalSince(epochStart)))
            if group?.any(control == .stop) ?? (control == .stop) || report.stoppedByCallback {
                report.stoppedByCallback = true; break epochs
            }
            if hit != nil && sinceBest >= params.patience {
                report.stoppedEarly = true
                _ = progress(.stoppedEarly(epoch: epoch, bestEpoch: report.bestEpoch, bestHitRate: report.bestHitRate ?? 0))
                break epochs
            }
        }
        restoreBest()
        report.seconds = Date().timeIntervalSince(started)
        return report
    }
}
