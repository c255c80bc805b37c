import CSentencePiece
import Foundation

/// Trains SentencePiece models through Debian's libsentencepiece_train.
///
/// ```swift
/// try SentencePieceTrainer.train(corpus: lines, vocabSize: 512, to: dir.appendingPathComponent("tokenizer.model"))
/// let tok = try SentencePieceTokenizer(directory: dir)
/// ```
public enum SentencePieceTrainer {
    /// SentencePiece's segmentation algorithms.
    public enum ModelType: String, Sendable {
        /// Byte-pair encoding (Llama).
        case bpe
        /// Unigram language model (T5, ALBERT).
        case unigram
        /// One piece per character.
        case char
        /// One piece per whitespace-separated word.
        case word
    }

    /// Trainer options. ``llama`` mirrors the `trainer_spec` / `normalizer_spec` stored in
    /// Llama-2's `tokenizer.model` (BPE, byte fallback, digits split, identity normalisation,
    /// whitespace kept, UNK 0 / BOS 1 / EOS 2, no PAD), as far as they matter for small models.
    public struct Options: Sendable, Equatable {
        /// Fraction of characters the vocabulary must cover; rarer ones fall back to bytes.
        public var characterCoverage: Double = 0.99995
        /// Rare characters become `<0xNN>` byte pieces instead of `<unk>` (adds 256 pieces).
        public var byteFallback = true
        /// Every digit is its own piece.
        public var splitDigits = true
        /// Pieces never span two Unicode scripts (Latin and Han, …).
        public var splitByUnicodeScript = true
        /// Pieces never contain a space except at their start (`▁word`).
        public var splitByWhitespace = true
        /// Pieces never mix digits and other characters.
        public var splitByNumber = true
        /// Allow pieces made only of `▁` (runs of spaces).
        public var allowWhitespaceOnlyPieces = true
        /// Longest piece, in characters.
        public var maxSentencePieceLength = 16
        /// Normalisation rule: `identity` (Llama) or `nmt_nfkc`, `nfkc`, ….
        public var normalizationRuleName = "identity"
        /// Prepend `▁` to every text so a word at the start encodes like one after a space.
        public var addDummyPrefix = true
        /// Collapse and trim spaces before encoding (Llama: no).
        public var removeExtraWhitespaces = false
        /// Id of `<unk>`.
        public var unkID = 0
        /// Id of `<s>`; `-1` for none.
        public var bosID = 1
        /// Id of `</s>`; `-1` for none.
        public var eosID = 2
        /// `-1`: no pad piece (Llama).
        public var padID = -1
        /// Pieces that are always kept whole (added to the vocabulary as user-defined symbols).
        public var userDefinedSymbols: [String] = []
        /// Trainer threads (1 keeps the shared cores free; BPE training is deterministic anyway).
        public var numThreads = 1
        /// Extra raw trainer flags (`"input_sentence_size": "100000"`), overriding the above.
        public var extra: [String: String] = [:]

        /// Llama-2's settings; change fields as needed.
        public init() {}

        /// Llama-2's settings (the defaults above).
        public static let llama = Options()

        func flags(vocabSize: Int, modelType: ModelType) -> [(String, String)] {
            var f: [(String, String)] = [
                ("model_type", modelType.rawValue),
                ("vocab_size", String(vocabSize)),
                ("character_coverage", String(characterCoverage)),
                ("byte_fallback", String(byteFallback)),
                ("split_digits", String(splitDigits)),
                ("split_by_unicode_script", String(splitByUnicodeScript)),
                ("split_by_whitespace", String(splitByWhitespace)),
                ("split_by_number", String(splitByNumber)),
                ("allow_whitespace_only_pieces", String(allowWhitespaceOnlyPieces)),
                ("max_sentencepiece_length", String(maxSentencePieceLength)),
                ("normalization_rule_name", normalizationRuleName),
                ("add_dummy_prefix", String(addDummyPrefix)),
                ("remove_extra_whitespaces", String(removeExtraWhitespaces)),
                ("unk_id", String(unkID)),
                ("bos_id", String(bosID)),
                ("eos_id", String(eosID)),
                ("pad_id", String(padID)),
                ("num_threads", String(numThreads)),
                ("shuffle_input_sentence", "false"),
            ]
            if !userDefinedSymbols.isEmpty {
                f.append(("user_defined_symbols", userDefinedSymbols.joined(separator: ",")))
            }
            for (k, v) in extra.sorted(by: { $0.key < $1.key }) {
                f.removeAll { $0.0 == k }
                f.append((k, v))
            }
            return f
        }
    }

    /// Trains a model on `corpus` and writes it to `url` (atomically: a temporary name, then rename).
    ///
    /// - Parameters:
    ///   - corpus: Training sentences (one per element; newlines inside are kept as text).
    ///   - vocabSize: Number of pieces, including UNK/BOS/EOS and, with byte fallback, 256 bytes.
    ///   - modelType: Algorithm (Llama: `.bpe`).
    ///   - options: Trainer options (default ``Options/llama``).
    ///   - url: Output file, usually `…/tokenizer.model`.
    /// - Throws: ``TokenizerError/trainingFailed(reason:)`` (empty corpus, bad option, vocabulary
    ///   too large for the corpus), ``TokenizerError/unwritableFile(path:reason:)``.
    public static func train(corpus: [String], vocabSize: Int, modelType: ModelType = .bpe,
                             options: Options = .llama, to url: URL) throws {
        let model = try trainedModel(corpus: corpus, vocabSize: vocabSize, modelType: modelType, options: options)
        let tmp = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            try model.write(to: tmp)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw TokenizerError.unwritableFile(path: url.path, reason: error.localizedDescription)
        }
        if rename(tmp.path, url.path) != 0 {
            let reason = String(validatingCString: strerror(errno)) ?? "rename failed"
            try? FileManager.default.removeItem(at: tmp)
            throw TokenizerError.unwritableFile(path: url.path, reason: reason)
        }
    }

    /// Trains on the lines of a UTF-8 text file (empty lines skipped) and writes the model to `url`.
    /// - Throws: as ``train(corpus:vocabSize:modelType:options:to:)``, plus file errors for `corpusFile`.
    public static func train(corpusFile: URL, vocabSize: Int, modelType: ModelType = .bpe,
                             options: Options = .llama, to url: URL) throws {
        let data = try readTokenizerFile(corpusFile)
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
            .map(String.init)
        try train(corpus: lines, vocabSize: vocabSize, modelType: modelType, options: options, to: url)
    }

    /// Trains and returns the serialized model (the bytes of a `tokenizer.model`).
    public static func trainedModel(corpus: [String], vocabSize: Int, modelType: ModelType = .bpe,
                                    options: Options = .llama) throws -> Data {
        let sentences = corpus.filter { !$0.isEmpty }
        guard !sentences.isEmpty else { throw TokenizerError.trainingFailed(reason: "the corpus is empty") }
        guard vocabSize > 0 else { throw TokenizerError.trainingFailed(reason: "vocabSize must be positive") }
        let flags = options.flags(vocabSize: vocabSize, modelType: modelType)

        // C strings that live for the whole call.
        let keys = flags.map { strdup($0.0) }
        let values = flags.map { strdup($0.1) }
        let texts = sentences.map { Array($0.utf8) }
        let cTexts: [UnsafeMutablePointer<CChar>?] = texts.map { bytes in
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
            bytes.withUnsafeBufferPointer { src in
                src.withMemoryRebound(to: CChar.self) { p.update(from: $0.baseAddress!, count: bytes.count) }
            }
            return p
        }
        defer {
            keys.forEach { free($0) }
            values.forEach { free($0) }
            cTexts.forEach { $0?.deallocate() }
        }
        let lengths = texts.map(\.count)
        var model: UnsafeMutablePointer<CChar>?
        var modelLen = 0
        var err = [CChar](repeating: 0, count: 1024)
        let status = keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
            values.map { UnsafePointer($0) }.withUnsafeBufferPointer { v in
                cTexts.map { UnsafePointer($0) }.withUnsafeBufferPointer { s in
                    lengths.withUnsafeBufferPointer { l in
                        tmf_sp_train(k.baseAddress, v.baseAddress, k.count, s.baseAddress, l.baseAddress, s.count,
                                     &model, &modelLen, &err, err.count)
                    }
                }
            }
        }
        defer { tmf_sp_free_buffer(model) }
        guard status == 0, let model, modelLen > 0 else {
            let reason = shimMessage(err)
            throw TokenizerError.trainingFailed(reason: reason.isEmpty ? "status \(status)" : reason)
        }
        return Data(bytes: model, count: modelLen)
    }
}
