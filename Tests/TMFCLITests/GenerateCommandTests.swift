import Foundation
import XCTest
import TMFCheckpoint
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTestSupport
import TMFTokenizer

/// `tmf generate` through the built binary, against the library's own greedy generation.
///
/// The committed tiny Llamas (vocabulary 128) do not fit the fixture tokenizer (640 pieces), so
/// each test writes a seeded random Llama with the tokenizer's vocabulary, the fixture
/// `tokenizer.model`, and a peft adapter with non-zero B into a temporary folder.
final class GenerateCommandTests: XCTestCase {
    static let prompt = "Recommend a bike helmet for kids:"

    struct Folders {
        var llm: URL
        var adapter: URL
    }

    /// A tiny Llama (vocabulary = the fixture tokenizer's 640 pieces) with its tokenizer.model, and
    /// a LoRA adapter (r 4 on q/v/down, B random) for it.
    func makeModel() throws -> Folders {
        let root = try temporaryFolder(self)
        let llm = root.appendingPathComponent("llm"), adapter = root.appendingPathComponent("adapter")
        try FileManager.default.createDirectory(at: llm, withIntermediateDirectories: true)
        let tokenizerURL = fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model")
        let tokenizer = try SentencePieceTokenizer(modelURL: tokenizerURL)
        let config = try LlamaConfiguration(hiddenSize: 64, intermediateSize: 128, hiddenLayers: 2, attentionHeads: 4,
                                            kvHeads: 2, vocabularySize: tokenizer.vocabularySize, tieWordEmbeddings: true,
                                            maxPositionEmbeddings: 256)
        let model = LlamaModel(configuration: config)
        model.randomize(seed: 7, std: 0.2)
        try JSONEncoder().encode(config).write(to: llm.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(model.weightTensors, to: llm.appendingPathComponent("model.safetensors"))
        try FileManager.default.copyItem(at: tokenizerURL, to: llm.appendingPathComponent("tokenizer.model"))

        let lora = LoRAModel(base: model, configuration: try LoRAConfiguration(rank: 4, alpha: 8, targetModules: ["q_proj", "v_proj", "down_proj"]),
                             seed: 3)
        var rng = SeededRNG(seed: 11)
        for path in lora.modulePaths {
            let b = lora.adapters[path]!.b
            for i in 0..<b.count { b.pointer[i] = rng.nextFloat() - 0.5 }
        }
        try lora.save(to: adapter)
        lora.detach()
        return Folders(llm: llm, adapter: adapter)
    }

    /// The library's continuation: greedy tokens (EOS excluded), decoded on their own.
    func expected(_ folders: Folders, adapter: Bool, maxTokens: Int) throws -> (tokens: [Int], text: String) {
        BLAS.setThreads(1)
        let tokenizer = try SentencePieceTokenizer(directory: folders.llm)
        let model = try LlamaModel.load(directory: folders.llm)
        if adapter { try LoRAModel.load(directory: folders.adapter, base: model).merge() }
        let ids = try tokenizer.encode(Self.prompt, addBOS: true)
        let tokens = model.generate(prompts: [ids], parameters: GenerationParameters(maxTokens: maxTokens, stopTokens: [tokenizer.eosID]))[0]
        return (tokens, tokenizer.decode(tokens, skipSpecialTokens: true))
    }

    func generate(_ folders: Folders, _ extra: [String]) throws -> CLIResult {
        try runTMF(["generate", "--llm", folders.llm.path, "--prompt", Self.prompt, "--threads", "1"] + extra)
    }

    func testGreedyMatchesLibrary() throws {
        let folders = try makeModel()
        let full = try expected(folders, adapter: false, maxTokens: 32)
        XCTAssertGreaterThanOrEqual(full.tokens.count, 8, "the random model should not stop at once: \(full.tokens)")

        let r = try generate(folders, [])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "")
        XCTAssertEqual(r.stdout, full.text + "\n")

        // --max-tokens: greedy decoding is prefix-consistent.
        let short = try expected(folders, adapter: false, maxTokens: 3)
        XCTAssertEqual(short.tokens, Array(full.tokens.prefix(3)))
        let r3 = try generate(folders, ["--max-tokens", "3"])
        XCTAssertEqual(r3.status, 0, r3.stderr)
        XCTAssertEqual(r3.stdout, short.text + "\n")
        XCTAssertLessThan(r3.stdout.count, r.stdout.count)

        // Explicit greedy flags change nothing.
        let r0 = try generate(folders, ["--temperature", "0", "--seed", "5"])
        XCTAssertEqual(r0.stdout, r.stdout)
    }

    func testAdapterIsMerged() throws {
        let folders = try makeModel()
        let base = try expected(folders, adapter: false, maxTokens: 16)
        let adapted = try expected(folders, adapter: true, maxTokens: 16)
        XCTAssertNotEqual(base.tokens, adapted.tokens, "the adapter should change the continuation")
        let r = try generate(folders, ["--adapter", folders.adapter.path, "--max-tokens", "16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, adapted.text + "\n")
    }

    /// `--dtype bf16` holds the frozen matrices in 16 bits (converted once from this F32
    /// checkpoint): the library's greedy tokens on the same bf16 model, adapter applied unmerged.
    func testHalfPrecisionWeights() throws {
        let folders = try makeModel()
        let model = try LlamaModel.load(directory: folders.llm, dtype: .bf16)
        XCTAssertEqual(model.storageType, .bf16)
        let lora = try LoRAModel.load(directory: folders.adapter, base: model)
        lora.merge()
        XCTAssertFalse(lora.isMerged, "a 16-bit base keeps its adapters attached")
        let tokenizer = try SentencePieceTokenizer(directory: folders.llm)
        let tokens = model.generate(prompts: [try tokenizer.encode(Self.prompt, addBOS: true)],
                                    parameters: GenerationParameters(maxTokens: 16, stopTokens: [tokenizer.eosID]))[0]
        let r = try generate(folders, ["--adapter", folders.adapter.path, "--max-tokens", "16", "--dtype", "bf16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, tokenizer.decode(tokens, skipSpecialTokens: true) + "\n")
        assertFailure(try generate(folders, ["--dtype", "f8"]), mentions: "--dtype")
    }

    func testStopString() throws {
        let folders = try makeModel()
        let full = try expected(folders, adapter: false, maxTokens: 32)
        // A letter or digit from the second half of the output, cut at its first occurrence.
        let characters = Array(full.text)
        guard let stop = characters[(characters.count / 2)...].first(where: { $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            throw XCTSkip("no ASCII letter in the random continuation \(full.text.debugDescription)")
        }
        let cut = String(full.text[..<full.text.firstIndex(of: stop)!])
        let r = try generate(folders, ["--stop", String(stop)])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, cut + "\n")

        // Several stop strings: the earliest wins; one that never appears changes nothing.
        let r2 = try generate(folders, ["--stop", "never-in-the-output-\u{1F600}", String(stop)])
        XCTAssertEqual(r2.stdout, cut + "\n")
    }

    func testSampling() throws {
        let folders = try makeModel()
        let a = try generate(folders, ["--temperature", "1", "--top-p", "0.9", "--seed", "1"])
        let b = try generate(folders, ["--temperature", "1", "--top-p", "0.9", "--seed", "1"])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout, b.stdout, "a seed makes sampling repeatable")
    }

    func testBadInput() throws {
        assertFailure(try runTMF(["generate", "--llm", "/nonexistent/llama", "--prompt", "hi"]), mentions: "/nonexistent/llama")

        // A folder without tokenizer.model (the committed tiny Llama) and without config.json.
        let tied = fixturesURL.appendingPathComponent("llama/tiny-tied").path
        assertFailure(try runTMF(["generate", "--llm", tied, "--prompt", "hi"]), mentions: "tokenizer.model")
        let empty = try temporaryFolder(self)
        try FileManager.default.copyItem(at: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"),
                                         to: empty.appendingPathComponent("tokenizer.model"))
        assertFailure(try runTMF(["generate", "--llm", empty.path, "--prompt", "hi"]), mentions: "config.json")

        // The tiny Llama's vocabulary (128) is smaller than the tokenizer's (640).
        let mismatched = try temporaryFolder(self)
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: fixturesURL.appendingPathComponent("llama/tiny-tied/\(name)"),
                                             to: mismatched.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: fixturesURL.appendingPathComponent("tokenizer/sp/tokenizer.model"),
                                         to: mismatched.appendingPathComponent("tokenizer.model"))
        assertFailure(try runTMF(["generate", "--llm", mismatched.path, "--prompt", "hi"]), mentions: "vocab_size")

        // An adapter for another model (tiny-untied's adapter has other shapes) and a missing one.
        let folders = try makeModel()
        let otherAdapter = fixturesURL.appendingPathComponent("llama/tiny-untied-adapter").path
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--adapter", otherAdapter, "--prompt", "hi"]))
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--adapter", "/nonexistent/adapter", "--prompt", "hi"]),
                      mentions: "/nonexistent/adapter")

        // Longer than the model's 256 positions.
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--prompt", "hi", "--max-tokens", "1000000000"]),
                      mentions: "max_position_embeddings")

        // Argument errors.
        assertFailure(try runTMF(["generate", "--prompt", "hi"]), argumentError: true)
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path]), argumentError: true)
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--prompt", "hi", "--max-tokens", "0"]), argumentError: true)
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--prompt", "hi", "--temperature=-1"]), argumentError: true)
        assertFailure(try runTMF(["generate", "--llm", folders.llm.path, "--prompt", "hi", "--top-p", "0"]), argumentError: true)
    }
}
