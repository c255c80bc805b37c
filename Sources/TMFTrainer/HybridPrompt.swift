import Foundation
import TMFData
import TMFTokenizer

/// Errors turning prompts into token sequences.
public enum TrainerError: Error, LocalizedError, Equatable {
    /// The tokenizer does not know the modality tokens.
    case missingSpecialToken(String)
    /// The tokenizer split the prompt's modality tokens differently from the prompt builder.
    case modalityTokenMismatch(expected: Int, found: Int)
    /// A configuration value is out of range.
    case invalidParameter(String)
    /// The loss became NaN or infinite.
    case nonFiniteLoss(step: Int, loss: Float)
    /// A model folder is missing a file or is inconsistent.
    case badModelFolder(path: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .missingSpecialToken(t):
            return "the tokenizer has no special token \(t); load it with SentencePieceTokenizer.tmfSpecialTokens"
        case let .modalityTokenMismatch(expected, found):
            return "prompt has \(expected) modality tokens but its tokens hold \(found); an item title or behavior phrase contains a special token"
        case let .invalidParameter(why):
            return why
        case let .nonFiniteLoss(step, loss):
            return "training stopped at step \(step): the loss is \(loss); lower --lr or check the data (the last good checkpoint is kept)"
        case let .badModelFolder(path, reason):
            return "model folder \(path): \(reason)"
        }
    }
}

/// A prompt as token ids, with the places of its modality tokens and the loss labels.
public struct EncodedPrompt: Sendable, Equatable {
    /// BOS, the prompt's tokens, then (when encoded with its answer) the answer's tokens and EOS.
    public var tokens: [Int]
    /// Next-token targets aligned with `tokens` (label i is the target of position i's
    /// prediction, i.e. `tokens[i + 1]`), −100 where no loss is taken (the prompt).
    public var labels: [Int]
    /// Number of prompt tokens (BOS included); generation starts after them.
    public var promptLength: Int
    /// Token positions of `[MT_i]` tokens and the item each stands for.
    public var itemSlots: [(position: Int, item: Int)]
    /// Token positions of `[MT_b]` tokens and the behavior each stands for.
    public var behaviorSlots: [(position: Int, behavior: Int)]

    public static func == (a: EncodedPrompt, b: EncodedPrompt) -> Bool {
        a.tokens == b.tokens && a.labels == b.labels && a.promptLength == b.promptLength
            && a.itemSlots.map(\.position) == b.itemSlots.map(\.position) && a.itemSlots.map(\.item) == b.itemSlots.map(\.item)
            && a.behaviorSlots.map(\.position) == b.behaviorSlots.map(\.position)
            && a.behaviorSlots.map(\.behavior) == b.behaviorSlots.map(\.behavior)
    }
}

/// Turns `TMFData` prompts into token sequences for the LLM (paper §4.2): the text through the
/// SentencePiece tokenizer, each `[MT_i]` / `[MT_b]` as its one special token, recording where
/// each sits so the trainer can replace those embedding rows with adaptor outputs.
public struct HybridPromptEncoder: Sendable {
    public let tokenizer: SentencePieceTokenizer
    public let itemTokenID: Int
    public let behaviorTokenID: Int

    /// - Throws: `TrainerError.missingSpecialToken` when the tokenizer lacks `[MT_i]` or `[MT_b]`.
    public init(tokenizer: SentencePieceTokenizer) throws {
        guard let i = tokenizer.specialTokenID(PromptBuilder.itemPlaceholder) else {
            throw TrainerError.missingSpecialToken(PromptBuilder.itemPlaceholder)
        }
        guard let b = tokenizer.specialTokenID(PromptBuilder.behaviorPlaceholder) else {
            throw TrainerError.missingSpecialToken(PromptBuilder.behaviorPlaceholder)
        }
        self.tokenizer = tokenizer
        itemTokenID = i
        behaviorTokenID = b
    }

    /// Encodes `prompt`; with `withAnswer`, appends the answer's tokens and EOS and sets labels
    /// on them (the loss of Eq. 9-11 is on the answer tokens only).
    public func encode(_ prompt: Prompt, withAnswer: Bool) throws -> EncodedPrompt {
        let promptTokens = try tokenizer.encode(prompt.text, addBOS: true)
        var items: [(Int, Int)] = [], behaviors: [(Int, Int)] = []
        let expectedItems = prompt.modalityTokens.filter { $0.kind == .item }.map(\.index)
        let expectedBehaviors = prompt.modalityTokens.filter { $0.kind == .behavior }.map(\.index)
        for (pos, id) in promptTokens.enumerated() {
            if id == itemTokenID {
                guard items.count < expectedItems.count else {
                    throw TrainerError.modalityTokenMismatch(expected: prompt.modalityTokens.count, found: items.count + behaviors.count + 1)
                }
                items.append((pos, expectedItems[items.count]))
            } else if id == behaviorTokenID {
                guard behaviors.count < expectedBehaviors.count else {
                    throw TrainerError.modalityTokenMismatch(expected: prompt.modalityTokens.count, found: items.count + behaviors.count + 1)
                }
                behaviors.append((pos, expectedBehaviors[behaviors.count]))
            }
        }
        guard items.count == expectedItems.count, behaviors.count == expectedBehaviors.count else {
            throw TrainerError.modalityTokenMismatch(expected: prompt.modalityTokens.count, found: items.count + behaviors.count)
        }
        var tokens = promptTokens
        var labels = [Int](repeating: -100, count: promptTokens.count)
        if withAnswer {
            let answer = try tokenizer.encode(prompt.answer, addBOS: false) + [tokenizer.eosID]
            // Position i predicts token i + 1: the last prompt position predicts the first answer token.
            labels[promptTokens.count - 1] = answer[0]
            tokens += answer
            labels += Array(answer.dropFirst()) + [-100]
        }
        return EncodedPrompt(tokens: tokens, labels: labels, promptLength: promptTokens.count,
                             itemSlots: items.map { (position: $0.0, item: $0.1) },
                             behaviorSlots: behaviors.map { (position: $0.0, behavior: $0.1) })
    }
}
