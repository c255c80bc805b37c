import Foundation
import TMFData
import TMFTensor
import XCTest

final class PromptTests: XCTestCase {
    let builder = PromptBuilder(
        titles: ["water bottles", "athletic t-shirt", "backpack", "tent", "athletic pants", "cellphone cases"],
        behaviors: DatasetConfig.standard.behaviors)
    let history = [HistoryEvent(behavior: 0, item: 0), HistoryEvent(behavior: 1, item: 1)]
    let candidates = [2, 3, 4, 5]

    func substring(_ s: String, _ r: Range<Int>) -> String {
        String(decoding: Array(s.utf8)[r], as: UTF8.self)
    }

    func testEasyMatchesFigure3() {
        let p = builder.build(history: history, target: 2, candidates: candidates, answer: 4, level: .easy, template: 0)
        XCTAssertEqual(p.text, "The user views water bottles, adds to cart athletic t-shirt, what's next to purchase? The candidate items are backpack, tent, athletic pants, cellphone cases. Choose only one item from the candidates. The answer is")
        XCTAssertTrue(p.modalityTokens.isEmpty)
        XCTAssertEqual(p.segments, [.text(p.text)])
        XCTAssertEqual(p.answer, "athletic pants")
        XCTAssertEqual(p.fullText, p.text + " athletic pants")
        XCTAssertEqual(substring(p.fullText, p.answerRange), "athletic pants")
    }

    func testMediumHasBehaviorTokens() {
        let p = builder.build(history: history, target: 2, candidates: candidates, answer: 4, level: .medium, template: 0)
        XCTAssertEqual(p.text, "The user views [MT_b] water bottles, adds to cart [MT_b] athletic t-shirt, what's next to purchase [MT_b]? The candidate items are backpack, tent, athletic pants, cellphone cases. Choose only one item from the candidates. The answer is")
        XCTAssertEqual(p.modalityTokens.map(\.kind), [.behavior, .behavior, .behavior])
        XCTAssertEqual(p.modalityTokens.map(\.index), [0, 1, 2])
        XCTAssertEqual(p.modalityTokens.map(\.utf8Range), [15..<21, 50..<56, 99..<105])
    }

    func testHardHasItemTokensExactly() {
        let p = builder.build(history: history, target: 2, candidates: candidates, answer: 4, level: .hard, template: 0)
        XCTAssertEqual(p.text, "The user views [MT_b] water bottles [MT_i], adds to cart [MT_b] athletic t-shirt [MT_i], what's next to purchase [MT_b]? The candidate items are backpack [MT_i], tent [MT_i], athletic pants [MT_i], cellphone cases [MT_i]. Choose only one item from the candidates. The answer is")
        XCTAssertEqual(p.modalityTokens.map(\.kind), [.behavior, .item, .behavior, .item, .behavior, .item, .item, .item, .item])
        XCTAssertEqual(p.modalityTokens.map(\.index), [0, 0, 1, 1, 2, 2, 3, 4, 5])
        XCTAssertEqual(p.modalityTokens.first?.utf8Range, 15..<21)
        XCTAssertEqual(p.modalityTokens[1].utf8Range, 36..<42)
        XCTAssertEqual(p.segments[0], .text("The user views "))
        XCTAssertEqual(p.segments[1], .behaviorToken(behavior: 0))
        XCTAssertEqual(p.segments[2], .text(" water bottles "))
        XCTAssertEqual(p.segments[3], .itemToken(item: 0))
        XCTAssertEqual(substring(p.fullText, p.answerRange), "athletic pants")
    }

    func testEveryTemplateAndLevelIsConsistent() {
        // Positions match the placeholders, segments flatten to the text, the target behavior and
        // every candidate are named, and the answer span is exact, for titles with multi-byte text.
        let b = PromptBuilder(titles: ["Café «Noir» mug", "Ünïcode shirt", "tent", "红色 helmet"],
                              behaviors: [Behavior(name: "click", phrase: "clicks"), Behavior(name: "buy", phrase: "buys")])
        for level in PromptLevel.allCases {
            var texts = Set<String>()
            for t in 0..<PromptBuilder.templateCount {
                let p = b.build(history: [HistoryEvent(behavior: 0, item: 0), HistoryEvent(behavior: 1, item: 1)],
                                target: 1, candidates: [3, 2, 0], answer: 3, level: level, template: t)
                texts.insert(p.text)
                var flat = ""
                for (k, seg) in p.segments.enumerated() {
                    switch seg {
                    case .text(let s): flat += s
                    case .behaviorToken(let x):
                        let tok = p.modalityTokens.first { $0.segment == k }!
                        XCTAssertEqual(tok.kind, .behavior); XCTAssertEqual(tok.index, x)
                        XCTAssertEqual(tok.utf8Range.lowerBound, flat.utf8.count)
                        flat += PromptBuilder.behaviorPlaceholder
                    case .itemToken(let x):
                        let tok = p.modalityTokens.first { $0.segment == k }!
                        XCTAssertEqual(tok.kind, .item); XCTAssertEqual(tok.index, x)
                        XCTAssertEqual(tok.utf8Range.lowerBound, flat.utf8.count)
                        flat += PromptBuilder.itemPlaceholder
                    }
                }
                XCTAssertEqual(flat, p.text)
                for tok in p.modalityTokens {
                    XCTAssertEqual(substring(p.text, tok.utf8Range),
                                   tok.kind == .item ? PromptBuilder.itemPlaceholder : PromptBuilder.behaviorPlaceholder)
                }
                let behaviors = p.modalityTokens.filter { $0.kind == .behavior }.count
                let items = p.modalityTokens.filter { $0.kind == .item }.count
                XCTAssertEqual(behaviors, level == .easy ? 0 : 3)
                XCTAssertEqual(items, level == .hard ? 5 : 0)
                XCTAssertTrue(p.text.contains("buys") || p.text.contains("buy"))
                for c in ["红色 helmet", "tent", "Café «Noir» mug"] { XCTAssertTrue(p.text.contains(c)) }
                XCTAssertTrue(p.text.hasSuffix("The answer is"))
                XCTAssertEqual(substring(p.fullText, p.answerRange), "红色 helmet")
                XCTAssertEqual(p.answerRange.upperBound, p.fullText.utf8.count)
            }
            XCTAssertEqual(texts.count, 3, "three distinct templates at \(level)")
        }
    }

    func testPromptForDatasetExample() throws {
        let d = try memoryDataset(items: 30, events: [("u", 0, "view", 1), ("u", 1, "cart", 2), ("u", 1, "purchase", 3)])
        let x = SplitExamples(d).test[0]
        let c = try d.candidates(for: x, seed: 5)
        let p = PromptBuilder(dataset: d).prompt(for: x, in: d, candidates: c, level: .hard)
        XCTAssertEqual(p.answer, "Item 1")
        XCTAssertEqual(p.candidates, c)
        XCTAssertTrue(p.text.hasPrefix("The user views [MT_b] Item 0 [MT_i], adds to cart [MT_b] Item 1 [MT_i], what's next to purchase [MT_b]?"))
        XCTAssertEqual(p.modalityTokens.filter { $0.kind == .item }.map(\.index), [0, 1] + c)
        // Training draws templates from the seeded generator.
        var rng = SeededRNG(seed: 1)
        let drawn = Set((0..<50).map { _ in PromptBuilder.randomTemplate(using: &rng) })
        XCTAssertEqual(drawn, [0, 1, 2])
    }
}
