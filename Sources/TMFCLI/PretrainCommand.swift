import ArgumentParser
import Foundation
import TMFData
import TMFTensor
import TMFTrainer

/// `tmf pretrain`: pretrains a small Llama from scratch (or continues one) on a text corpus or on
/// a dataset's text, and writes a Hugging Face folder (config.json, model.safetensors, tokenizer.model).
struct PretrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pretrain",
        abstract: "Pretrain a small Llama (tokenizer + weights) on a text corpus or a dataset's text.",
        discussion: """
            With --data, the corpus is the items' text, one sentence per user history (only events before the \
            user's validation target: no held-out answer leaks) and candidate-list sentences of random titles. \
            With --init, the folder's tokenizer and weights are continued (the size options are ignored).
            """
    )

    @Option(help: "Text corpus: a UTF-8 file, one document a line.")
    var corpus: String?

    @Option(help: "Dataset folder whose items and training histories make the corpus.")
    var data: String?

    @Option(help: "With --data: add this many list-recall drills (a candidate list, then the same list again) that teach copying.")
    var copyDrills: Int = 0

    @Option(help: "With --data: add this many look-up drills (a candidate list, a category, the candidate of that category as the answer).")
    var lookupDrills: Int = 0

    @Flag(help: "With --data: every item title becomes one token (added_tokens.json), as the [pretrain] stage of `tmf train` does.")
    var titleTokens = false

    @Option(help: "Output folder (config.json, model.safetensors, tokenizer.model, pretrain.json).")
    var out: String

    @Option(name: .customLong("init"), help: "Continue this Llama folder (its tokenizer and weights) instead of starting from scratch.")
    var initFrom: String?

    @Option(help: "Tokenizer vocabulary size (SentencePiece BPE, byte fallback).")
    var vocab: Int = 1000

    @Option(help: "Model width.")
    var hidden: Int = 128

    @Option(help: "Decoder layers.")
    var layers: Int = 4

    @Option(help: "Attention heads.")
    var heads: Int = 4

    @Option(help: "Key/value heads (grouped-query attention).")
    var kvHeads: Int = 2

    @Option(help: "Feed-forward (SwiGLU) width.")
    var ffn: Int = 344

    @Option(help: "Context length written to config.json (max_position_embeddings).")
    var context: Int = 512

    @Option(help: "Optimiser steps (at most 10,000,000).")
    var steps: Int = 500

    @Option(help: "Windows per step.")
    var batchSize: Int = 8

    @Option(help: "Tokens per training window.")
    var seqLen: Int = 128

    @Option(help: "Peak learning rate (AdamW, warm-up then cosine decay to a tenth).")
    var lr: Float = 3e-3

    @Option(help: "Warm-up steps (default: 5% of --steps).")
    var warmup: Int?

    @Option(help: "Seed of the init, the document split and the window draws.")
    var seed: UInt64 = 0

    @Option(help: "Write the folder every N steps.")
    var checkpointEvery: Int = 100

    @Option(help: "Report the held-out loss every N steps (0: only at the end).")
    var evalEvery: Int = 0

    @Option(help: "The storage type of the weights it writes: f32 or bf16.")
    var saveDtype: String = "f32"

    @OptionGroup var compute: ComputeOptions

    @Flag(help: "Print no progress.")
    var quiet = false

    func run() throws {
        do {
            try pretrain()
        } catch let error as ExitCode {
            throw error
        } catch {
            printError("tmf: \(describe(error))")
            throw ExitCode(1)
        }
    }

    private func pretrain() throws {
        guard (corpus == nil) != (data == nil) else {
            throw PretrainError.invalidParameter("give exactly one of --corpus FILE.txt or --data DATASET")
        }
        if steps > CommandLimits.steps { throw PretrainError.invalidParameter(stepsMessage("--steps", "\(steps)")) }
        if batchSize > CommandLimits.batchSize { throw PretrainError.invalidParameter(batchSizeMessage(batchSize)) }
        if copyDrills < 0 || (copyDrills > 0 && data == nil) {
            throw PretrainError.invalidParameter("--copy-drills needs --data and must not be negative")
        }
        if lookupDrills < 0 || (lookupDrills > 0 && data == nil) {
            throw PretrainError.invalidParameter("--lookup-drills needs --data and must not be negative")
        }
        if titleTokens && (data == nil || initFrom != nil) {
            throw PretrainError.invalidParameter("--title-tokens needs --data and a new model (not --init)")
        }
        guard let weightsType = WeightsDType(rawValue: saveDtype) else {
            throw PretrainError.invalidParameter("--save-dtype must be f32 or bf16, got '\(saveDtype)'")
        }
        if let threads = compute.threads {
            guard threads >= 1 else { throw PretrainError.invalidParameter("--threads must be at least 1") }
            BLAS.setThreads(compute.effectiveThreads)
        }
        let parameters = PretrainParameters(
            vocabularySize: vocab, hiddenSize: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
            intermediateSize: ffn, context: context, steps: steps, batchSize: batchSize, sequenceLength: seqLen,
            learningRate: lr, warmupSteps: warmup, seed: seed, checkpointEvery: checkpointEvery, evalEvery: evalEvery,
            dtype: weightsType)
        try parameters.validate(sizes: initFrom == nil)

        let documents: [String]
        var titles: [String] = []
        if let corpus {
            documents = try PretrainCorpus.read(file: URL(fileURLWithPath: corpus))
        } else {
            let dataset = try Dataset.load(from: URL(fileURLWithPath: data!), options: LoadOptions(checkImages: false))
            documents = PretrainCorpus.build(from: dataset, seed: seed, copyDrills: copyDrills, lookupDrills: lookupDrills)
            if titleTokens { titles = dataset.items.map(\.title) }
        }
        let started = Date()
        let trainer = try Pretrainer(corpus: documents, parameters: parameters, folder: URL(fileURLWithPath: out),
                                     initFrom: initFrom.map { URL(fileURLWithPath: $0) }, addedTokens: titles)
        let every = max(1, steps / 50)
        var window: [Float] = []
        try trainer.run { event in
            guard !quiet else { return true }
            switch event {
            case let .prepared(train, valid, docs, params, vocabulary):
                printError("tmf: pretrain: \(docs) documents, \(train) training tokens (\(valid) held out), "
                           + "vocabulary \(vocabulary), \(params) weights")
            case let .step(r):
                window.append(r.loss)
                if r.step % every == 0 || r.step == 1 || r.step == steps {
                    let mean = window.reduce(0, +) / Float(window.count)
                    window.removeAll()
                    printError(String(format: "tmf: pretrain step %d/%d loss %.4f lr %.2e grad %.2f %.0f tok/s %.0f s",
                                      r.step, steps, mean, r.learningRate, r.gradientNorm, r.tokensPerSecond,
                                      Date().timeIntervalSince(started)))
                }
            case let .evaluation(step, loss):
                printError(String(format: "tmf: pretrain step %d held-out loss %.4f", step, loss))
            case let .checkpoint(step):
                if step == steps { printError("tmf: wrote \(out) (step \(step))") }
            }
            return true
        }
    }
}
