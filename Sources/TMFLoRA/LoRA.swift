import Foundation
import TMFCheckpoint
import TMFLlama
import TMFTensor

/// Errors of `TMFLoRA`: an adapter folder or configuration this code cannot use.
public enum LoRAError: Error, LocalizedError, Equatable {
    /// The folder lacks adapter_config.json or adapter_model.safetensors.
    case missingFile(path: String)
    /// adapter_config.json is not a JSON object.
    case unreadableConfig(path: String, reason: String)
    /// A key of adapter_config.json is missing, malformed, or asks for a feature not supported.
    case invalidConfig(path: String, key: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .missingFile(path):
            return "Missing \(path): a LoRA adapter folder holds adapter_config.json and adapter_model.safetensors "
                + "(as peft's save_pretrained writes them)."
        case let .unreadableConfig(path, reason):
            return "Cannot read \(path): \(reason). Re-save the adapter with peft or tmf."
        case let .invalidConfig(path, key, reason):
            return "Unsupported adapter setting \"\(key)\" in \(path.isEmpty ? "adapter_config.json" : path): \(reason)."
        }
    }
}

/// The projections LoRA can adapt, by their Hugging Face names.
public let loraTargetNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

/// LoRA hyper-parameters (peft's `LoraConfig` fields of the same meaning).
public struct LoRAConfiguration: Sendable, Equatable, Codable {
    /// Rank r.
    public var rank: Int
    /// lora_alpha; the update is scaled by alpha / r (alpha / √r with `useRSLoRA`).
    public var alpha: Float
    /// Dropout on the adapter's input during training.
    public var dropout: Float
    /// Projections to adapt, e.g. ["q_proj", "v_proj"].
    public var targetModules: [String]
    /// peft's use_rslora.
    public var useRSLoRA: Bool

    public init(rank: Int = 8, alpha: Float = 16, dropout: Float = 0, targetModules: [String] = ["q_proj", "v_proj"],
                useRSLoRA: Bool = false) throws {
        self.rank = rank
        self.alpha = alpha
        self.dropout = dropout
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA
        try validate()
    }

    /// The factor applied to B·A·x.
    public var scaling: Float { useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }

    func validate() throws {
        if rank <= 0 { throw LoRAError.invalidConfig(path: "", key: "r", reason: "\(rank) must be positive") }
        if !alpha.isFinite || alpha <= 0 { throw LoRAError.invalidConfig(path: "", key: "lora_alpha", reason: "\(alpha) must be positive") }
        if !(dropout >= 0 && dropout < 1) { throw LoRAError.invalidConfig(path: "", key: "lora_dropout", reason: "\(dropout) must be in [0, 1)") }
        if targetModules.isEmpty { throw LoRAError.invalidConfig(path: "", key: "target_modules", reason: "empty") }
        for t in targetModules where !loraTargetNames.contains(t) {
            throw LoRAError.invalidConfig(path: "", key: "target_modules",
                                          reason: "\"\(t)\" is not one of \(loraTargetNames.joined(separator: ", "))")
        }
    }
}

/// One LoRA adapter: delta(x) = scaling · B · A · dropout(x), attached to a frozen `Linear`.
public final class LoRALinear: LinearAdapter, @unchecked Sendable {
    /// lora_A.weight (r, in): kaiming-uniform (a = √5) at creation, as peft.
    public let a: Tensor
    /// lora_B.weight (out, r): zero at creation, so a fresh adapter leaves the model unchanged.
    public let b: Tensor
    public let scaling: Float
    public let dropout: Float
    var rng: SeededRNG

    init(inFeatures: Int, outFeatures: Int, configuration: LoRAConfiguration, rng: SeededRNG) {
        var r = rng
        a = Tensor.kaimingUniform([configuration.rank, inFeatures], rng: &r, requiresGrad: true)
        b = Tensor(zeros: [outFeatures, configuration.rank], requiresGrad: true)
        scaling = configuration.scaling
        dropout = configuration.dropout
        self.rng = r
    }

    /// x [..., in] → scaling · (dropout(x) · Aᵀ) · Bᵀ [..., out].
    public func delta(_ x: Tensor, training: Bool) -> Tensor {
        Tensor.linear(down(x, training: training).scale(scaling), weight: b)  // (..., out)
    }

    /// The same term as (down, up, scale) = (dropout(x) · Aᵀ, B, scaling), for the layer to add
    /// inside its own product.
    public func lowRank(_ x: Tensor, training: Bool) -> (down: Tensor, up: Tensor, scale: Float)? {
        (down(x, training: training), b, scaling)
    }

    /// dropout(x) · Aᵀ: x [..., in] → [..., r].
    private func down(_ x: Tensor, training: Bool) -> Tensor {
        Tensor.linear(x.dropout(dropout, training: training, rng: &rng), weight: a)
    }

    public var trainableParameters: [Tensor] { [a, b] }
}

/// LoRA adapters on a frozen `LlamaModel`, saved and loaded in peft's layout.
///
/// Creating one attaches adapters to the chosen projections of every layer; `detach()` removes
/// them. `merge()` folds scaling·B·A into the base weights (faster inference: no adapter
/// matmuls) and detaches; `unmerge()` subtracts it again and reattaches. Unmerging restores the
/// base only up to Float32 rounding (≈1e-7 relative); reload the base for bit-exact weights.
public final class LoRAModel: @unchecked Sendable {
    public let base: LlamaModel
    public let configuration: LoRAConfiguration
    /// Adapters by module path, e.g. "model.layers.0.self_attn.q_proj".
    public let adapters: [String: LoRALinear]
    /// The module paths in a fixed order (layer, then q k v o gate up down).
    public let modulePaths: [String]
    public private(set) var isMerged = false
    private var linears: [String: Linear] = [:]

    /// Attaches fresh adapters (A random from `seed`, B zero) to `base`.
    public init(base: LlamaModel, configuration: LoRAConfiguration, seed: UInt64 = 0) {
        self.base = base
        self.configuration = configuration
        var adapters: [String: LoRALinear] = [:]
        var paths: [String] = []
        for (i, layer) in base.layers.enumerated() {
            for (key, linear) in layer.linears {
                let name = String(key.split(separator: ".").last!)
                guard configuration.targetModules.contains(name) else { continue }
                let path = "model.layers.\(i).\(key)"
                let adapter = LoRALinear(inFeatures: linear.inFeatures, outFeatures: linear.outFeatures,
                                         configuration: configuration, rng: SeededRNG(seed: seed, key: ["lora", path]))
                adapters[path] = adapter
                paths.append(path)
                linears[path] = linear
                precondition(linear.adapter == nil, "\(path) already has an adapter")
                linear.adapter = adapter
            }
        }
        self.adapters = adapters
        modulePaths = paths
    }

    /// The trainable tensors (A then B of each module, in `modulePaths` order).
    public var parameters: [Tensor] { modulePaths.flatMap { adapters[$0]!.trainableParameters } }

    /// Tensors under peft's saved key names
    /// ("base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight", ...).
    public var peftNamedParameters: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (path, adapter) in adapters {
            out["base_model.model.\(path).lora_A.weight"] = adapter.a
            out["base_model.model.\(path).lora_B.weight"] = adapter.b
        }
        return out
    }

    /// Removes the adapters from the base model (the base is then unchanged unless merged).
    public func detach() {
        for (_, linear) in linears where linear.adapter != nil { linear.adapter = nil }
    }

    /// Folds W += scaling · B · A into every adapted base weight and detaches the adapters.
    /// A base held in 16 bits is left as it is, adapters attached (folding would round the
    /// update away): `isMerged` stays false.
    public func merge() {
        guard !isMerged, linears.values.allSatisfy({ $0.weight.floatTensor != nil }) else { return }
        apply(sign: 1)
        for (_, linear) in linears { linear.adapter = nil }
        isMerged = true
    }

    /// Undoes `merge()` (up to rounding) and reattaches the adapters.
    public func unmerge() {
        guard isMerged else { return }
        apply(sign: -1)
        for (path, linear) in linears { linear.adapter = adapters[path] }
        isMerged = false
    }

    private func apply(sign: Float) {
        for (path, linear) in linears {
            let ad = adapters[path]!
            let out = linear.outFeatures, inp = linear.inFeatures, r = configuration.rank
            // W (out, in) += sign · scaling · B (out, r) · A (r, in)
            BLAS.sgemm(transA: false, transB: false, m: out, n: inp, k: r, alpha: sign * ad.scaling,
                       a: ad.b.pointer, lda: r, b: ad.a.pointer, ldb: inp, beta: 1, c: linear.weight.tensor.pointer, ldc: inp)
        }
    }

    // MARK: files

    /// Writes adapter_config.json and adapter_model.safetensors (F32) in peft's layout (each file
    /// atomically). `baseModelPath` goes into base_model_name_or_path.
    public func save(to directory: URL, baseModelPath: String? = nil) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try SafeTensorsWriter.write(peftNamedParameters, as: .f32, metadata: [("format", "pt")],
                                    to: directory.appendingPathComponent("adapter_model.safetensors"))
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM",
            "r": configuration.rank, "lora_alpha": configuration.alpha, "lora_dropout": configuration.dropout,
            "target_modules": configuration.targetModules.sorted(), "use_rslora": configuration.useRSLoRA,
            "bias": "none", "fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
            "use_dora": false, "modules_to_save": NSNull(), "layers_to_transform": NSNull(),
            "layers_pattern": NSNull(), "rank_pattern": [String: Any](), "alpha_pattern": [String: Any](),
            "base_model_name_or_path": baseModelPath.map { $0 as Any } ?? NSNull(),
            "revision": NSNull(),
        ]
        let data = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: directory.appendingPathComponent("adapter_config.json"), options: .atomic)
    }

    /// Reads adapter_config.json (peft's fields) from `directory`.
    /// - Throws: `LoRAError` for a missing, unreadable or unsupported configuration.
    public static func loadConfiguration(directory: URL) throws -> LoRAConfiguration {
        let url = directory.appendingPathComponent("adapter_config.json")
        guard FileManager.default.fileExists(atPath: url.path) else { throw LoRAError.missingFile(path: url.path) }
        let data: Data
        do { data = try readSmallFile(url) } catch {
            throw LoRAError.unreadableConfig(path: url.path, reason: error.localizedDescription)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw LoRAError.unreadableConfig(path: url.path, reason: "not valid JSON")
        }
        guard let json = object as? [String: Any] else { throw LoRAError.unreadableConfig(path: url.path, reason: "not a JSON object") }
        func bad(_ key: String, _ reason: String) -> LoRAError { .invalidConfig(path: url.path, key: key, reason: reason) }
        if let t = json["peft_type"] as? String, t != "LORA" { throw bad("peft_type", "\"\(t)\" is not LORA") }
        guard let r = json["r"] as? Int else { throw bad("r", "missing or not an integer") }
        guard let alpha = (json["lora_alpha"] as? NSNumber)?.floatValue else { throw bad("lora_alpha", "missing or not a number") }
        let dropout = (json["lora_dropout"] as? NSNumber)?.floatValue ?? 0
        let targets: [String]
        if let list = json["target_modules"] as? [String] { targets = list }
        else if json["target_modules"] is String { throw bad("target_modules", "a regular expression is not supported; list the module names") }
        else { throw bad("target_modules", "missing") }
        if (json["use_dora"] as? Bool) == true { throw bad("use_dora", "DoRA is not supported") }
        if (json["fan_in_fan_out"] as? Bool) == true { throw bad("fan_in_fan_out", "must be false for Llama") }
        if let b = json["bias"] as? String, b != "none" { throw bad("bias", "\"\(b)\" is not supported (only \"none\")") }
        for key in ["rank_pattern", "alpha_pattern"] {
            if let d = json[key] as? [String: Any], !d.isEmpty { throw bad(key, "per-module ranks are not supported") }
        }
        for key in ["modules_to_save", "layers_to_transform"] {
            if let v = json[key], !(v is NSNull) { throw bad(key, "not supported (must be null)") }
        }
        do {
            return try LoRAConfiguration(rank: r, alpha: alpha, dropout: dropout, targetModules: targets,
                                         useRSLoRA: (json["use_rslora"] as? Bool) ?? false)
        } catch let LoRAError.invalidConfig(_, key, reason) {
            throw LoRAError.invalidConfig(path: url.path, key: key, reason: reason)
        }
    }

    /// Loads a peft adapter folder onto `base` (attaching it).
    /// - Throws: `LoRAError` for the configuration; `CheckpointError.keyMismatch` (every missing,
    ///   unexpected or wrongly shaped tensor at once) for adapter_model.safetensors.
    public static func load(directory: URL, base: LlamaModel) throws -> LoRAModel {
        let configuration = try loadConfiguration(directory: directory)
        let weights = directory.appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: weights.path) else { throw LoRAError.missingFile(path: weights.path) }
        let file = try SafeTensorsFile(contentsOf: weights)
        let model = LoRAModel(base: base, configuration: configuration)
        do {
            try loadStrict(model.peftNamedParameters, from: file)
        } catch {
            model.detach()
            throw error
        }
        return model
    }
}
