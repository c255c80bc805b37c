import ArgumentParser
import Foundation
import TMFCLIP
import TMFImage
import TMFTensor
import TMFTokenizer

/// `tmf embed --clip DIR (--image FILE.png ... | --text TEXT ...)`: CLIP embeddings, projected and
/// not normalised (transformers' `get_image_features` / `get_text_features`; DESIGN.md §2).
struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Print CLIP embeddings (projected, not normalised) of PNG images or texts.",
        discussion: """
            Images are preprocessed as the folder's preprocessor_config.json says (CLIP's defaults \
            without one); texts are tokenized with its vocab.json + merges.txt, framed by the start \
            and end tokens, truncated and padded to the model's context length (at most 77). \
            Without --json, each line is the input, the embedding's width and L2 norm, and its \
            first values.
            """
    )

    @Option(help: "CLIP folder: config.json, model.safetensors, vocab.json, merges.txt (and optional preprocessor_config.json).")
    var clip: String

    @Option(parsing: .upToNextOption, help: "PNG files to embed.")
    var image: [String] = []

    @Option(parsing: .upToNextOption, help: "Texts to embed.")
    var text: [String] = []

    @Flag(help: "Print {\"embeddings\": [[...], ...]} (one row per input, in order).")
    var json = false

    @Option(help: "Inputs per forward pass (at most 1024).")
    var batchSize: Int = 16

    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if image.isEmpty == text.isEmpty {
            throw ValidationError(image.isEmpty ? "give --image FILE.png ... or --text TEXT ..."
                                                : "give either --image or --text, not both")
        }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if batchSize > CommandLimits.batchSize { throw refuseLimit(batchSizeMessage(batchSize)) }
    }

    func run() throws {
        compute.apply()
        do {
            let folder = try existingFolder(clip, option: "--clip", what: "a CLIP folder (config.json, model.safetensors, vocab.json, merges.txt)")
            let model = try CLIPModel.load(directory: folder, dtype: weights.storageType)
            let rows: [[Float]]
            if !image.isEmpty {
                rows = try embedImages(model: model, folder: folder)
            } else {
                rows = try embedTexts(model: model, folder: folder)
            }
            if json {
                print("{\"embeddings\": [" + rows.map { "[" + $0.map(jsonNumber).joined(separator: ", ") + "]" }
                    .joined(separator: ", ") + "]}")
            } else {
                for (name, row) in zip(image.isEmpty ? text.map(quoted) : image, rows) {
                    let norm = row.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
                    let head = row.prefix(4).map { String(format: "%.6f", $0) }.joined(separator: ", ")
                    print("\(name)\tdim \(row.count)\tnorm \(String(format: "%.6f", norm))\t[\(head)\(row.count > 4 ? ", …" : "")]")
                }
            }
        } catch {
            throw failure(error)
        }
    }

    private func embedImages(model: CLIPModel, folder: URL) throws -> [[Float]] {
        for path in image {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CLIError("--image \(path): no such file; give PNG files")
            }
            if isDirectory.boolValue { throw CLIError("--image \(path) is a folder; give PNG files") }
        }
        let preprocessor = try ClipImagePreprocessor(checkpointDirectory: folder)
        let side = model.configuration.vision.imageSize
        guard preprocessor.doCenterCrop, preprocessor.cropHeight == side, preprocessor.cropWidth == side else {
            let config = folder.appendingPathComponent("preprocessor_config.json")
            if !FileManager.default.fileExists(atPath: config.path) {
                throw CLIError("no preprocessor_config.json in \(folder.path): CLIP's default preprocessing crops to "
                               + "\(preprocessor.cropWidth)x\(preprocessor.cropHeight) but the model's image_size is \(side); "
                               + "add one with size and crop_size \(side)")
            }
            throw CLIError("\(config.path) does not center-crop to the model's image_size \(side)x\(side); "
                           + "set do_center_crop true and crop_size \(side)")
        }
        var rows: [[Float]] = []
        for start in stride(from: 0, to: image.count, by: batchSize) {
            let urls = image[start..<min(start + batchSize, image.count)].map { URL(fileURLWithPath: $0) }
            let pixels = try preprocessor.batchPixelValues(contentsOfPNGs: urls)
            let embeddings = try withNoGrad {
                try model.imageEmbeddings(Tensor(pixels, shape: [urls.count, 3, side, side]))
            }
            rows += split(embeddings)
        }
        return rows
    }

    private func embedTexts(model: CLIPModel, folder: URL) throws -> [[Float]] {
        let context = min(CLIPTokenizer.defaultContextLength, model.configuration.text.maxPositionEmbeddings)
        guard context >= 2 else {
            throw CLIError("\(folder.appendingPathComponent("config.json").path): text max_position_embeddings "
                           + "\(model.configuration.text.maxPositionEmbeddings) leaves no room for the start and end tokens")
        }
        let tokenizer = try CLIPTokenizer(directory: folder, contextLength: context)
        let vocab = model.configuration.text.vocabSize
        guard tokenizer.vocabularySize <= vocab else {
            throw CLIError("\(folder.appendingPathComponent("vocab.json").path) has \(tokenizer.vocabularySize) tokens but "
                           + "config.json's text vocab_size is \(vocab): the tokenizer does not belong to this model")
        }
        var rows: [[Float]] = []
        for start in stride(from: 0, to: text.count, by: batchSize) {
            let encodings = text[start..<min(start + batchSize, text.count)].map { tokenizer.encodePadded($0) }
            let embeddings = try withNoGrad {
                try model.textEmbeddings(encodings.map(\.inputIDs), attentionMask: encodings.map(\.attentionMask))
            }
            rows += split(embeddings)
        }
        return rows
    }

    /// The rows of an (N, P) tensor.
    private func split(_ t: Tensor) -> [[Float]] {
        let p = t.shape[1]
        return (0..<t.shape[0]).map { Array(UnsafeBufferPointer(start: t.pointer + $0 * p, count: p)) }
    }

    private func quoted(_ s: String) -> String {
        let data = try? JSONSerialization.data(withJSONObject: s, options: [.fragmentsAllowed])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "\"\(s)\""
    }

    /// The shortest decimal that reads back as the same Float; JSON has no NaN or infinity, so
    /// those print as null.
    private func jsonNumber(_ x: Float) -> String {
        x.isFinite ? "\(x)" : "null"
    }
}
