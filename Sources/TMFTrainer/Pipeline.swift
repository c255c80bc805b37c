import Foundation
import TMFCheckpoint
import TMFCLIP
import TMFData
import TMFFusion
import TMFGraph
import TMFImage
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTokenizer

/// Everything needed to rebuild a trained model: `tmf.json` in the model folder.
public struct ModelSpec: Codable, Sendable, Equatable {
    public var format = "tmf-1"
    /// Absolute path of the dataset the model was trained on (`--data` overrides it).
    public var dataset: String
    public var datasetFingerprint: String
    /// Absolute paths of the base Llama and CLIP folders.
    public var llm: String
    public var clip: String
    public var modalities: Modalities
    public var lora: LoRAConfiguration
    public var fusion: FusionConfiguration
    public var training: TrainingParameters
    public var graph: MBHTConfiguration
    public var graphTraining: MBHTTrainingParameters
    /// Behavior names in dataset order, and the target behavior the model predicts.
    public var behaviors: [String]
    public var target: String
    /// Ids of the added special tokens (`[MT_i]`, `[MT_b]`, `[PAD]`).
    public var specialTokens: [String: Int]
    /// Whether the dataset was loaded with `--skip-invalid` (evaluation and serving load it the
    /// same way). nil in folders written before it existed: false.
    public var skipInvalid: Bool?
    /// Fraction of training examples whose target item the user had touched before (any behavior).
    public var trainingRepeatRate: Double?
    /// Whether items of the user's own history may be recommended (`tmf recommend`'s default
    /// candidates): true when `trainingRepeatRate` ≥ `Pipeline.repeatThreshold`. nil: false.
    public var historyEligible: Bool?
    /// How candidate log-likelihoods are normalised for ranking. nil: `Pipeline.defaultNormalization`.
    public var normalization: LengthNormalization?
    /// Where the LLM came from: "given" (`--llm`), "bundled" or "pretrained" (the `[pretrain]` stage).
    public var llmSource: String?
    /// Weight of MBHT's scores in candidate ranking (`GraphPrior`), chosen on validation at the
    /// end of training or given with `--graph-weight`. nil (folders from before it, or training
    /// not finished): 0, the LLM alone.
    public var graphWeight: Double?
    /// The weights by kind of request (`GraphWeights`: the user touched a candidate before, or
    /// not), chosen on validation with `graphWeight`. nil (folders from before it, or a weight
    /// given with `--graph-weight`): `graphWeight` for both.
    public var graphWeights: GraphWeights?

    public static let fileName = "tmf.json"

    /// The ranking weights to use: `override` (`--graph-weight`) for both kinds when given, else
    /// `graphWeights`, else `graphWeight` (0 when unset).
    public func rankingWeights(override: Double? = nil) -> GraphWeights {
        if let override { return GraphWeights(override) }
        return graphWeights ?? GraphWeights(graphWeight ?? 0)
    }

    /// Reads `tmf.json` from a model folder.
    /// - Throws: `TrainerError.badModelFolder` for a missing or unreadable file.
    public static func load(folder: URL) throws -> ModelSpec {
        let url = folder.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TrainerError.badModelFolder(path: folder.path, reason: "no \(fileName); train one with `tmf train --out \(folder.path)`")
        }
        do { return try JSONDecoder().decode(ModelSpec.self, from: readSmallFile(url)) } catch {
            throw TrainerError.badModelFolder(path: folder.path, reason: "\(fileName) is unreadable (\(error.localizedDescription))")
        }
    }

    /// Writes `tmf.json` atomically.
    public func save(folder: URL) throws {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try e.encode(self).write(to: folder.appendingPathComponent(Self.fileName), options: .atomic)
    }
}

/// Pipeline stages of `tmf train` (DESIGN.md §1).
public enum Stage: String, Codable, Sendable, CaseIterable {
    case pretrain, encode, graph, llm, all
}

/// What `tmf train` reports while it works.
public enum PipelineEvent: Sendable {
    /// A stage starts; `cached` when its result is reused.
    case stage(Stage, cached: Bool)
    /// Items encoded so far by CLIP.
    case encoding(done: Int, total: Int)
    case graph(MBHTTrainingEvent)
    /// The `[pretrain]` stage's progress.
    case pretrain(PretrainEvent)
    case training(TrainingEvent)
    /// Something the user must hear about (e.g. a language model that names no candidate).
    case warning(String)
    /// The graph prior's weight was chosen on validation (`GraphPrior.choose`).
    case graphWeight(GraphPrior.Choice)
    /// Validation examples ranked so far while choosing the graph weight.
    case calibrating(done: Int, total: Int)
}

/// Settings of one `tmf train` run.
public struct PipelineOptions: Sendable {
    public var dataset: URL
    public var model: URL
    /// The base Llama folder; ignored when `pretrain` is set.
    public var llm: URL
    public var clip: URL
    /// When set, a `[pretrain]` stage first makes the dataset's own small Llama in `MODEL/llm`
    /// (cached while the data and the plan are unchanged) and the pipeline uses it.
    public var pretrain: LanguageModelPlan?
    /// Where the LLM comes from, recorded in tmf.json ("given", "bundled", "pretrained").
    public var llmSource = "given"
    /// The graph prior's weight in ranking; nil: chosen on validation after training (`GraphPrior`).
    public var graphWeight: Double?
    public var modalities: Modalities = .full
    public var lora = try! LoRAConfiguration(rank: 8, alpha: 16, dropout: 0, targetModules: ["q_proj", "v_proj"])
    public var training = TrainingParameters()
    public var graphTraining: MBHTTrainingParameters = {
        var p = MBHTTrainingParameters()
        p.epochs = 30
        p.patience = 3
        p.examples = .everyTarget
        return p
    }()
    /// Longest behavior sequence MBHT sees.
    public var graphSequenceLength = 40
    public var fusionHeads = 1
    public var stage: Stage = .all
    public var resume = false
    public var skipInvalid = false
    /// How the LLM's matrices are held (nil: as its checkpoint stores them; see
    /// `LlamaModel.load(directory:dtype:)`). Not part of the model: eval may choose another.
    public var dtype: WeightStorageType?

    public init(dataset: URL, model: URL, llm: URL, clip: URL) {
        self.dataset = dataset; self.model = model; self.llm = llm; self.clip = clip
    }
}

/// The stages of `tmf train`: CLIP item features, the MBHT graph encoder, and the LoRA +
/// fusion training, each cached in the model folder and reused while its inputs are unchanged.
public enum Pipeline {
    public static let featuresFile = "item_features.safetensors"
    public static let graphFile = "graph.safetensors"
    /// The `[pretrain]` stage's Llama folder inside the model folder.
    public static let languageModelFolder = "llm"
    /// History items are eligible recommendations when at least this fraction of training targets
    /// repeat an item the user touched before.
    public static let repeatThreshold = 0.05
    /// The ranking score (see README: measured on validation).
    public static let defaultNormalization = LengthNormalization.sum
    /// Validation ValidRatio under which the LLM stage warns that the model names no candidate.
    public static let uselessValidRatio = 0.05

    /// The `[pretrain]` stage: a small Llama pretrained on `dataset`'s own text per `plan`, in
    /// `folder/llm`, reused while the data and the plan are unchanged (a key in
    /// `llm/stage.json`). Written under `llm.tmp` and renamed when complete (a killed run's
    /// `llm.tmp` is removed first).
    /// - Returns: the Llama folder, whether it was cached, and whether it completed (false when
    ///   stopped by `shouldStop`; nothing is kept then).
    public static func languageModel(dataset: Dataset, plan: LanguageModelPlan, folder: URL, group: ProcessGroup = .single,
                                     onEvent: (PipelineEvent) -> Void, shouldStop: () -> Bool) throws -> (URL, cached: Bool, completed: Bool) {
        let fm = FileManager.default
        let url = folder.appendingPathComponent(languageModelFolder)
        let key = dataset.fingerprint + "|" + String(decoding: try JSONEncoder.sorted.encode(plan), as: UTF8.self)
        struct StageKey: Codable { var key: String }
        let keyURL = url.appendingPathComponent("stage.json")
        let tmp = folder.appendingPathComponent(languageModelFolder + ".tmp")
        let root = group.isRoot
        if root { try? fm.removeItem(at: tmp) }  // a killed run's partial stage
        var isCached = false
        if let data = try? readSmallFile(keyURL), let stored = try? JSONDecoder().decode(StageKey.self, from: data),
           stored.key == key, (try? LlamaConfiguration.load(directory: url)) != nil {
            isCached = true
        }
        if group.isDistributed {
            // Rank 0's cache decides for every rank.
            group.barrier()
            if group.any(root && isCached) {
                guard isCached else {
                    throw TrainerError.badModelFolder(path: url.path, reason: "rank \(group.rank) cannot read rank 0's pretrained model; the model folder must be on a file system every rank shares")
                }
                return (url, true, true)
            }
        } else if isCached {
            return (url, true, true)
        }
        let corpus = PretrainCorpus.build(from: dataset, seed: plan.parameters.seed, copyDrills: plan.copyDrills,
                                          lookupDrills: plan.lookupDrills)
        // Rank 0 trains the tokenizer and makes the folder; the other ranks then read it and take
        // rank 0's initial weights, and all pretrain together, data-parallel by windows.
        var made: Pretrainer?
        if root {
            made = try Pretrainer(corpus: corpus, parameters: plan.parameters, folder: tmp,
                                  addedTokens: plan.titleTokens ? dataset.items.map(\.title) : [])
        }
        if group.isDistributed {
            group.barrier()
            if !root { made = try Pretrainer(corpus: corpus, parameters: plan.parameters, folder: tmp, initFrom: tmp, writes: false) }
            group.broadcastValues(of: made!.model.weightTensors.sorted { $0.key < $1.key }.map(\.value))  // rank 0's exact weights
            made!.group = group
        }
        let trainer = made!
        let metrics = MetricsLog(folder: folder)
        var logFailure: Error?
        let summary = try trainer.run { event in
            guard root else {
                if case .step = event { return !shouldStop() }
                return true
            }
            onEvent(.pretrain(event))
            do { try metrics.append(event) } catch { logFailure = error; return false }
            if case .step = event, shouldStop() { return false }
            return true
        }
        if let logFailure { try? fm.removeItem(at: tmp); throw logFailure }
        let stopped = summary.steps < plan.parameters.steps
        if root {
            if stopped {
                try? fm.removeItem(at: tmp)
            } else {
                try JSONEncoder.sorted.encode(StageKey(key: key)).write(to: tmp.appendingPathComponent("stage.json"), options: .atomic)
                try? fm.removeItem(at: url)
                try fm.moveItem(at: tmp, to: url)
            }
        }
        group.barrier()  // rank 0's folder is in place
        return (url, false, !stopped)
    }

    /// CLIP image and text embeddings of every item: ([items, d], [items, d]). Items without an
    /// image get a zero image row. Cached in `item_features.safetensors` under a key of the
    /// dataset fingerprint and the CLIP checkpoint.
    public static func itemFeatures(dataset: Dataset, clipFolder: URL, cacheFolder: URL?, group: ProcessGroup = .single,
                                    progress: (Int, Int) -> Void = { _, _ in }) throws -> (image: Tensor, text: Tensor, cached: Bool) {
        let key = try clipKey(clipFolder) + "|" + dataset.fingerprint
        let cacheURL = cacheFolder?.appendingPathComponent(featuresFile)
        func cached() -> (Tensor, Tensor)? {
            guard let cacheURL, FileManager.default.fileExists(atPath: cacheURL.path),
                  let file = try? SafeTensorsFile(contentsOf: cacheURL), file.metadata["key"] == key,
                  let image = try? file.tensor(named: "image"), let text = try? file.tensor(named: "text"),
                  image.shape[0] == dataset.items.count else { return nil }
            return (image.copy(), text.copy())
        }
        // Under MPI, rank 0's cache decides for every rank (a rank must not find a cache rank 0
        // is about to write, while rank 0 waits for its share).
        if group.isDistributed {
            let rootHas = group.any(group.isRoot && cached() != nil)
            if rootHas {
                guard let (image, text) = cached() else {
                    throw TrainerError.badModelFolder(path: cacheFolder?.path ?? "", reason: "rank \(group.rank) cannot read rank 0's \(featuresFile); the model folder must be on a file system every rank shares")
                }
                return (image, text, true)
            }
        } else if let (image, text) = cached() {
            return (image, text, true)
        }
        let clip = try CLIPModel.load(directory: clipFolder)
        let pre = try ClipImagePreprocessor(checkpointDirectory: clipFolder)
        let context = min(CLIPTokenizer.defaultContextLength, clip.configuration.text.maxPositionEmbeddings)
        let tokenizer = try CLIPTokenizer(directory: clipFolder, contextLength: context)
        let n = dataset.items.count, d = clip.configuration.projectionDim
        let image = Tensor(zeros: [n, d]), text = Tensor(zeros: [n, d])
        let batch = 16
        var done = 0
        // Batches of 16 items are dealt out over the ranks (batch k to rank k mod N); each rank
        // fills its rows and the sum over the ranks (zeros elsewhere) assembles every row.
        let mine = group.blocks(of: n, block: batch)
        try withNoGrad {
            for range in mine {
                let encodings = range.map { tokenizer.encodePadded(dataset.items[$0].text) }
                let t = try clip.textEmbeddings(encodings.map(\.inputIDs), attentionMask: encodings.map(\.attentionMask))
                (text.pointer + range.lowerBound * d).update(from: t.pointer, count: t.count)
                let withImage = range.filter { dataset.items[$0].image != nil }
                if !withImage.isEmpty {
                    let urls = withImage.map { dataset.url.appendingPathComponent(dataset.items[$0].image!) }
                    let pixels = try pre.batchPixelValues(contentsOfPNGs: urls)
                    let per = pixels.count / withImage.count
                    let side = Int((Double(per / 3)).squareRoot())
                    let e = try clip.imageEmbeddings(Tensor(pixels, shape: [withImage.count, 3, side, per / 3 / side]))
                    for (k, item) in withImage.enumerated() {
                        (image.pointer + item * d).update(from: e.pointer + k * d, count: d)
                    }
                }
                done += range.count
                progress(done, mine.reduce(0) { $0 + $1.count })
            }
        }
        if group.isDistributed {
            group.allReduceSum(UnsafeMutableBufferPointer(start: image.pointer, count: image.count))
            group.allReduceSum(UnsafeMutableBufferPointer(start: text.pointer, count: text.count))
        }
        if let cacheURL, group.isRoot {
            try SafeTensorsWriter.write(["image": image, "text": text], as: .f32, metadata: [("key", key)], to: cacheURL)
        }
        return (image, text, false)
    }

    /// A key that changes when the CLIP checkpoint changes (its config and weights' size and date).
    static func clipKey(_ folder: URL) throws -> String {
        var parts: [String] = [folder.standardizedFileURL.path]
        for name in ["config.json", "model.safetensors"] {
            let url = folder.appendingPathComponent(name)
            let attrs = try? FileManager.default.attributesOfItem(atPath: url.path)
            parts.append("\(name):\((attrs?[.size] as? NSNumber)?.intValue ?? -1):\((attrs?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)")
        }
        return parts.joined(separator: ",")
    }

    /// Per-user sequences MBHT trains on: every event before the user's validation target (so
    /// neither held-out answer is seen), the last `length` of them.
    public static func graphSequences(_ dataset: Dataset, splits: SplitExamples, length: Int) -> [[GraphEvent]] {
        var cut: [Int: Int] = [:]
        for ex in splits.valid { cut[ex.user] = ex.event }
        for ex in splits.test where cut[ex.user] == nil { cut[ex.user] = ex.event }
        return (0..<dataset.userIDs.count).map { u in
            let r = dataset.events(ofUser: u)
            let end = cut[u] ?? r.upperBound
            let start = max(r.lowerBound, end - length)
            return (start..<end).map { GraphEvent(item: Int(dataset.eventItems[$0]), behavior: Int(dataset.eventBehaviors[$0])) }
        }
    }

    /// MBHT ranking examples for a split (history = the last `length` events before the target,
    /// candidates = the protocol's seeded sets).
    public static func graphExamples(_ dataset: Dataset, examples: [Example], seed: UInt64, length: Int) throws -> [MBHTRankingExample] {
        try examples.map { ex in
            let h = dataset.history(of: ex, maxLength: length).map { GraphEvent(item: $0.item, behavior: $0.behavior) }
            return MBHTRankingExample(history: h, candidates: try dataset.candidates(for: ex, seed: seed), groundTruth: ex.target)
        }
    }

    /// The MBHT configuration for a dataset.
    public static func graphConfiguration(_ dataset: Dataset, length: Int) -> MBHTConfiguration {
        var c = MBHTConfiguration(numItems: dataset.items.count, numBehaviors: dataset.behaviors.count,
                                  targetBehavior: dataset.target, maxSequenceLength: length)
        c.scales = c.scales.filter { $0 <= length && length % $0 == 0 }
        return c
    }

    /// Trains MBHT (or reuses `graph.safetensors` when the data and configuration are unchanged),
    /// data-parallel over `group` (rank 0 alone reports, logs and saves). `completed` is false
    /// when `shouldStop` stopped training; nothing is saved then.
    static func graph(dataset: Dataset, splits: SplitExamples, folder: URL, options: PipelineOptions, group: ProcessGroup,
                      onEvent: (PipelineEvent) -> Void, shouldStop: @escaping () -> Bool) throws -> (MBHTModel, cached: Bool, completed: Bool) {
        let config = graphConfiguration(dataset, length: options.graphSequenceLength)
        var params = options.graphTraining
        params.seed = options.training.seed
        let paramsJSON = String(decoding: try JSONEncoder.sorted.encode(params), as: UTF8.self)
        let fingerprint = config.fingerprint(extra: dataset.fingerprint + paramsJSON)
        let url = folder.appendingPathComponent(graphFile)
        let cached = MBHTCheckpoint.storedFingerprint(at: url) == fingerprint ? try? MBHTModel.load(from: url) : nil
        if group.any(group.isRoot && cached != nil) {  // rank 0's cache decides for every rank
            guard let cached else {
                throw TrainerError.badModelFolder(path: url.path, reason: "rank \(group.rank) cannot read rank 0's MBHT model; the model folder must be on a file system every rank shares")
            }
            return (cached, true, true)
        }
        let model = try MBHTModel(configuration: config, seed: params.seed)
        let sequences = graphSequences(dataset, splits: splits, length: options.graphSequenceLength)
        let valid = try graphExamples(dataset, examples: Array(splits.valid.prefix(500)), seed: options.training.seed,
                                      length: options.graphSequenceLength)
        let metrics = MetricsLog(folder: folder)
        var logFailure: Error?
        let report = try model.train(MBHTTrainingData(sequences: sequences.filter { $0.count >= 2 }), validation: valid,
                                     parameters: params, group: group) { e in
            guard group.isRoot else { return shouldStop() ? .stop : .proceed }
            onEvent(.graph(e))
            do { try metrics.append(e) } catch { logFailure = error; return .stop }
            return shouldStop() ? .stop : .proceed
        }
        if let logFailure { throw logFailure }
        // A stopped run keeps no MBHT: the next one trains it again from the start.
        if report.stoppedByCallback { return (model, false, false) }
        if group.isRoot { try model.save(to: url, dataFingerprint: dataset.fingerprint + paramsJSON) }
        return (model, false, true)
    }

    /// Loads the tokenizer of a Llama folder with the modality tokens added.
    public static func tokenizer(llm: URL) throws -> SentencePieceTokenizer {
        try SentencePieceTokenizer(directory: llm, specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
    }

    /// Runs `tmf train`: the stages up to `options.stage`, each reused when cached.
    /// - Returns: whether training ran to the end (false when stopped by `shouldStop`).
    @discardableResult
    public static func train(_ options: PipelineOptions, onEvent: (PipelineEvent) -> Void = { _ in },
                             shouldStop: @escaping () -> Bool = { false }) throws -> Bool {
        let group = ProcessGroup.world
        let prepared = try prepare(options, group: group, onEvent: group.isRoot ? onEvent : { _ in },
                                   shouldStop: shouldStop)
        guard case let .ready(dataset, splits, llmURL, tokenizer, features, fusionConfig, spec0) = prepared else {
            if case let .finished(completed) = prepared { return completed }
            return true
        }
        var spec = spec0
        let folder = options.model

        onEvent(.stage(.llm, cached: false))
        let llm = try LlamaModel.load(directory: llmURL, dtype: options.dtype)
        llm.recomputesActivations = llm.isLargeForTraining && options.lora.dropout == 0
        let lora = LoRAModel(base: llm, configuration: options.lora, seed: options.training.seed)
        let fusion = try FusionModule(configuration: fusionConfig, seed: options.training.seed)
        let recommender = Recommender(llm: llm, lora: lora, fusion: fusion, features: features,
                                      encoder: try HybridPromptEncoder(tokenizer: tokenizer), modalities: options.modalities)
        let trainer = try LLMTrainer(recommender: recommender, dataset: dataset, splits: splits, parameters: options.training,
                                     folder: folder, group: group)
        if options.resume { try trainer.resume() }
        var lastValidation: EvalMetrics?
        let completed = try trainer.run(shouldStop: shouldStop) { event in
            if case let .validation(_, m, _) = event { lastValidation = m }
            onEvent(.training(event))
        }
        guard group.isRoot else { return completed }  // rank 0 alone chooses the weight and writes
        if completed {
            if let w = options.graphWeight {
                spec.graphWeight = w
                spec.graphWeights = nil
            } else {
                guard let w = try chooseGraphWeight(folder: folder, onEvent: onEvent, shouldStop: shouldStop) else { return false }
                spec.graphWeight = w.weight
                spec.graphWeights = w.byHistory
            }
            try spec.save(folder: folder)
        }
        if completed, let m = lastValidation, m.validRatio < uselessValidRatio {
            onEvent(.warning(String(format: "the fine-tuned LLM names a candidate in only %.1f%% of validation answers (ValidRatio %.4f): "
                + "its free-text answers are useless; rank the candidates instead (`tmf eval --rank`, `tmf recommend`), "
                + "or give the LLM more pretraining (--pretrain-steps) or a stronger --llm", 100 * m.validRatio, m.validRatio)))
        }
        return completed
    }

    /// What the stages before the LLM's leave: the run's end (`finished`: stopped, or
    /// `options.stage` reached) or what the LLM stage needs.
    enum Prepared {
        case finished(Bool)
        case ready(Dataset, SplitExamples, URL, SentencePieceTokenizer, ItemFeatures, FusionConfiguration, ModelSpec)

        /// 0: go on to the LLM stage; 1 / 2: the run ends (completed / stopped).
        var code: Double {
            if case let .finished(completed) = self { return completed ? 1 : 2 }
            return 0
        }
    }

    /// The `[pretrain]`, `[encode]` and `[graph]` stages (each reused when cached) and tmf.json.
    /// Under MPI every rank calls it and each stage runs data-parallel (pretraining by windows,
    /// CLIP encoding by items, MBHT by batches); rank 0 alone writes, and its caches decide.
    static func prepare(_ options: PipelineOptions, group: ProcessGroup, onEvent: (PipelineEvent) -> Void,
                        shouldStop: @escaping () -> Bool) throws -> Prepared {
        let fm = FileManager.default
        let folder = options.model
        let root = group.isRoot
        if root { try fm.createDirectory(at: folder, withIntermediateDirectories: true) }
        let dataset = try Dataset.load(from: options.dataset, options: LoadOptions(skipInvalid: options.skipInvalid))
        let splits = SplitExamples(dataset)

        var llmURL = options.llm
        if let plan = options.pretrain {
            onEvent(.stage(.pretrain, cached: false))
            let (url, cached, completed) = try languageModel(dataset: dataset, plan: plan, folder: folder, group: group,
                                                             onEvent: onEvent, shouldStop: shouldStop)
            if cached { onEvent(.stage(.pretrain, cached: true)) }
            if !completed { return .finished(false) }
            llmURL = url
        }
        if options.stage == .pretrain { return .finished(true) }

        onEvent(.stage(.encode, cached: false))
        let (image, text, _) = try itemFeatures(dataset: dataset, clipFolder: options.clip, cacheFolder: folder, group: group) {
            onEvent(.encoding(done: $0, total: $1))
        }
        if options.stage == .encode { return .finished(true) }

        onEvent(.stage(.graph, cached: false))
        let (mbht, graphCached, graphCompleted) = try graph(dataset: dataset, splits: splits, folder: folder, options: options,
                                                            group: group, onEvent: onEvent, shouldStop: shouldStop)
        if graphCached { onEvent(.stage(.graph, cached: true)) }
        if !graphCompleted { return .finished(false) }
        // tmf.json from here on, so a `--stage graph` folder serves `tmf eval --baseline mbht`.
        let llmConfiguration = try LlamaConfiguration.load(directory: llmURL)
        let tokenizer = try tokenizer(llm: llmURL)
        let features = ItemFeatures(image: image, text: text, graph: withNoGrad { mbht.itemEmbeddings().copy() },
                                    behaviors: withNoGrad { mbht.behaviorEmbeddings().copy() })
        let fusionConfig = FusionConfiguration(modalityWidth: image.shape[1], graphWidth: features.graph.shape[1],
                                               llmWidth: llmConfiguration.hiddenSize, heads: options.fusionHeads)
        let repeatRate = dataset.repeatRate(splits.train)
        var spec = ModelSpec(dataset: options.dataset.standardizedFileURL.path, datasetFingerprint: dataset.fingerprint,
                             llm: llmURL.standardizedFileURL.path, clip: options.clip.standardizedFileURL.path,
                             modalities: options.modalities, lora: options.lora, fusion: fusionConfig, training: options.training,
                             graph: mbht.configuration, graphTraining: options.graphTraining,
                             behaviors: dataset.behaviors.map(\.name), target: dataset.behaviors[dataset.target].name,
                             specialTokens: Dictionary(uniqueKeysWithValues: SentencePieceTokenizer.tmfSpecialTokens.map {
                                 ($0, tokenizer.specialTokenID($0)!) }))
        spec.skipInvalid = options.skipInvalid
        spec.trainingRepeatRate = repeatRate
        spec.historyEligible = repeatRate >= repeatThreshold
        spec.normalization = defaultNormalization
        spec.llmSource = options.llmSource
        if options.resume {
            let old = try ModelSpec.load(folder: folder)
            guard old.datasetFingerprint == spec.datasetFingerprint, old.lora == spec.lora, old.modalities == spec.modalities,
                  old.training == spec.training else {
                throw TrainerError.badModelFolder(path: folder.path,
                                                  reason: "--resume needs the same data and settings as the interrupted run; start a new run without --resume")
            }
        }
        if root { try spec.save(folder: folder) }
        if options.stage == .graph { return .finished(true) }
        return .ready(dataset, splits, llmURL, tokenizer, features, fusionConfig, spec)
    }

}

extension Pipeline {
    /// Ranks the validation split with the trained model in `folder` (its best checkpoint) and
    /// MBHT's scores, and picks the graph prior's weights (`GraphPrior.choose`): 0 when there are
    /// no validation examples, nil when stopped by `shouldStop`.
    static func chooseGraphWeight(folder: URL, onEvent: (PipelineEvent) -> Void,
                                  shouldStop: () -> Bool) throws -> (weight: Double, byHistory: GraphWeights)? {
        let trained = try TrainedModel.load(folder: folder)
        let examples = SplitExamples(trained.dataset).valid
        guard !examples.isEmpty else { return (0, GraphWeights(0)) }
        let norm = trained.spec.normalization ?? defaultNormalization
        var scored: [(truth: Int, scores: CandidateScores)] = []
        var touched: [Bool] = []
        var stopped = false
        func progress(_ done: Int, _ total: Int) -> Bool {
            onEvent(.calibrating(done: done, total: total))
            stopped = shouldStop()
            return !stopped
        }
        try withoutActuallyEscaping(progress) { progress in
            _ = try trained.recommender.rank(
                dataset: trained.dataset, examples: examples, seed: trained.spec.training.seed,
                historyLength: trained.spec.training.historyLength, normalization: norm, graph: trained.graph,
                answer: { ex, candidates, scores in
                    scored.append((candidates.firstIndex(of: ex.target)!, scores))
                    touched.append(trained.dataset.touchedBefore(ex, anyOf: candidates))
                },
                progress: progress)
        }
        guard !stopped else { return nil }
        let choice = GraphPrior.choose(scored, touched: touched, normalization: norm)
        onEvent(.graphWeight(choice))
        return (choice.weight, choice.byHistory)
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

/// A trained model folder loaded for `tmf eval` and `tmf recommend`.
public struct TrainedModel {
    public let spec: ModelSpec
    public let dataset: Dataset
    public let recommender: Recommender
    /// The MBHT model (candidate generation, `--baseline mbht`).
    public let graph: MBHTModel

    /// Loads `folder` (tmf.json, the adapter, fusion weights, item features and MBHT).
    /// - Parameter data: a dataset folder overriding the one the model remembers.
    /// - Parameter skipInvalid: drop invalid dataset rows; nil: as the model was trained.
    public static func load(folder: URL, data: URL? = nil, skipInvalid: Bool? = nil,
                            dtype: WeightStorageType? = nil) throws -> TrainedModel {
        let spec = try ModelSpec.load(folder: folder)
        let dataURL = data ?? URL(fileURLWithPath: spec.dataset)
        let dataset = try Dataset.load(from: dataURL, options: LoadOptions(skipInvalid: skipInvalid ?? spec.skipInvalid ?? false,
                                                                            target: spec.target))
        guard dataset.items.count == spec.graph.numItems, dataset.behaviors.map(\.name) == spec.behaviors else {
            throw TrainerError.badModelFolder(path: folder.path,
                                              reason: "the dataset \(dataURL.path) has other items or behaviors than the model was trained on")
        }
        let graphModel = try MBHTModel.load(from: folder.appendingPathComponent(Pipeline.graphFile))
        let llmURL = URL(fileURLWithPath: spec.llm)
        let llm = try LlamaModel.load(directory: llmURL, dtype: dtype)
        let lora = try LoRAModel.load(directory: folder, base: llm)
        let fusion = try FusionModule(configuration: spec.fusion, seed: 0)
        try loadStrict(Dictionary(uniqueKeysWithValues: fusion.namedParameters),
                       from: SafeTensorsFile(contentsOf: folder.appendingPathComponent("fusion.safetensors")))
        let (image, text, _) = try Pipeline.itemFeatures(dataset: dataset, clipFolder: URL(fileURLWithPath: spec.clip), cacheFolder: folder)
        let features = ItemFeatures(image: image, text: text, graph: withNoGrad { graphModel.itemEmbeddings().copy() },
                                    behaviors: withNoGrad { graphModel.behaviorEmbeddings().copy() })
        let recommender = Recommender(llm: llm, lora: lora, fusion: fusion, features: features,
                                      encoder: try HybridPromptEncoder(tokenizer: try Pipeline.tokenizer(llm: llmURL)),
                                      modalities: spec.modalities)
        return TrainedModel(spec: spec, dataset: dataset, recommender: recommender, graph: graphModel)
    }
}
