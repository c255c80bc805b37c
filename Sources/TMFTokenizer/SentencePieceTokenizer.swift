import CSentencePiece
import Foundation

/// Owns one `sentencepiece::SentencePieceProcessor` behind the C shim; frees it in `deinit`.
/// The processor's const methods (encode, decode, lookups) are thread-safe.
final class SentencePieceProcessor: @unchecked Sendable {
    let handle: OpaquePointer

    /// Parses a serialized model. Throws ``TokenizerError/corruptModel(path:reason:)``.
    init(bytes: Data, path: String) throws {
        var err = [CChar](repeating: 0, count: 512)
        var out: OpaquePointer?
        let status = bytes.withUnsafeBytes { raw in
            tmf_sp_load_from_bytes(raw.baseAddress, raw.count, &out, &err, err.count)
        }
        guard status == 0, let out else {
            let reason = shimMessage(err)
            throw TokenizerError.corruptModel(path: path, reason: reason.isEmpty ? "status \(status)" : reason)
        }
        handle = out
    }

    deinit { tmf_sp_free(handle) }

    var pieceSize: Int { Int(tmf_sp_piece_size(handle)) }

    func encode(_ text: String) throws -> [Int] {
        var text = text
        return try text.withUTF8 { utf8 -> [Int] in
            var ids: UnsafeMutablePointer<Int32>?
            var count = 0
            var err = [CChar](repeating: 0, count: 512)
            let status = utf8.withMemoryRebound(to: CChar.self) { chars in
                tmf_sp_encode(handle, chars.baseAddress, chars.count, &ids, &count, &err, err.count)
            }
            defer { tmf_sp_free_buffer(ids) }
            guard status == 0 else { throw TokenizerError.encodingFailed(reason: shimMessage(err)) }
            guard let ids, count > 0 else { return [] }
            return UnsafeBufferPointer(start: ids, count: count).map { Int($0) }
        }
    }

    /// Decodes ids that are all in `0..<pieceSize`; returns "" if the library fails.
    func decode(_ ids: [Int]) -> String {
        if ids.isEmpty { return "" }
        let ids32 = ids.map { Int32(truncatingIfNeeded: $0) }
        var text: UnsafeMutablePointer<CChar>?
        var len = 0
        var err = [CChar](repeating: 0, count: 256)
        let status = ids32.withUnsafeBufferPointer { buf in
            tmf_sp_decode(handle, buf.baseAddress, buf.count, &text, &len, &err, err.count)
        }
        defer { tmf_sp_free_buffer(text) }
        guard status == 0, let text, len > 0 else { return "" }
        let bytes = UnsafeRawBufferPointer(start: text, count: len)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Llama's SentencePiece tokenizer (`tokenizer.model`), with added special tokens.
///
/// Plain text encodes exactly as Python `sentencepiece.SentencePieceProcessor.encode(text)`
/// (the model's own normalizer, `add_dummy_prefix`, byte fallback), through Debian's
/// libsentencepiece. BOS/EOS/UNK/PAD ids are read from the model (Llama: BOS 1, EOS 2, UNK 0).
///
/// **Added special tokens** (e.g. `[MT_i]`, `[MT_b]`, `[PAD]`) get ids after the base
/// vocabulary, in the order given: `baseVocabularySize`, `baseVocabularySize + 1`, …
/// (a token already in the base vocabulary keeps its id). They are recognised anywhere in the
/// text (longest match first) and never split: the text is cut at them, the pieces between are
/// encoded and the token ids spliced in. How the pieces between are encoded follows transformers
/// (see ``SpecialTokenSpacing``); the default, `.legacy`, equals the sentencepiece-based
/// tokenizer in transformers (`legacy=True`) and Llama-2's own `tokenizer.json`.
///
/// **Added tokens** (`addedTokens`, transformers' `tokenizer.add_tokens`, kept in a folder's
/// `added_tokens.json`) are ordinary vocabulary entries that sentencepiece does not know, e.g.
/// every item title of a dataset as one token: matched and cut out like special tokens, with ids
/// right after the base vocabulary (special tokens follow them), but decoded as their text even
/// when special tokens are skipped.
public final class SentencePieceTokenizer: Tokenizer {
    /// How text around added special tokens is encoded (the classic spacing subtlety).
    public enum SpecialTokenSpacing: Sendable, Equatable {
        /// Every text piece between special tokens is encoded on its own, as sentencepiece does
        /// for a whole text, so each gets the dummy-prefix `▁`: `"a [MT_i] b"` is
        /// `▁ a ▁ [MT_i] ▁ ▁b`. Equals transformers' sentencepiece-based tokenizer with
        /// `legacy=True` (its default) and Llama-2's shipped `tokenizer.json`. Text without
        /// special tokens encodes exactly as sentencepiece.
        case legacy
        /// Only the first text piece gets the dummy prefix (and only if it does not start with a
        /// space); later pieces are encoded as they are: `"a [MT_i] b"` is `▁ a ▁ [MT_i] ▁b`.
        /// Equals transformers 5's `LlamaTokenizer` built from `tokenizer.model` (`legacy=False`,
        /// its default). Note that a text starting with a space then differs from sentencepiece.
        /// Assumes a model whose normalizer keeps `▁` as is (Llama's `identity`).
        case nonLegacy
    }

    /// tmf's added tokens, in id order: `[MT_i]` (item modality token), `[MT_b]` (behavior
    /// modality token), `[PAD]` (padding). For Llama-2 (32000 pieces) they get ids 32000, 32001,
    /// 32002. Pass them (plus any others) as `specialTokens`.
    public static let tmfSpecialTokens = ["[MT_i]", "[MT_b]", "[PAD]"]

    private let processor: SentencePieceProcessor
    /// The same model with `add_dummy_prefix` off; only for `.nonLegacy`.
    private let noPrefixProcessor: SentencePieceProcessor?
    private let pieces: [String]
    private let pieceFlags: [Int32]
    private let addedIndex: AddedTokenIndex  // added and special tokens, for splitOnTokens
    private let addedByID: [Int: String]
    private let addedByContent: [String: Int]

    /// The model file this tokenizer was loaded from.
    public let modelURL: URL
    /// Spacing rule around added special tokens.
    public let spacing: SpecialTokenSpacing
    /// Number of pieces in `tokenizer.model` (ids `0..<baseVocabularySize`).
    public let baseVocabularySize: Int
    /// Added (non-special) tokens, in id order from `baseVocabularySize`.
    public let addedTokens: [String]
    /// Added special tokens in the order given.
    public let specialTokens: [String]
    /// Base pieces plus added tokens plus newly added special tokens.
    public let vocabularySize: Int
    /// The model's BOS id (Llama: 1).
    public let bosID: Int
    /// The model's EOS id (Llama: 2).
    public let eosID: Int
    /// The model's pad id if it defines one (Llama does not), else the id of an added `[PAD]`
    /// token if present, else `nil`.
    public let padID: Int?
    /// The model's unknown-piece id (Llama: 0).
    public let unkID: Int

    /// Loads a SentencePiece model.
    ///
    /// - Parameters:
    ///   - modelURL: A `tokenizer.model` file.
    ///   - specialTokens: Added special tokens, ids assigned in order after the base vocabulary.
    ///   - spacing: Spacing rule around special tokens (default `.legacy`).
    /// - Throws: ``TokenizerError/fileNotFound(path:)``, ``TokenizerError/unreadableFile(path:reason:)``,
    ///   ``TokenizerError/corruptModel(path:reason:)``, ``TokenizerError/missingSpecialToken(path:token:)``
    ///   (a model without BOS or EOS), ``TokenizerError/invalidSpecialToken(token:reason:)``.
    public convenience init(modelURL: URL, addedTokens: [String] = [], specialTokens: [String] = [],
                            spacing: SpecialTokenSpacing = .legacy) throws {
        try self.init(modelData: readTokenizerFile(modelURL), modelURL: modelURL, addedTokens: addedTokens,
                      specialTokens: specialTokens, spacing: spacing)
    }

    /// Loads a model from the bytes of a `tokenizer.model`; `modelURL` names it in errors.
    init(modelData bytes: Data, modelURL: URL, addedTokens: [String] = [], specialTokens: [String],
         spacing: SpecialTokenSpacing) throws {
        if bytes.isEmpty {
            throw TokenizerError.corruptModel(path: modelURL.path, reason: "the file is empty")
        }
        let processor = try SentencePieceProcessor(bytes: bytes, path: modelURL.path)
        self.processor = processor
        self.modelURL = modelURL
        self.spacing = spacing
        if spacing == .nonLegacy {
            // Appending a second `normalizer_spec` (field 3) holding `add_dummy_prefix = false`
            // (field 3) to the serialized ModelProto: protobuf merges repeated message fields.
            var patched = bytes
            patched.append(contentsOf: [0x1A, 0x02, 0x18, 0x00])
            noPrefixProcessor = try SentencePieceProcessor(bytes: patched, path: modelURL.path)
        } else {
            noPrefixProcessor = nil
        }

        let n = processor.pieceSize
        var pieces = [String]()
        var flags = [Int32]()
        pieces.reserveCapacity(n)
        flags.reserveCapacity(n)
        for id in 0..<n {
            var len = 0
            if let p = tmf_sp_id_to_piece(processor.handle, Int32(id), &len) {
                pieces.append(String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self))
            } else {
                pieces.append("")
            }
            flags.append(tmf_sp_piece_flags(processor.handle, Int32(id)))
        }
        self.pieces = pieces
        self.pieceFlags = flags
        baseVocabularySize = n

        let bos = Int(tmf_sp_bos_id(processor.handle))
        let eos = Int(tmf_sp_eos_id(processor.handle))
        guard bos >= 0, bos < n else { throw TokenizerError.missingSpecialToken(path: modelURL.path, token: "BOS") }
        guard eos >= 0, eos < n else { throw TokenizerError.missingSpecialToken(path: modelURL.path, token: "EOS") }
        bosID = bos
        eosID = eos
        unkID = Int(tmf_sp_unk_id(processor.handle))

        var byContent = [String: Int]()
        var byID = [Int: String]()
        var next = n
        for token in addedTokens {
            guard !token.isEmpty else { throw TokenizerError.invalidSpecialToken(token: token, reason: "an added token is empty") }
            guard byContent[token] == nil else {
                throw TokenizerError.invalidSpecialToken(token: token, reason: "it is added twice")
            }
            byContent[token] = next
            byID[next] = token
            next += 1
        }
        self.addedTokens = addedTokens
        for token in specialTokens {
            guard !token.isEmpty else {
                throw TokenizerError.invalidSpecialToken(token: token, reason: "it is empty")
            }
            guard byContent[token] == nil else {
                throw TokenizerError.invalidSpecialToken(token: token, reason: "it is listed twice")
            }
            let base = Self.basePieceID(token, processor: processor, pieces: pieces)
            let id = base ?? next
            if base == nil { next += 1 }
            byContent[token] = id
            byID[id] = token
        }
        self.specialTokens = specialTokens
        addedByContent = byContent
        addedByID = byID
        addedIndex = AddedTokenIndex(byContent.map { (Array($0.key.utf8), $0.value) })
        vocabularySize = next

        let pad = Int(tmf_sp_pad_id(processor.handle))
        padID = (pad >= 0 && pad < n) ? pad : byContent["[PAD]"]
    }

    /// Loads `tokenizer.model` from a Llama checkpoint folder, with the added tokens of its
    /// `added_tokens.json` when it has one. See ``init(modelURL:addedTokens:specialTokens:spacing:)``.
    /// - Throws: also ``TokenizerError/corruptModel(path:reason:)`` for an `added_tokens.json`
    ///   that is not a JSON object of token → id with ids right after the base vocabulary.
    public convenience init(directory: URL, specialTokens: [String] = [], spacing: SpecialTokenSpacing = .legacy) throws {
        let modelURL = directory.appendingPathComponent("tokenizer.model")
        let addedURL = directory.appendingPathComponent(Self.addedTokensFile)
        var ids: [String: Int] = [:]
        if FileManager.default.fileExists(atPath: addedURL.path) {
            let data = try readTokenizerFile(addedURL)
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let parsed = object as? [String: Int] else {
                throw TokenizerError.corruptModel(path: addedURL.path, reason: "it is not a JSON object of token to integer id")
            }
            ids = parsed
        }
        let added = ids.sorted { $0.value < $1.value }.map(\.key)
        try self.init(modelURL: modelURL, addedTokens: added, specialTokens: specialTokens, spacing: spacing)
        for (k, token) in added.enumerated() where ids[token] != baseVocabularySize + k {
            throw TokenizerError.corruptModel(path: addedURL.path,
                                              reason: "added token ids must run from \(baseVocabularySize) (the model's piece count) without gaps; '\(token)' has \(ids[token]!)")
        }
    }

    /// The file of a Llama folder that lists added tokens (transformers' name).
    public static let addedTokensFile = "added_tokens.json"

    /// `added_tokens.json`'s bytes for this tokenizer's added tokens (sorted keys), or nil when
    /// it has none.
    public func addedTokensJSON() throws -> Data? {
        guard !addedTokens.isEmpty else { return nil }
        let ids = Dictionary(uniqueKeysWithValues: addedTokens.enumerated().map { ($1, baseVocabularySize + $0) })
        return try JSONSerialization.data(withJSONObject: ids, options: [.sortedKeys, .withoutEscapingSlashes])
    }

    private static func basePieceID(_ piece: String, processor: SentencePieceProcessor, pieces: [String]) -> Int? {
        var piece = piece
        let id = piece.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { Int(tmf_sp_piece_to_id(processor.handle, $0.baseAddress, $0.count)) }
        }
        return (id >= 0 && id < pieces.count && pieces[id] == piece) ? id : nil
    }

    /// The id of an added special token, or `nil` if it was not added.
    public func specialTokenID(_ token: String) -> Int? { addedByContent[token] }

    /// Encodes text; see the type's documentation for added special tokens.
    ///
    /// - Parameters:
    ///   - text: Any text; `[MT_i]` etc. are single ids when added.
    ///   - addBOS: Prepend ``bosID`` (Llama prompts start with it).
    /// - Throws: ``TokenizerError/encodingFailed(reason:)`` if libsentencepiece fails.
    public func encode(_ text: String, addBOS: Bool) throws -> [Int] {
        var ids = addBOS ? [bosID] : []
        for (index, segment) in split(text).enumerated() {
            switch segment {
            case let .special(id):
                ids.append(id)
            case let .text(chunk, atStart):
                ids += try encodeChunk(chunk, first: index == 0 && atStart)
            }
        }
        return ids
    }

    private func encodeChunk(_ chunk: String, first: Bool) throws -> [Int] {
        guard let noPrefix = noPrefixProcessor else { return try processor.encode(chunk) }
        // transformers' Metaspace(prepend_scheme: "first"): a dummy `▁` only at the very start,
        // and not when the text already starts with a space.
        if first && !(chunk.hasPrefix(" ") || chunk.hasPrefix("\u{2581}")) {
            return try processor.encode(chunk)
        }
        return try noPrefix.encode(chunk)
    }

    /// Cuts text at added special tokens (leftmost, then longest match).
    private func split(_ text: String) -> [TextSegment] {
        if addedIndex.isEmpty { return text.isEmpty ? [] : [.text(text, atStart: true)] }
        return splitOnTokens(text, index: addedIndex)
    }

    /// Decodes ids.
    ///
    /// Runs of base ids are decoded by libsentencepiece (byte pieces reassembled, the dummy-prefix
    /// space of each run removed, so `decode(encode(x, addBOS: false))` returns `x` in `.legacy`
    /// spacing). Added tokens and control pieces (`<s>`, `</s>`) are dropped when
    /// `skipSpecialTokens`, else written as their text. Out-of-range ids are ignored.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var out = ""
        var run = [Int]()
        var runIsFirst = true
        func flush() {
            guard !run.isEmpty else { return }
            var text = processor.decode(run)
            if spacing == .nonLegacy && !runIsFirst && pieces[run[0]].hasPrefix("\u{2581}") {
                text = " " + text  // this piece carried a real space, not a dummy prefix
            }
            out += text
            run.removeAll()
            runIsFirst = false
        }
        for id in ids {
            if id >= 0 && id < baseVocabularySize {
                if pieceFlags[id] & 2 != 0 {  // control piece: <s>, </s>, <pad>
                    if !skipSpecialTokens {
                        flush()
                        out += pieces[id]
                    }
                } else {
                    run.append(id)
                }
            } else if let token = addedByID[id] {
                flush()
                runIsFirst = false
                if !skipSpecialTokens || id < baseVocabularySize + addedTokens.count { out += token }
            }
        }
        flush()
        return out
    }

    /// The piece of a base id (`▁the`, `<0x0A>`, `<s>`) or an added token's text; `nil` if out of range.
    public func idToPiece(_ id: Int) -> String? {
        if id >= 0 && id < baseVocabularySize { return pieces[id] }
        return addedByID[id]
    }

    /// The id of an added token or base piece; `nil` if neither (never the unknown id by accident).
    public func pieceToId(_ piece: String) -> Int? {
        if let id = addedByContent[piece] { return id }
        return Self.basePieceID(piece, processor: processor, pieces: pieces)
    }

    /// Whether `id` is a byte-fallback piece (`<0x0A>` etc.).
    public func isByte(_ id: Int) -> Bool {
        id >= 0 && id < baseVocabularySize && pieceFlags[id] & 8 != 0
    }

    /// Whether `id` is a control piece of the model (`<s>`, `</s>`) or an added special token.
    public func isSpecial(_ id: Int) -> Bool {
        if id >= 0 && id < baseVocabularySize { return pieceFlags[id] & 2 != 0 }
        if id < baseVocabularySize + addedTokens.count { return false }
        return addedByID[id] != nil
    }
}
