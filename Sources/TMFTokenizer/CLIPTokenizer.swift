import Foundation

/// Ids and attention mask of one CLIP text, padded to the context length.
public struct CLIPEncoding: Sendable, Equatable {
    /// `contextLength` ids: `<|startoftext|>`, the text's tokens, `<|endoftext|>`, then pad ids.
    public var inputIDs: [Int]
    /// `contextLength` entries: 1 for real tokens (including start and end), 0 for padding.
    public var attentionMask: [Int]
    /// Index of the `<|endoftext|>` token (CLIP pools the text embedding there).
    public var endIndex: Int
}

/// CLIP's byte-level BPE tokenizer, read from a CLIP folder's `vocab.json` and `merges.txt`.
///
/// Matches `transformers.CLIPTokenizer` (5.x, backed by `tokenizers`; transformers 5 has no
/// separate slow CLIP tokenizer and never uses ftfy):
/// 1. `<|startoftext|>` / `<|endoftext|>` written in the text are cut out first and kept as ids;
/// 2. the rest is normalised: Unicode NFC, every run of white space to one space, lower case
///    (per-character full lower-case mapping);
/// 3. pre-tokenised with CLIP's pattern `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
///    [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` (white space dropped);
/// 4. each word's UTF-8 bytes mapped to GPT-2's printable byte alphabet, `</w>` appended to the
///    last symbol, and BPE merges applied lowest rank first (leftmost on ties);
/// 5. framed as `<|startoftext|> … <|endoftext|>` and truncated to ``contextLength`` (77),
///    keeping the end token; ``encodePadded(_:)`` pads with ``padID`` and returns the mask.
///
/// **Padding id**: the pad token is read from the folder's `tokenizer_config.json` or
/// `special_tokens_map.json` (`pad_token`) when present, else it is `<|endoftext|>` as in
/// transformers' default, so ``padID`` usually equals ``eosID``. Padded positions are always
/// masked out, and ``CLIPEncoding/endIndex`` gives the end token's position explicitly.
public final class CLIPTokenizer: Tokenizer {
    /// CLIP's text context length.
    public static let defaultContextLength = 77

    private let encoder: [String: Int]
    private let decoder: [Int: String]
    private let mergeRanks: [String: Int]  // "a b" -> rank
    private let byteEncoder: [String]  // byte -> printable symbol
    private let byteDecoder: [Unicode.Scalar: UInt8]

    /// Sequences are truncated to this many ids (start and end tokens included).
    public let contextLength: Int
    /// Id of `<|startoftext|>`.
    public let bosID: Int
    /// Id of `<|endoftext|>`.
    public let eosID: Int
    private let padTokenID: Int
    /// Id of the pad token, never `nil` for CLIP (see the type's documentation).
    public var padID: Int? { padTokenID }
    /// Id used for symbols missing from the vocabulary (`<|endoftext|>`, as in transformers).
    public let unkID: Int
    /// One more than the largest id in `vocab.json`.
    public let vocabularySize: Int

    /// Loads `vocab.json` and `merges.txt` (and the pad token from `tokenizer_config.json` or
    /// `special_tokens_map.json` if present) from a CLIP checkpoint folder.
    ///
    /// - Parameters:
    ///   - directory: The CLIP folder.
    ///   - padToken: Overrides the pad token found in the folder.
    ///   - contextLength: Maximum sequence length (default 77).
    /// - Throws: ``TokenizerError/fileNotFound(path:)``, ``TokenizerError/unreadableFile(path:reason:)``,
    ///   ``TokenizerError/malformedVocabulary(path:reason:)``,
    ///   ``TokenizerError/malformedMerges(path:line:reason:)``,
    ///   ``TokenizerError/missingSpecialToken(path:token:)``.
    public convenience init(directory: URL, padToken: String? = nil,
                            contextLength: Int = CLIPTokenizer.defaultContextLength) throws {
        let pad = try padToken ?? Self.configuredPadToken(directory) ?? "<|endoftext|>"
        try self.init(vocabURL: directory.appendingPathComponent("vocab.json"),
                      mergesURL: directory.appendingPathComponent("merges.txt"),
                      padToken: pad, contextLength: contextLength)
    }

    /// Loads a vocabulary and merges list.
    ///
    /// - Parameters:
    ///   - vocabURL: `vocab.json`: a JSON object from token to id.
    ///   - mergesURL: `merges.txt`: an optional `#version` line, then one merge `a b` per line.
    ///   - padToken: Pad token (default `<|endoftext|>`); must be in the vocabulary.
    ///   - contextLength: Maximum sequence length, at least 2 (default 77).
    /// - Throws: as ``init(directory:padToken:contextLength:)``.
    public init(vocabURL: URL, mergesURL: URL, padToken: String = "<|endoftext|>",
                contextLength: Int = CLIPTokenizer.defaultContextLength) throws {
        precondition(contextLength >= 2, "contextLength must leave room for the start and end tokens")
        let vocabData = try readTokenizerFile(vocabURL)
        let mergesData = try readTokenizerFile(mergesURL)

        let vocab: [String: Int]
        do {
            vocab = try JSONDecoder().decode([String: Int].self, from: vocabData)
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw TokenizerError.malformedVocabulary(
                path: vocabURL.path, reason: "not an object of token to integer id (\(context.debugDescription))")
        } catch {
            throw TokenizerError.malformedVocabulary(path: vocabURL.path, reason: "not valid JSON")
        }
        guard !vocab.isEmpty else {
            throw TokenizerError.malformedVocabulary(path: vocabURL.path, reason: "it is empty")
        }
        var decoder = [Int: String]()
        for (token, id) in vocab {
            guard id >= 0 else {
                throw TokenizerError.malformedVocabulary(path: vocabURL.path, reason: "token \"\(token)\" has negative id \(id)")
            }
            if let other = decoder[id] {
                throw TokenizerError.malformedVocabulary(
                    path: vocabURL.path, reason: "tokens \"\(other)\" and \"\(token)\" share id \(id)")
            }
            decoder[id] = token
        }
        for special in ["<|startoftext|>", "<|endoftext|>"] where vocab[special] == nil {
            throw TokenizerError.missingSpecialToken(path: vocabURL.path, token: special)
        }
        guard let pad = vocab[padToken] else {
            throw TokenizerError.missingSpecialToken(path: vocabURL.path, token: padToken)
        }

        guard let mergesText = String(data: mergesData, encoding: .utf8) else {
            throw TokenizerError.malformedMerges(path: mergesURL.path, line: 1, reason: "not UTF-8 text")
        }
        var ranks = [String: Int]()
        var lineNumber = 0
        for line in mergesText.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if line.isEmpty || (lineNumber == 1 && line.hasPrefix("#version")) { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw TokenizerError.malformedMerges(path: mergesURL.path, line: lineNumber,
                                                     reason: "expected two tokens separated by one space")
            }
            let (a, b) = (String(parts[0]), String(parts[1]))
            for part in [a, b, a + b] where vocab[part] == nil {
                throw TokenizerError.malformedMerges(path: mergesURL.path, line: lineNumber,
                                                     reason: "\"\(part)\" is not in \(vocabURL.lastPathComponent)")
            }
            let key = a + " " + b
            if ranks[key] == nil { ranks[key] = ranks.count }
        }

        let bytes = Self.bytesToUnicode()
        self.encoder = vocab
        self.decoder = decoder
        self.mergeRanks = ranks
        self.byteEncoder = bytes.map { String($0) }
        var byteDecoder = [Unicode.Scalar: UInt8]()
        for (b, c) in bytes.enumerated() { byteDecoder[c.unicodeScalars.first!] = UInt8(b) }
        self.byteDecoder = byteDecoder
        self.contextLength = contextLength
        bosID = vocab["<|startoftext|>"]!
        eosID = vocab["<|endoftext|>"]!
        unkID = eosID
        padTokenID = pad
        vocabularySize = (decoder.keys.max() ?? -1) + 1
    }

    /// `pad_token` from `tokenizer_config.json` or `special_tokens_map.json`, if either exists.
    private static func configuredPadToken(_ directory: URL) throws -> String? {
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            let data = try readTokenizerFile(url)
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.malformedVocabulary(path: url.path, reason: "not a JSON object")
            }
            if let pad = object["pad_token"] as? String { return pad }
            if let pad = object["pad_token"] as? [String: Any], let content = pad["content"] as? String { return content }
        }
        return nil
    }

    /// GPT-2's reversible map from the 256 byte values to printable characters.
    private static func bytesToUnicode() -> [Character] {
        var table = [Character](repeating: " ", count: 256)
        var n = 0
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Character(Unicode.Scalar(UInt8(b)))
            } else {
                table[b] = Character(Unicode.Scalar(UInt32(256 + n))!)
                n += 1
            }
        }
        return table
    }

    // MARK: Encoding

    /// Encodes text.
    ///
    /// - Parameters:
    ///   - text: Any text.
    ///   - addBOS: `true`: `<|startoftext|>` + tokens + `<|endoftext|>`, truncated to
    ///     ``contextLength`` keeping the end token (transformers' `tokenizer(text, truncation=True,
    ///     max_length=77)["input_ids"]`). `false`: the text's tokens only, no framing, no truncation.
    public func encode(_ text: String, addBOS: Bool) throws -> [Int] {
        let tokens = tokenIDs(text)
        guard addBOS else { return tokens }
        return [bosID] + tokens.prefix(contextLength - 2) + [eosID]
    }

    /// Encodes text framed and padded to ``contextLength`` (transformers' `tokenizer(text,
    /// padding="max_length", truncation=True, max_length=77)`).
    public func encodePadded(_ text: String) -> CLIPEncoding {
        let tokens = tokenIDs(text)
        var ids = [bosID] + tokens.prefix(contextLength - 2) + [eosID]
        let real = ids.count
        ids += [Int](repeating: padTokenID, count: contextLength - real)
        let mask = [Int](repeating: 1, count: real) + [Int](repeating: 0, count: contextLength - real)
        return CLIPEncoding(inputIDs: ids, attentionMask: mask, endIndex: real - 1)
    }

    /// The unframed token ids of `text`.
    private func tokenIDs(_ text: String) -> [Int] {
        var ids = [Int]()
        let specials: [(utf8: [UInt8], id: Int)] = [
            (Array("<|startoftext|>".utf8), bosID), (Array("<|endoftext|>".utf8), eosID),
        ]
        for segment in splitOnTokens(text, tokens: specials) {
            switch segment {
            case let .special(id): ids.append(id)
            case let .text(chunk, _):
                for word in Self.preTokenize(Self.normalize(chunk)) {
                    ids += bpe(word)
                }
            }
        }
        return ids
    }

    /// NFC, white-space runs to one space, per-scalar full lower-case mapping.
    static func normalize(_ text: String) -> [Unicode.Scalar] {
        let nfc = text.precomposedStringWithCanonicalMapping
        var out = [Unicode.Scalar]()
        out.reserveCapacity(nfc.unicodeScalars.count)
        var inSpace = false
        for s in nfc.unicodeScalars {
            if s.properties.isWhitespace {
                if !inSpace { out.append(" ") }
                inSpace = true
                continue
            }
            inSpace = false
            let lower = s.properties.lowercaseMapping
            if lower.unicodeScalars.count == 1 && lower.unicodeScalars.first == s {
                out.append(s)
            } else {
                out.append(contentsOf: lower.unicodeScalars)
            }
        }
        return out
    }

    private static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    private static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    private static let literalAlternatives: [[Unicode.Scalar]] = [
        "<|startoftext|>", "<|endoftext|>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
    ].map { Array($0.unicodeScalars) }

    /// CLIP's pattern, leftmost-first like the regex engines: literals, then letter runs, then one
    /// number, then runs of other non-space characters.
    static func preTokenize(_ s: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var words = [[Unicode.Scalar]]()
        var i = 0
        outer: while i < s.count {
            for lit in literalAlternatives where lit.count <= s.count - i {
                if s[i..<(i + lit.count)].elementsEqual(lit) {
                    words.append(lit)
                    i += lit.count
                    continue outer
                }
            }
            let c = s[i]
            if isLetter(c) {
                var j = i + 1
                while j < s.count && isLetter(s[j]) { j += 1 }
                words.append(Array(s[i..<j]))
                i = j
            } else if isNumber(c) {
                words.append([c])
                i += 1
            } else if !c.properties.isWhitespace {
                var j = i + 1
                while j < s.count && !s[j].properties.isWhitespace && !isLetter(s[j]) && !isNumber(s[j]) { j += 1 }
                words.append(Array(s[i..<j]))
                i = j
            } else {
                i += 1
            }
        }
        return words
    }

    /// Byte-level BPE of one pre-tokenised word, `</w>` on the last symbol.
    private func bpe(_ word: [Unicode.Scalar]) -> [Int] {
        var utf8 = [UInt8]()
        for s in word { utf8.append(contentsOf: String(s).utf8) }
        var symbols = utf8.map { byteEncoder[Int($0)] }
        guard !symbols.isEmpty else { return [] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var bestRank = Int.max
            var bestIndex = -1
            for k in 0..<(symbols.count - 1) {
                if let r = mergeRanks[symbols[k] + " " + symbols[k + 1]], r < bestRank {
                    bestRank = r
                    bestIndex = k
                }
            }
            if bestIndex < 0 { break }
            symbols[bestIndex] += symbols[bestIndex + 1]
            symbols.remove(at: bestIndex + 1)
        }
        return symbols.map { encoder[$0] ?? unkID }
    }

    // MARK: Decoding

    /// Decodes ids: tokens joined, `</w>` read as a space, bytes reassembled as UTF-8, trimmed.
    /// `skipSpecialTokens` drops start, end and pad tokens.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool) -> String {
        var bytes = [UInt8]()
        for id in ids {
            guard let token = decoder[id] else { continue }
            if id == bosID || id == eosID || id == padTokenID {
                if skipSpecialTokens { continue }
                bytes.append(contentsOf: token.utf8)
                continue
            }
            let endOfWord = token.hasSuffix("</w>")
            let body = endOfWord ? String(token.dropLast(4)) : token
            for scalar in body.unicodeScalars {
                if let b = byteDecoder[scalar] { bytes.append(b) } else { bytes.append(contentsOf: String(scalar).utf8) }
            }
            if endOfWord { bytes.append(0x20) }
        }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    /// The vocabulary entry of `id` in byte-level form (`caf\u{C3}\u{A9}</w>`), or `nil`.
    public func idToPiece(_ id: Int) -> String? { decoder[id] }

    /// The id of a vocabulary entry in byte-level form, or `nil`.
    public func pieceToId(_ piece: String) -> Int? { encoder[piece] }
}
