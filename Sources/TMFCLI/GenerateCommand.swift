import ArgumentParser
import Foundation
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTokenizer

/// `tmf generate --llm DIR --prompt TEXT`: continues a prompt with a Llama folder (optionally with
/// a peft LoRA adapter merged in) and prints only the continuation (DESIGN.md §2).
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Continue a prompt with a Llama model (and optional LoRA adapter); print only the continuation.",
        discussion: """
            The prompt is encoded with the folder's tokenizer.model (BOS first). Generation ends at \
            EOS, after --max-tokens tokens, or where the text produced so far contains a --stop \
            string (the output is cut before it). The new tokens are decoded on their own, as \
            `tokenizer.decode(output[prompt_length:], skip_special_tokens=True)` does.
            """
    )

    @Option(help: "Llama folder: config.json, model.safetensors (or a sharded index) and tokenizer.model.")
    var llm: String

    @Option(help: "peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors), merged into the model.")
    var adapter: String?

    @Option(help: "The prompt text.")
    var prompt: String

    @Option(help: "At most this many new tokens.")
    var maxTokens: Int = 32

    @Option(help: "Sampling temperature; 0 is greedy (argmax).")
    var temperature: Float = 0

    @Option(help: "Nucleus sampling: keep the most likely tokens whose probabilities sum to P (with --temperature > 0).")
    var topP: Float = 1

    @Option(help: "Seed of the sampler (with --temperature > 0).")
    var seed: UInt64 = 0

    @Option(parsing: .upToNextOption,
            help: "Stop where the output contains one of these strings (not printed); \\n and \\t are a newline and a tab.")
    var stop: [String] = []

    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if !(temperature >= 0) || !temperature.isFinite { throw ValidationError("--temperature must be 0 (greedy) or positive") }
        if !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
        if stop.contains("") { throw ValidationError("--stop needs a non-empty string") }
    }

    func run() throws {
        compute.apply()
        do {
            let folder = try existingFolder(llm, option: "--llm", what: "a Llama folder (config.json, model.safetensors, tokenizer.model)")
            let tokenizerURL = folder.appendingPathComponent("tokenizer.model")
            guard FileManager.default.fileExists(atPath: tokenizerURL.path) else {
                throw CLIError("no tokenizer.model in \(folder.path); put the model's SentencePiece tokenizer.model next to its config.json")
            }
            let tokenizer = try SentencePieceTokenizer(directory: folder)
            let model = try LlamaModel.load(directory: folder, dtype: weights.storageType)
            let vocab = model.configuration.vocabularySize
            guard tokenizer.vocabularySize <= vocab else {
                throw CLIError("\(tokenizerURL.path) has \(tokenizer.vocabularySize) pieces but config.json's vocab_size is "
                               + "\(vocab): the tokenizer does not belong to this model")
            }
            if let adapter {
                let adapterFolder = try existingFolder(adapter, option: "--adapter", what: "a peft adapter folder (adapter_config.json + adapter_model.safetensors)")
                try LoRAModel.load(directory: adapterFolder, base: model).merge()
            }
            let output = try Self.generate(model: model, tokenizer: tokenizer, prompt: prompt, parameters: parameters,
                                           stop: stop.map(Self.unescape))
            print(output)
        } catch {
            throw failure(error)
        }
    }

    var parameters: GenerationParameters {
        GenerationParameters(maxTokens: maxTokens, temperature: temperature, topP: topP, seed: seed)
    }

    /// Encodes `prompt` (with BOS), generates, and decodes the new tokens; generation stops at the
    /// tokenizer's and the configuration's EOS ids and where the decoded text contains a `stop`
    /// string (the text is cut before its first occurrence).
    /// - Throws: `CLIError` when the prompt and `maxTokens` do not fit in the model's positions;
    ///   the tokenizer's errors.
    static func generate(model: LlamaModel, tokenizer: SentencePieceTokenizer, prompt: String,
                         parameters: GenerationParameters, stop: [String]) throws -> String {
        let ids = try tokenizer.encode(prompt, addBOS: true)
        let limit = model.configuration.maxPositionEmbeddings
        guard ids.count + parameters.maxTokens <= limit else {
            throw CLIError("the prompt (\(ids.count) tokens) plus --max-tokens \(parameters.maxTokens) exceeds the model's "
                           + "max_position_embeddings \(limit); shorten the prompt or lower --max-tokens")
        }
        var parameters = parameters
        parameters.stopTokens.insert(tokenizer.eosID)
        parameters.stopTokens.formUnion(model.configuration.eosTokenIds)
        let generated = model.generate(prompts: [ids], parameters: parameters, onToken: { _, _, tokens in
            if stop.isEmpty { return .continue }
            let text = tokenizer.decode(tokens, skipSpecialTokens: true)
            return stop.contains(where: text.contains) ? .stop : .continue
        })[0]
        var text = tokenizer.decode(generated, skipSpecialTokens: true)
        if let cut = stop.compactMap({ text.range(of: $0)?.lowerBound }).min() {
            text = String(text[..<cut])
        }
        return text
    }

    /// `\n`, `\t` and `\\` in a --stop argument as a newline, a tab and a backslash.
    static func unescape(_ s: String) -> String {
        var out = "", escaped = false
        for c in s {
            if escaped {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "\\": out.append("\\")
                default: out.append("\\"); out.append(c)
                }
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else {
                out.append(c)
            }
        }
        if escaped { out.append("\\") }
        return out
    }
}

/// An error of the command line itself (a missing folder, mismatched files): its message is the
/// whole line after `tmf: `.
struct CLIError: Error, LocalizedError {
    let message: String
    init(_ message: String) { self.message = message }
    var errorDescription: String? { message }
}

/// The URL of an existing folder given to `option`, or a `CLIError` saying what it should be.
func existingFolder(_ path: String, option: String, what: String) throws -> URL {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CLIError("\(option) \(path): no such folder; give \(what)")
    }
    guard isDirectory.boolValue else { throw CLIError("\(option) \(path) is a file, not a folder; give \(what)") }
    return URL(fileURLWithPath: path)
}

/// Prints `tmf: <error>` as one line on standard error (line breaks in the message become
/// spaces) and returns the exit code to throw: `throw failure(error)`.
func failure(_ error: Error) -> ExitCode {
    printError("tmf: " + rankPrefix + describe(error))
    return ExitCode(1)
}
