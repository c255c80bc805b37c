import ArgumentParser
import Foundation
import TMFData
import TMFLoRA
import TMFTrainer

/// `tmf train`: the whole pipeline of DESIGN.md §1 (CLIP features, MBHT, curriculum LoRA tuning).
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a TMF model (defaults: the bundled synthetic shop and tiny models).",
        discussion: "Stages are cached in the model folder and reused while their inputs are unchanged."
    )

    @Argument(help: "Dataset folder (default: the bundled Fixtures/shop).")
    var dataset: String?
    @Option(help: "Model folder to write.")
    var out: String = "tmf-model"
    @Option(help: "Llama folder (config.json, model.safetensors, tokenizer.model); default: the bundled tiny Llama on the bundled shop, else a small Llama pretrained on the dataset (the [pretrain] stage).")
    var llm: String?
    @Option(help: "[pretrain] stage: optimiser steps (default: by the dataset's size, 600-1500; see README; at most 10,000,000).")
    var pretrainSteps: Int?
    @Option(help: "[pretrain] stage: tokenizer vocabulary (default: 1000 + items / 2, at most 4000).")
    var pretrainVocab: Int?
    @Option(help: "CLIP folder (config.json, model.safetensors, vocab.json, merges.txt).")
    var clip: String?
    @Option(help: "Optimiser steps T (default 300; 600 with the bundled tiny Llama, 1200 with a pretrained one; at most 10,000,000).")
    var steps: Int?
    @Option(help: "Epochs over the training examples (instead of --steps; refused when they come to more than 10,000,000 steps).")
    var epochs: Double?
    @Option(help: "Curriculum threshold T1 (default T/3).")
    var t1: Int?
    @Option(help: "Examples per batch (at most 1024; batches larger than the training set are allowed).")
    var batchSize: Int = 8
    @Option(name: .customLong("grad-accum"), help: "Batches accumulated per step (at most 1024).")
    var gradAccum: Int = 1
    @Option(help: "Peak learning rate (default 1e-3; 5e-3 with a small Llama).")
    var lr: Float?
    @Option(help: "LoRA rank (default 8; 16 with a small Llama).")
    var loraR: Int?
    @Option(help: "LoRA alpha (scaling alpha / rank).")
    var loraAlpha: Float = 16
    @Option(help: "LoRA dropout.")
    var loraDropout: Float = 0
    @Option(help: "Comma-separated LoRA targets, or all (default q_proj,v_proj; all with a small Llama).")
    var loraTargets: String?
    @Option(help: "text | behavior | item | full (the paper's Table 3 ablations).")
    var modalities: String = "full"
    @Option(help: "History events per prompt (default 20; 3 with the bundled tiny Llama, 10 with a pretrained one).")
    var history: Int?
    @Option(help: "Weight of a listwise ranking term beside the answer loss: a softmax over the candidates' title tokens, for models whose titles are one token each (the [pretrain] stage's: default 1; otherwise 0, the paper's loss alone).")
    var rankLoss: Float?
    @Option(help: "Validate every N steps (0: at the end).")
    var evalEvery: Int = 0
    @Option(help: "Validation examples per validation.")
    var evalLimit: Int = 100
    @Option(help: "MBHT epochs (early stopping on validation HitRate).")
    var graphEpochs: Int = 30
    @Option(help: "Stage to run up to: pretrain | encode | graph | llm | all.")
    var stage: String = "all"
    @Option(help: "Seed of everything random.")
    var seed: UInt64 = 42
    @Option(help: "Weight of MBHT's scores in candidate ranking (0: the LLM alone; default: chosen on the validation split after training).")
    var graphWeight: Double?
    @Flag(help: "Continue the interrupted run in --out from its last checkpoint.")
    var resume = false
    @Flag(help: "Drop invalid dataset rows instead of failing.")
    var skipInvalid = false
    @Flag(help: "Print no progress.")
    var quiet = false
    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if Modalities(rawValue: modalities) == nil { throw ValidationError("--modalities must be text, behavior, item or full") }
        if Stage(rawValue: stage) == nil { throw ValidationError("--stage must be pretrain, encode, graph, llm or all") }
        if let pretrainSteps, pretrainSteps < 1 { throw ValidationError("--pretrain-steps must be at least 1") }
        if let pretrainVocab, pretrainVocab < 260 { throw ValidationError("--pretrain-vocab must be at least 260") }
        if llm != nil && (pretrainSteps != nil || pretrainVocab != nil) {
            throw ValidationError("--pretrain-steps and --pretrain-vocab make the dataset's own Llama; they do not apply with --llm")
        }
        if steps != nil && epochs != nil { throw ValidationError("give --steps or --epochs, not both") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if let steps, steps > CommandLimits.steps { throw refuseLimit(stepsMessage("--steps", "\(steps)")) }
        if let pretrainSteps, pretrainSteps > CommandLimits.steps { throw refuseLimit(stepsMessage("--pretrain-steps", "\(pretrainSteps)")) }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if batchSize > CommandLimits.batchSize { throw refuseLimit(batchSizeMessage(batchSize)) }
        if gradAccum < 1 { throw ValidationError("--grad-accum must be at least 1") }
        if gradAccum > CommandLimits.accumulation {
            throw refuseLimit("--grad-accum \(gradAccum) is more than the \(CommandLimits.accumulation) batches a step allowed; give fewer")
        }
        if let epochs, epochs > Double(CommandLimits.steps) {
            throw refuseLimit("--epochs \(epochs) comes to more than the \(CommandLimits.steps) optimiser steps allowed; give fewer")
        }
        if let epochs, !(epochs > 0) { throw ValidationError("--epochs must be positive") }
        if graphEpochs < 1 { throw ValidationError("--graph-epochs must be at least 1") }
        if let graphWeight, !(graphWeight >= 0 && graphWeight.isFinite) { throw ValidationError("--graph-weight must be a finite number ≥ 0") }
    }

    func run() throws {
        compute.apply()
        try reportingErrors {
            // Under mpirun: every rank trains its share of each batch; rank 0 alone locks and
            // writes the folder and prints.
            let group = try ProcessGroup.start()
            // One writer per model folder: refused here, before anything in it is touched.
            let folderLock = group.isRoot ? try ModelFolderLock(folder: URL(fileURLWithPath: out), name: out) : nil
            defer { folderLock?.release() }
            if let reason = folderLock?.unlockedReason {
                printError("tmf: warning: cannot lock the model folder \(out) (\(reason)); a second tmf train on it would not be refused")
            }
            folderLock?.removeStaleTemporaries()
            let progress = Progress(quiet: quiet || !group.isRoot)
            let dataURL = dataset.map { URL(fileURLWithPath: $0) } ?? BundledDefaults.shop
            var options = PipelineOptions(dataset: dataURL, model: URL(fileURLWithPath: out),
                                          llm: llm.map { URL(fileURLWithPath: $0) } ?? BundledDefaults.llm,
                                          clip: clip.map { URL(fileURLWithPath: $0) } ?? BundledDefaults.clip)
            options.modalities = Modalities(rawValue: modalities)!
            options.dtype = weights.storageType
            // Which LLM: --llm; else the bundled tiny Llama for the bundled shop (recognised by its
            // content, not its path); else one pretrained on this dataset (the [pretrain] stage).
            var loaded: Dataset?
            if llm == nil {
                let d = try Dataset.load(from: dataURL, options: LoadOptions(skipInvalid: skipInvalid, checkImages: false))
                loaded = d
                if try d.fingerprint == BundledDefaults.shopFingerprint() {
                    options.llmSource = "bundled"
                } else {
                    var plan = LanguageModelPlan.forDataset(d, steps: pretrainSteps, seed: seed)
                    if let pretrainVocab { plan.parameters.vocabularySize = pretrainVocab }
                    options.pretrain = plan
                    options.llmSource = "pretrained"
                }
            }
            let recipe: TrainingRecipe = llm != nil ? .checkpoint : options.pretrain != nil ? .datasetModel : .smallModel
            let targets = loraTargets.map { $0 == "all" ? loraTargetNames : $0.split(separator: ",").map {
                String($0).trimmingCharacters(in: .whitespaces) } } ?? recipe.loraTargets
            options.lora = try LoRAConfiguration(rank: loraR ?? recipe.loraRank, alpha: loraAlpha, dropout: loraDropout,
                                                 targetModules: targets)
            let learningRate = lr ?? recipe.learningRate
            let historyLength = history ?? recipe.historyLength
            var totalSteps = steps ?? recipe.steps
            if let epochs {
                // Count training examples once to turn epochs into steps.
                let d = try loaded ?? Dataset.load(from: dataURL, options: LoadOptions(skipInvalid: skipInvalid))
                let n = SplitExamples(d).train.count
                let exact = (Double(n) * epochs / Double(batchSize * gradAccum)).rounded(.up)
                if exact > Double(CommandLimits.steps) {
                    throw DataError.invalidArgument("--epochs \(epochs) on \(n) training examples comes to \(exact) optimiser steps, more than the \(CommandLimits.steps) allowed; give fewer")
                }
                totalSteps = max(1, Int(exact))
            }
            options.training = TrainingParameters(steps: totalSteps, threshold: t1, batchSize: batchSize, accumulation: gradAccum,
                                                  learningRate: learningRate, evalEvery: evalEvery, evalLimit: evalLimit, seed: seed,
                                                  historyLength: historyLength, rankLossWeight: rankLoss ?? recipe.rankLossWeight)
            options.graphTraining.epochs = graphEpochs
            options.stage = Stage(rawValue: stage)!
            options.resume = resume
            options.skipInvalid = skipInvalid
            options.graphWeight = graphWeight
            let interrupt = InterruptFlag()
            interrupt.install()
            progress.line("tmf train: data \(dataURL.path), model \(out), \(options.modalities.rawValue) modalities, \(totalSteps) steps")
            let completed = try Pipeline.train(options, onEvent: { event in
                switch event {
                case let .stage(s, cached):
                    progress.line(cached ? "[\(s.rawValue)] reused the cached result" : "[\(s.rawValue)]")
                case let .pretrain(p):
                    switch p {
                    case let .prepared(train, valid, docs, params, vocabulary):
                        progress.line("pretraining the dataset's own Llama: \(docs) documents, \(train) training tokens "
                                      + "(\(valid) held out), vocabulary \(vocabulary), \(params) weights")
                    case let .step(r):
                        progress.update("pretraining", r.step, options.pretrain?.parameters.steps ?? r.step,
                                        String(format: "loss %.4f lr %.2e %.0f tok/s", r.loss, r.learningRate, r.tokensPerSecond))
                    case let .evaluation(step, loss):
                        progress.line(String(format: "pretraining step %d: held-out loss %.4f", step, loss))
                    case .checkpoint:
                        break
                    }
                case let .warning(message):
                    progress.finish()
                    if group.isRoot { printError("tmf: warning: \(message)") }
                case let .calibrating(done, total):
                    progress.update("choosing the graph weight on validation", done, total)
                case let .graphWeight(choice):
                    progress.finish()
                    progress.line(String(format: "graph weight %g (chosen on validation): ranking HitRate@1 %.4f MRR %.4f; "
                                         + "LLM alone %.4f, MBHT alone %.4f", choice.weight, choice.chosen.hitRate1, choice.chosen.mrr,
                                         choice.trials[0].metrics.hitRate1, choice.graphAlone.hitRate1))
                    progress.line(String(format: "graph weight by history: %g where the user touched a candidate before (%d examples), "
                                         + "%g where not (%d); ranking HitRate@1 %.4f MRR %.4f", choice.byHistory.touched,
                                         choice.touchedCount, choice.byHistory.untouched, choice.untouchedCount,
                                         choice.combined.hitRate1, choice.combined.mrr))
                case let .encoding(done, total):
                    progress.update("encoding items", done, total)
                case let .graph(e):
                    switch e {
                    case let .step(epoch, step, per, loss):
                        progress.update("MBHT epoch \(epoch)", step, per, String(format: "loss %.3f", loss))
                    case let .epochFinished(epoch, loss, hr, secs):
                        progress.line(String(format: "MBHT epoch %d: loss %.4f%@ (%.1fs)", epoch, loss,
                                             hr.map { String(format: ", valid HitRate@1 %.4f", $0) } ?? "", secs))
                    case let .stoppedEarly(epoch, best, hr):
                        progress.line(String(format: "MBHT stopped at epoch %d; best epoch %d (HitRate@1 %.4f)", epoch, best, hr))
                    }
                case let .training(t):
                    switch t {
                    case let .step(r):
                        progress.update("training", r.step, totalSteps,
                                        String(format: "%@ loss %.4f lr %.2e %.0f tok/s", r.level.rawValue, r.loss, r.learningRate, r.tokensPerSecond))
                    case let .validation(step, m, improved):
                        progress.line(String(format: "step %d: valid HitRate@1 %.4f ValidRatio %.4f HitRate@1(all) %.4f%@", step,
                                             m.hitRate, m.validRatio, m.hitRateAll, improved ? " (best so far: saved)" : ""))
                    case .checkpoint:
                        break
                    }
                }
            }, shouldStop: { interrupt.isSet })
            progress.finish()
            guard group.isRoot else {
                if !completed { ProcessGroup.finish(); throw ExitCode(130) }
                return
            }
            drawTrainingPlot(in: options.model)
            if !completed {
                let llmStarted = FileManager.default.fileExists(atPath: options.model.appendingPathComponent("checkpoint").path)
                printError(llmStarted
                    ? "tmf: stopped; the checkpoint in \(out)/checkpoint is saved: continue with `tmf train --resume --out \(out)` and the same options"
                    : "tmf: stopped before the LLM stage; run the same command again (finished stages are reused)")
                ProcessGroup.finish()  // a stop agreed by every rank: leave the job cleanly, still non-zero
                throw ExitCode(130)
            }
            if options.stage == .all && !quiet {
                progress.line("trained model written to \(out)")
            }
        }
    }
}
