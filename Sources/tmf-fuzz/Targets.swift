import Foundation
import TMFCLI
import TMFCLIP
import TMFCheckpoint
import TMFData
import TMFImage
import TMFLlama
import TMFLoRA
import TMFTokenizer
import TMFTrainer

/// One parser under fuzzing: it gets arbitrary bytes, writes them where the parser reads its
/// files, and runs the parser (and a little of what a caller does next). Errors are the expected
/// outcome of bad input; a crash, a hang or a sanitizer report is a bug.
struct FuzzTarget: Sendable {
    let name: String
    /// Files the seed corpus is made of, relative to the package root (one input each, split as
    /// the target splits its input: see `parts`).
    let seeds: [[String]]
    let run: @Sendable (_ input: [UInt8], _ folder: URL) throws -> Void
}

/// The input split at 0x00 bytes into `count` parts (missing parts are empty), so one input can
/// hold the several files a loader reads.
func parts(_ input: [UInt8], _ count: Int) -> [[UInt8]] {
    var out = input.split(separator: 0, maxSplits: count - 1, omittingEmptySubsequences: false).map(Array.init)
    while out.count < count { out.append([]) }
    return out
}

func write(_ bytes: [UInt8], _ name: String, in folder: URL) throws {
    try Data(bytes).write(to: folder.appendingPathComponent(name))
}

let targets: [FuzzTarget] = [
    FuzzTarget(name: "safetensors", seeds: [["Fixtures/fuzz/small.safetensors"], ["Fixtures/llama/tiny-tied/model.safetensors"]]) { input, folder in
        try write(input, "model.safetensors", in: folder)
        let file = try SafeTensorsFile(contentsOf: folder.appendingPathComponent("model.safetensors"))
        for name in file.tensorNames.prefix(16) { _ = try? file.tensor(named: name) }
    },
    FuzzTarget(name: "llama-config", seeds: [["Fixtures/models/tiny-llama/config.json"]]) { input, folder in
        try write(input, "config.json", in: folder)
        _ = try LlamaConfiguration.load(directory: folder)
    },
    FuzzTarget(name: "clip-config", seeds: [["Fixtures/models/tiny-clip/config.json"]]) { input, _ in
        _ = try CLIPConfiguration.decode(Data(input))
    },
    FuzzTarget(name: "tmf-json", seeds: [["Fixtures/fuzz/tmf.json"]]) { input, folder in
        try write(input, "tmf.json", in: folder)
        _ = try ModelSpec.load(folder: folder)
    },
    FuzzTarget(name: "adapter-config", seeds: [["Fixtures/llama/tiny-untied-adapter/adapter_config.json"]]) { input, folder in
        try write(input, "adapter_config.json", in: folder)
        _ = try LoRAModel.loadConfiguration(directory: folder)
    },
    FuzzTarget(name: "sentencepiece", seeds: [["Fixtures/tokenizer/sp/tokenizer.model"]]) { input, folder in
        try write(input, "tokenizer.model", in: folder)
        let t = try SentencePieceTokenizer(modelURL: folder.appendingPathComponent("tokenizer.model"))
        let ids = try t.encode("The user views Aquafin Men's Blue Neon Running Shoes", addBOS: true)
        _ = t.decode(ids)
    },
    FuzzTarget(name: "clip-bpe", seeds: [["Fixtures/fuzz/vocab.json", "Fixtures/fuzz/merges.txt"]]) { input, folder in
        let p = parts(input, 2)
        try write(p[0], "vocab.json", in: folder)
        try write(p[1], "merges.txt", in: folder)
        let t = try CLIPTokenizer(directory: folder)
        _ = try t.encode("a red bike helmet, size M", addBOS: true)
    },
    FuzzTarget(name: "png", seeds: [["Fixtures/shop/images/I000001.png"], ["Fixtures/shop/images/I000002.png"]]) { input, folder in
        try write(input, "a.png", in: folder)
        _ = try RGBImage(contentsOfPNG: folder.appendingPathComponent("a.png"))
    },
    FuzzTarget(name: "dataset", seeds: [["Fixtures/fuzz/shop/items.jsonl", "Fixtures/fuzz/shop/interactions.csv", "Fixtures/fuzz/shop/dataset.json"]]) { input, folder in
        let p = parts(input, 3)
        try write(p[0], "items.jsonl", in: folder)
        try write(p[1], "interactions.csv", in: folder)
        try write(p[2], "dataset.json", in: folder)
        let d = try Dataset.load(from: folder, options: LoadOptions(checkImages: false))
        let splits = SplitExamples(d)
        for ex in splits.test.prefix(4) { _ = try? d.candidates(for: ex, seed: 1) }
    },
    FuzzTarget(name: "recbole", seeds: [["Fixtures/fuzz/x.inter", "Fixtures/fuzz/x.item"]]) { input, folder in
        let p = parts(input, 2)
        let source = folder.appendingPathComponent("in"), out = folder.appendingPathComponent("out")
        try? FileManager.default.removeItem(at: out)
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try write(p[0], "x.inter", in: source)
        try write(p[1], "x.item", in: source)
        _ = try importRecBole(from: source, to: out)
    },
    FuzzTarget(name: "recommend-batch", seeds: [["Fixtures/fuzz/requests.jsonl"]]) { input, folder in
        // The requests of `tmf recommend --batch` against the small shop of Fixtures/fuzz:
        // history strings, users, candidate lists and `top`.
        try write(input, "requests.jsonl", in: folder)
        _ = try checkRecommendBatchFile(folder.appendingPathComponent("requests.jsonl").path, dataset: fuzzShop)
    },
]

/// Fixtures/fuzz's 3-item shop, loaded once (relative to the package root, where the fuzzer runs).
let fuzzShop: Dataset = {
    do { return try Dataset.load(from: URL(fileURLWithPath: "Fixtures/fuzz/shop"), options: LoadOptions(checkImages: false)) } catch {
        fatalError("tmf-fuzz runs from the package root (Fixtures/fuzz/shop): \(error)")
    }
}()
