import Foundation
import TMFTensor

/// The curriculum's task levels (paper §4.3, Figure 3).
public enum PromptLevel: String, Sendable, CaseIterable, Codable {
    /// Text only.
    case easy
    /// Text + a behavior token `[MT_b]` after every behavior phrase (history and question).
    case medium
    /// Medium + an item token `[MT_i]` after every item title (history and candidates).
    case hard
}

/// A piece of a prompt: plain text, or a modality token whose embedding row is replaced by an
/// adaptor output.
public enum PromptSegment: Sendable, Equatable {
    case text(String)
    /// Stands for behavior `behavior` (index into `Dataset.behaviors`).
    case behaviorToken(behavior: Int)
    /// Stands for item `item` (index into `Dataset.items`).
    case itemToken(item: Int)
}

/// Where a modality token sits in a prompt and what it stands for.
public struct ModalityToken: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case behavior, item }
    public var kind: Kind
    /// Behavior index (kind `.behavior`) or item index (kind `.item`).
    public var index: Int
    /// Index of the token's segment in `Prompt.segments`.
    public var segment: Int
    /// UTF-8 byte range of the placeholder (`[MT_b]` / `[MT_i]`) in `Prompt.text`.
    public var utf8Range: Range<Int>
}

/// A built prompt.
///
/// A tokenizer-level caller tokenizes `segments` in order: each `.text` with the tokenizer, each
/// token segment as one special token id, so token positions follow directly. `text` is the
/// same prompt flattened, with `PromptBuilder.behaviorPlaceholder` / `itemPlaceholder` in the token
/// places (`modalityTokens` gives their byte ranges). Every token placeholder is preceded by a
/// space that ends the text segment before it.
public struct Prompt: Sendable, Equatable {
    public var level: PromptLevel
    /// Template number, `0 ..< PromptBuilder.templateCount`.
    public var template: Int
    public var segments: [PromptSegment]
    /// The flattened prompt; ends with "The answer is" (no trailing space).
    public var text: String
    /// Every modality token, in order of appearance.
    public var modalityTokens: [ModalityToken]
    /// The answer: the ground-truth item's title ("" when unknown, e.g. when serving).
    public var answer: String
    /// `text + " " + answer` (or just `text` without an answer): the training sequence.
    public var fullText: String
    /// UTF-8 byte range of `answer` in `fullText` (the loss is taken on these tokens; the space
    /// before it belongs to the first answer token with SentencePiece tokenizers).
    public var answerRange: Range<Int>
    /// The candidate items (indices into `Dataset.items`) in prompt order.
    public var candidates: [Int]
}

/// Builds the hybrid prompts of paper §4.2 / Figure 3 at the three task levels, from three
/// templates (drawn at random in training; eval uses `evalTemplate`).
public struct PromptBuilder: Sendable {
    /// Placeholder for a behavior token in `Prompt.text`.
    public static let behaviorPlaceholder = "[MT_b]"
    /// Placeholder for an item token in `Prompt.text`.
    public static let itemPlaceholder = "[MT_i]"
    /// Number of templates per level.
    public static let templateCount = 3
    /// The template evaluation uses.
    public static let evalTemplate = 0

    /// Item titles by item index.
    public let titles: [String]
    public let behaviors: [Behavior]

    /// A builder for the items and behaviors of `dataset`.
    public init(dataset: Dataset) {
        self.init(titles: dataset.items.map(\.title), behaviors: dataset.behaviors)
    }

    public init(titles: [String], behaviors: [Behavior]) {
        self.titles = titles
        self.behaviors = behaviors
    }

    /// A uniformly drawn template number, for training.
    public static func randomTemplate(using rng: inout SeededRNG) -> Int {
        rng.nextInt(below: templateCount)
    }

    /// The prompt of a dataset example: its history (last `historyLength` events), the target
    /// behavior named in the question, the candidate list, and the ground truth as the answer.
    public func prompt(for example: Example, in dataset: Dataset, candidates: [Int], level: PromptLevel,
                       template: Int = PromptBuilder.evalTemplate, historyLength: Int = 20) -> Prompt {
        build(history: dataset.history(of: example, maxLength: historyLength), target: dataset.target,
              candidates: candidates, answer: example.target, level: level, template: template)
    }

    /// Builds a prompt.
    /// - Parameters:
    ///   - history: (behavior, item) steps, oldest first; must not be empty.
    ///   - target: the behavior to predict (index into `behaviors`).
    ///   - candidates: item indices in the order they are listed.
    ///   - answer: the ground-truth item, or nil when serving.
    ///   - template: `0 ..< templateCount`.
    public func build(history: [HistoryEvent], target: Int, candidates: [Int], answer: Int?,
                      level: PromptLevel, template: Int) -> Prompt {
        precondition((0..<PromptBuilder.templateCount).contains(template), "template out of range")
        var w = SegmentWriter(level: level)
        let targetBehavior = behaviors[target]

        func writeHistory() {
            for (k, step) in history.enumerated() {
                if k > 0 { w.text(", ") }
                w.text(behaviors[step.behavior].phrase)
                w.behavior(step.behavior)
                w.text(" " + titles[step.item])
                w.item(step.item)
            }
        }
        func writeCandidates() {
            for (k, item) in candidates.enumerated() {
                if k > 0 { w.text(", ") }
                w.text(titles[item])
                w.item(item)
            }
        }

        switch template {
        case 0:  // The paper's Figure 3.
            w.text("The user ")
            writeHistory()
            w.text(", what's next to " + targetBehavior.name)
            w.behavior(target)
            w.text("? The candidate items are ")
            writeCandidates()
            w.text(". Choose only one item from the candidates. The answer is")
        case 1:
            w.text("A shopper's recent activity, oldest first: the user ")
            writeHistory()
            w.text(". Candidates: ")
            writeCandidates()
            w.text(". Name the next item the user " + targetBehavior.phrase)
            w.behavior(target)
            w.text(", choosing exactly one candidate. The answer is")
        default:
            w.text("Given that the user ")
            writeHistory()
            w.text(", predict which item the user " + targetBehavior.phrase)
            w.behavior(target)
            w.text(" next. Pick one of these candidates: ")
            writeCandidates()
            w.text(". The answer is")
        }

        w.flushText()
        let text = w.flat
        let answerTitle = answer.map { titles[$0] } ?? ""
        let full = answer == nil ? text : text + " " + answerTitle
        let start = answer == nil ? text.utf8.count : text.utf8.count + 1
        return Prompt(level: level, template: template, segments: w.segments, text: text,
                      modalityTokens: w.tokens, answer: answerTitle, fullText: full,
                      answerRange: start..<(start + answerTitle.utf8.count), candidates: candidates)
    }
}

/// Accumulates segments, merging adjacent text and skipping tokens the level leaves out.
private struct SegmentWriter {
    let level: PromptLevel
    var segments: [PromptSegment] = []
    var tokens: [ModalityToken] = []
    var flat = ""
    var pending = ""

    init(level: PromptLevel) { self.level = level }

    mutating func text(_ s: String) { pending += s }

    mutating func behavior(_ b: Int) {
        guard level != .easy else { return }
        token(.behaviorToken(behavior: b), kind: .behavior, index: b, placeholder: PromptBuilder.behaviorPlaceholder)
    }

    mutating func item(_ i: Int) {
        guard level == .hard else { return }
        token(.itemToken(item: i), kind: .item, index: i, placeholder: PromptBuilder.itemPlaceholder)
    }

    private mutating func token(_ seg: PromptSegment, kind: ModalityToken.Kind, index: Int, placeholder: String) {
        pending += " "
        flushText()
        let start = flat.utf8.count
        flat += placeholder
        tokens.append(ModalityToken(kind: kind, index: index, segment: segments.count,
                                    utf8Range: start..<(start + placeholder.utf8.count)))
        segments.append(seg)
    }

    /// Moves pending text into a segment; call once more at the end.
    mutating func flushText() {
        if pending.isEmpty { return }
        segments.append(.text(pending))
        flat += pending
        pending = ""
    }

}
