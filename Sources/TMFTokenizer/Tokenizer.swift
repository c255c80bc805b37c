import Foundation

/// A text tokenizer: text to token ids and back.
///
/// Conformers: ``SentencePieceTokenizer`` (Llama's `tokenizer.model`, with added special tokens
/// such as `[MT_i]` / `[MT_b]`) and ``CLIPTokenizer`` (CLIP's byte-level BPE from `vocab.json` +
/// `merges.txt`). All conformers are immutable after loading and safe to share across threads.
public protocol Tokenizer: Sendable {
    /// Encodes `text` into token ids.
    ///
    /// - Parameters:
    ///   - text: Any Unicode text; added special tokens written in it are recognised as single ids.
    ///   - addBOS: Whether to prepend the beginning-of-sequence id (``bosID``). Tokenizers whose
    ///     sequences are framed by start and end tokens (CLIP) add both and truncate.
    /// - Returns: The ids, each in `0..<vocabularySize`.
    /// - Throws: ``TokenizerError/encodingFailed(reason:)`` if the underlying library fails.
    func encode(_ text: String, addBOS: Bool) throws -> [Int]

    /// Decodes ids back into text.
    ///
    /// - Parameters:
    ///   - ids: Token ids; ids outside `0..<vocabularySize` are ignored.
    ///   - skipSpecialTokens: Drop control and added special tokens (BOS, EOS, `[MT_i]`, …) when
    ///     `true`; write their text when `false`.
    func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String

    /// The vocabulary entry (piece) of `id`, or `nil` if `id` is out of range.
    func idToPiece(_ id: Int) -> String?

    /// The id of the vocabulary entry `piece` (base or added), or `nil` if there is none.
    func pieceToId(_ piece: String) -> Int?

    /// Beginning-of-sequence id, read from the model.
    var bosID: Int { get }
    /// End-of-sequence id, read from the model.
    var eosID: Int { get }
    /// Padding id, if the model or its added tokens define one.
    var padID: Int? { get }
    /// Number of ids, including added tokens: valid ids are `0..<vocabularySize`.
    var vocabularySize: Int { get }
}

extension Tokenizer {
    /// Encodes text with the beginning-of-sequence id. Same as `encode(text, addBOS: true)`.
    public func encode(_ text: String) throws -> [Int] {
        try encode(text, addBOS: true)
    }

    /// Decodes ids, dropping special tokens. Same as `decode(ids, skipSpecialTokens: true)`.
    public func decode(_ ids: [Int]) -> String {
        decode(ids, skipSpecialTokens: true)
    }
}

/// Errors loading, using or training tokenizers. Each message names the file and says what to do.
public enum TokenizerError: Error, LocalizedError, Equatable, Sendable {
    /// A tokenizer file does not exist.
    case fileNotFound(path: String)
    /// A tokenizer file exists but cannot be read (permissions, a directory, I/O error).
    case unreadableFile(path: String, reason: String)
    /// `tokenizer.model` is not a SentencePiece model (truncated, wrong file, random bytes).
    case corruptModel(path: String, reason: String)
    /// `vocab.json` is not a JSON object of token to id, or is inconsistent.
    case malformedVocabulary(path: String, reason: String)
    /// A line of `merges.txt` is not two tokens of the vocabulary separated by one space.
    case malformedMerges(path: String, line: Int, reason: String)
    /// A token the tokenizer needs (BOS, EOS, a configured pad token) is missing.
    case missingSpecialToken(path: String, token: String)
    /// An added special token is empty or listed twice.
    case invalidSpecialToken(token: String, reason: String)
    /// The underlying library failed to encode text.
    case encodingFailed(reason: String)
    /// SentencePiece training failed (bad option, empty corpus, vocabulary too large for it).
    case trainingFailed(reason: String)
    /// A model file could not be written.
    case unwritableFile(path: String, reason: String)

    /// One line: what went wrong, where, and what to do.
    public var errorDescription: String? {
        switch self {
        case let .fileNotFound(path):
            return "tokenizer file \(path) not found; check the model folder (Llama needs tokenizer.model, CLIP needs vocab.json and merges.txt)"
        case let .unreadableFile(path, reason):
            return "cannot read tokenizer file \(path): \(reason); check that it is a readable file"
        case let .corruptModel(path, reason):
            return "\(path) is not a valid SentencePiece model (\(reason)); replace it with the checkpoint's original tokenizer.model"
        case let .malformedVocabulary(path, reason):
            return "\(path) is not a valid CLIP vocabulary (\(reason)); replace it with the checkpoint's original vocab.json"
        case let .malformedMerges(path, line, reason):
            return "\(path) line \(line) is not a valid BPE merge (\(reason)); replace it with the checkpoint's original merges.txt"
        case let .missingSpecialToken(path, token):
            return "the tokenizer in \(path) has no \(token) token; use the checkpoint's original tokenizer files"
        case let .invalidSpecialToken(token, reason):
            return "cannot add special token \"\(token)\": \(reason)"
        case let .encodingFailed(reason):
            return "tokenizer failed to encode text: \(reason)"
        case let .trainingFailed(reason):
            return "SentencePiece training failed: \(reason); check the corpus and the options"
        case let .unwritableFile(path, reason):
            return "cannot write \(path): \(reason); check that the folder exists and is writable"
        }
    }
}

/// Reads a whole file, mapping failures to ``TokenizerError``.
func readTokenizerFile(_ url: URL) throws -> Data {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
        throw TokenizerError.fileNotFound(path: url.path)
    }
    if isDirectory.boolValue {
        throw TokenizerError.unreadableFile(path: url.path, reason: "it is a directory")
    }
    do {
        return try Data(contentsOf: url)
    } catch {
        throw TokenizerError.unreadableFile(path: url.path, reason: error.localizedDescription)
    }
}

/// The NUL-terminated message the shim wrote into `buffer`.
func shimMessage(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// A piece of text between special tokens, or a special token's id.
enum TextSegment {
    /// Text; `atStart` when it begins at the start of the whole input.
    case text(String, atStart: Bool)
    case special(Int)
}

/// Added tokens indexed by their first byte: per first byte, the token lengths present (longest
/// first) and a table from bytes to id, so a position costs one look-up per distinct length
/// whatever the number of tokens (`splitOnTokens`).
struct AddedTokenIndex {
    private(set) var lengths: [[Int]] = Array(repeating: [], count: 256)
    private(set) var ids: [[[UInt8]: Int]] = Array(repeating: [:], count: 256)
    private(set) var isEmpty = true

    /// - Parameter tokens: (UTF-8 bytes, id); empty tokens are ignored; of equal byte strings the
    ///   smaller id wins.
    init(_ tokens: [(utf8: [UInt8], id: Int)]) {
        for t in tokens where !t.utf8.isEmpty {
            let b = Int(t.utf8[0])
            if let old = ids[b][t.utf8], old < t.id { continue }
            ids[b][t.utf8] = t.id
            isEmpty = false
        }
        for b in 0..<256 { lengths[b] = Set(ids[b].keys.map(\.count)).sorted(by: >) }
    }

    /// The id and length of the longest token starting at `i`.
    func match(_ bytes: [UInt8], at i: Int) -> (id: Int, length: Int)? {
        let b = Int(bytes[i])
        for n in lengths[b] where n <= bytes.count - i {
            if let id = ids[b][Array(bytes[i..<(i + n)])] { return (id, n) }
        }
        return nil
    }
}

/// Cuts `text` at occurrences of `tokens`: at each position the longest token that matches
/// wins (ties: the smaller id), like transformers' trie and tokenizers' added vocabulary.
/// Matching bytes cannot split a character: a token starts with a UTF-8 lead byte.
func splitOnTokens(_ text: String, tokens: [(utf8: [UInt8], id: Int)]) -> [TextSegment] {
    splitOnTokens(text, index: AddedTokenIndex(tokens))
}

/// `splitOnTokens(_:tokens:)` with a prebuilt index (thousands of added tokens stay fast).
func splitOnTokens(_ text: String, index: AddedTokenIndex) -> [TextSegment] {
    let bytes = Array(text.utf8)
    var segments = [TextSegment]()
    var start = 0
    var i = 0
    func flush(_ end: Int) {
        if end > start {
            segments.append(.text(String(decoding: bytes[start..<end], as: UTF8.self), atStart: start == 0))
        }
    }
    while i < bytes.count {
        if let (id, n) = index.match(bytes, at: i) {
            flush(i)
            segments.append(.special(id))
            i += n
            start = i
        } else {
            i += 1
        }
    }
    flush(bytes.count)
    return segments
}
