import Foundation
import XCTest
import TMFData
import TMFLlama
import TMFTensor
import TMFTestSupport
import TMFTokenizer
import TMFTrainer

final class PretrainTests: XCTestCase {
    var temp: URL!

    override func setUpWithError() throws {
        temp = FileManager.default.temporaryDirectory.appendingPathComponent("pretrain-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: temp)
    }

    /// A small, very regular corpus: a few sentence patterns over a few words.
    func smallCorpus() -> [String] {
        let colors = ["red", "blue", "green", "yellow", "black"]
        let things = ["helmet", "bottle", "tent", "jacket", "glove", "shoe"]
        var out: [String] = []
        for (i, c) in colors.enumerated() {
            for (j, t) in things.enumerated() {
                out.append("The user views the \(c) \(t), adds to cart the \(colors[(i + j) % colors.count]) \(t) and purchases it.")
            }
        }
        return out
    }

    func tinyParameters(steps: Int = 40, dtype: WeightsDType = .f32) -> PretrainParameters {
        PretrainParameters(vocabularySize: 300, hiddenSize: 32, layers: 2, heads: 4, kvHeads: 2, intermediateSize: 64,
                           context: 64, steps: steps, batchSize: 4, sequenceLength: 32, learningRate: 1e-2,
                           warmupSteps: 4, checkpointEvery: 25, dtype: dtype)
    }

    func logits(_ model: LlamaModel, _ ids: [Int]) -> [Float] {
        withNoGrad { model(.tokens([ids]), logits: .all).scalars }
    }

    /// The loss falls clearly, and the written folder reloads (config, weights, tokenizer) and
    /// gives the in-memory model's logits: exactly for f32, within bf16 rounding for bf16.
    func testPretrainLearnsAndFolderReloads() throws {
        for dtype in WeightsDType.allCases {
            let folder = temp.appendingPathComponent("model-\(dtype.rawValue)")
            let trainer = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(dtype: dtype), folder: folder)
            var checkpoints: [Int] = []
            let summary = try trainer.run { event in
                if case let .checkpoint(step) = event { checkpoints.append(step) }
                return true
            }
            XCTAssertEqual(summary.steps, 40)
            XCTAssertEqual(checkpoints, [25, 40])
            XCTAssertGreaterThan(summary.firstLoss, 4.5, "a random init predicts about uniformly")
            XCTAssertLessThan(summary.finalLoss, summary.firstLoss * 0.6, "loss \(summary.firstLoss) → \(summary.finalLoss)")

            let tokenizer = try SentencePieceTokenizer(directory: folder)
            let loaded = try LlamaModel.load(directory: folder)
            XCTAssertEqual(loaded.configuration, trainer.model.configuration)
            XCTAssertEqual(loaded.configuration.vocabularySize, tokenizer.baseVocabularySize)
            XCTAssertTrue(loaded.configuration.tieWordEmbeddings)
            let ids = try tokenizer.encode("The user views the red tent", addBOS: true)
            let a = logits(trainer.model, ids), b = logits(loaded, ids)
            switch dtype {
            case .f32: assertClose(b, a, rtol: 0, atol: 0)
            case .bf16:
                let scale = a.map(abs).max()!
                assertClose(b, a, rtol: 0.03, atol: 0.03 * scale)
                XCTAssertNotEqual(a, b, "bf16 weights should round")
            }
            // The learned model continues a training pattern.
            let out = loaded.generate(prompts: [ids], parameters: GenerationParameters(maxTokens: 6, stopTokens: [tokenizer.eosID]))
            XCTAssertTrue(tokenizer.decode(out[0]).contains("adds"), "generated '\(tokenizer.decode(out[0]))'")
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
            XCTAssertEqual(json["model_type"] as? String, "llama")
            XCTAssertEqual(json["tie_word_embeddings"] as? Bool, true)
        }
    }

    /// Continuing a folder (--init) keeps its tokenizer and weights and starts from its loss.
    func testContinueFromFolder() throws {
        let first = temp.appendingPathComponent("first"), second = temp.appendingPathComponent("second")
        let a = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(steps: 30), folder: first)
        let s1 = try a.run()
        let b = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(steps: 5), folder: second, initFrom: first)
        XCTAssertEqual(b.model.configuration, a.model.configuration)
        XCTAssertEqual(try Data(contentsOf: second.appendingPathComponent("tokenizer.model")),
                       try Data(contentsOf: first.appendingPathComponent("tokenizer.model")))
        let s2 = try b.run()
        XCTAssertLessThan(s2.firstLoss, s1.firstLoss * 0.7, "continued run starts from the trained weights")
    }

    /// Added tokens (item titles as single tokens): the model's vocabulary covers them, the
    /// folder lists them in added_tokens.json, a reloaded folder encodes them alike, and a run
    /// continued with --init keeps them.
    func testTitleTokensAreModelVocabulary() throws {
        let first = temp.appendingPathComponent("first"), second = temp.appendingPathComponent("second")
        let titles = ["red helmet", "blue bottle", "green tent"]
        let a = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(steps: 3), folder: first, addedTokens: titles)
        let base = a.tokenizer.baseVocabularySize
        XCTAssertEqual(a.tokenizer.addedTokens, titles)
        XCTAssertEqual(a.model.configuration.vocabularySize, base + 3)
        XCTAssertTrue(a.trainTokens.contains(base) && a.trainTokens.contains(base + 2), "the corpus uses the title tokens")
        _ = try a.run()
        let loaded = try SentencePieceTokenizer(directory: first, specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
        XCTAssertEqual(loaded.addedTokens, titles)
        XCTAssertEqual(try loaded.encode("the blue bottle", addBOS: false).last, base + 1)
        XCTAssertEqual(loaded.specialTokenID("[MT_i]"), base + 3)
        XCTAssertEqual(try LlamaConfiguration.load(directory: first).vocabularySize, base + 3)
        let b = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(steps: 1), folder: second, initFrom: first)
        XCTAssertEqual(b.tokenizer.addedTokens, titles)
        XCTAssertEqual(try Data(contentsOf: second.appendingPathComponent(SentencePieceTokenizer.addedTokensFile)),
                       try Data(contentsOf: first.appendingPathComponent(SentencePieceTokenizer.addedTokensFile)))
        // Without added tokens there is no file.
        let c = try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(steps: 1), folder: temp.appendingPathComponent("c"))
        XCTAssertEqual(c.model.configuration.vocabularySize, c.tokenizer.baseVocabularySize)
        XCTAssertFalse(FileManager.default.fileExists(atPath: temp.appendingPathComponent("c/added_tokens.json").path))
    }

    /// A hand-made shop: one user's validation and test answers (and everything after the
    /// validation target) never appear in the history sentences; earlier events do.
    func testDatasetCorpusExcludesHeldOutEvents() throws {
        let titles = ["Alpha Helmet", "Bravo Bottle", "Charlie Tent", "Delta Jacket", "Echo Glove", "Foxtrot Shoe",
                      "Golf Lamp", "Hotel Stove", "India Map", "Juliet Rope", "Kilo Pump", "Lima Bag"]
        let items = titles.enumerated().map { Item(id: "I\($0.offset)", title: $0.element, brand: "Acme", categories: ["Gear"],
                                                    description: "A fine \($0.element.lowercased()).") }
        let config = DatasetConfig(behaviors: [Behavior(name: "view", phrase: "views"), Behavior(name: "cart", phrase: "adds to cart"),
                                               Behavior(name: "purchase", phrase: "purchases")], target: "purchase")
        // u1: view A, purchase B (train), view C, purchase D (valid), cart E, purchase F (test).
        // u2: view G, purchase H (test only). u3: view I, cart J (no target events).
        let events: [(user: String, item: Int, behavior: Int, time: Double)] = [
            ("u1", 0, 0, 1), ("u1", 1, 2, 2), ("u1", 2, 0, 3), ("u1", 3, 2, 4), ("u1", 4, 1, 5), ("u1", 5, 2, 6),
            ("u2", 6, 0, 1), ("u2", 7, 2, 2),
            ("u3", 8, 0, 1), ("u3", 9, 1, 2),
        ]
        let dataset = try Dataset(url: temp, items: items, config: config, events: events)
        let splits = SplitExamples(dataset)
        XCTAssertEqual(splits.valid.map(\.target), [3])
        XCTAssertEqual(Set(splits.test.map(\.target)), [5, 7])

        var rng = SeededRNG(seed: 1)
        let history = PretrainCorpus.historySentences(from: dataset, rng: &rng)
        XCTAssertEqual(history.count, 3)
        XCTAssertTrue(history[0].contains("views Alpha Helmet, purchases Bravo Bottle, views Charlie Tent"), history[0])
        XCTAssertTrue(history[1].contains("views Golf Lamp") && !history[1].contains("Hotel"), history[1])
        XCTAssertTrue(history[2].contains("views India Map, adds to cart Juliet Rope"), history[2])

        let corpus = PretrainCorpus.build(from: dataset, seed: 3, candidateSentences: 50)
        XCTAssertEqual(corpus.count, items.count + 3 + 50)
        for line in corpus {
            for held in ["Delta Jacket", "Echo Glove", "Foxtrot Shoe", "Hotel Stove"] {
                for behavior in ["views", "adds to cart", "purchases"] {
                    XCTAssertFalse(line.contains("\(behavior) \(held)"), "held-out event in: \(line)")
                }
            }
        }
        // Every title is still spelled somewhere (item texts), including held-out ones.
        for t in titles { XCTAssertTrue(corpus.contains { $0.hasPrefix(t + ". Acme") }, t) }
        // Question sentences: the prompt's wording, candidates not in the history, the answer one of them.
        let candidateLines = corpus.suffix(50)
        for line in candidateLines {
            guard let range = line.range(of: "The answer is ", options: .backwards) else { XCTFail(line); continue }
            let answer = String(line[range.upperBound...])
            XCTAssertTrue(titles.contains(answer), line)
            let inHistory = ["views", "adds to cart", "purchases"].contains { line.contains("\($0) \(answer)") }
            XCTAssertFalse(inHistory, "answer copied from the history: \(line)")
            XCTAssertEqual(line.components(separatedBy: answer).count - 1, 2, "answer listed once and given once: \(line)")
            XCTAssertTrue(line.hasPrefix("The user ") || line.hasPrefix("A shopper's") || line.hasPrefix("Given that"), line)
        }
        // Copy drills: a list of 3-11 distinct titles, then the same list again; none by default.
        let withDrills = PretrainCorpus.build(from: dataset, seed: 3, candidateSentences: 50, copyDrills: 20)
        XCTAssertEqual(Array(withDrills.prefix(corpus.count)), corpus)
        XCTAssertEqual(withDrills.count, corpus.count + 20)
        for line in withDrills.suffix(20) {
            let prefix = "The candidate items are ", again = ". Once more, the candidate items are "
            guard line.hasPrefix(prefix), let mid = line.range(of: again), line.hasSuffix(".") else { XCTFail(line); continue }
            let first = String(line[line.index(line.startIndex, offsetBy: prefix.count)..<mid.lowerBound])
            let second = String(line[mid.upperBound...].dropLast())
            XCTAssertEqual(first, second, line)
            let listed = first.components(separatedBy: ", ")
            XCTAssertTrue((3...11).contains(listed.count), line)
            XCTAssertEqual(Set(listed).count, listed.count, line)
            XCTAssertTrue(listed.allSatisfy { titles.contains($0) }, line)
        }
    }

    /// Look-up drills: a list of distinct titles with exactly one of the named category, which is
    /// the answer; every phrasing used; the rest of the corpus unchanged; none when all items
    /// share one category.
    func testLookupDrillsNameTheOneCandidateOfTheCategory() throws {
        let kinds = ["bike helmet", "tent", "yoga mat", "swim cap"]
        let items = (0..<24).map { i in
            Item(id: "I\(i)", title: "Brand\(i % 5) Model \(i) \(kinds[i % 4].capitalized)", brand: "Brand\(i % 5)",
                 categories: ["Sports", kinds[i % 4]], description: nil)
        }
        let config = DatasetConfig(behaviors: [Behavior(name: "view", phrase: "views"), Behavior(name: "purchase", phrase: "purchases")],
                                   target: "purchase")
        let events: [(user: String, item: Int, behavior: Int, time: Double)] = [
            ("u1", 0, 0, 1), ("u1", 1, 1, 2), ("u1", 2, 1, 3), ("u1", 3, 1, 4),
        ]
        let dataset = try Dataset(url: temp, items: items, config: config, events: events)
        var rng = SeededRNG(seed: 5)
        let drills = PretrainCorpus.lookupDrills(from: dataset, count: 60, rng: &rng)
        XCTAssertEqual(drills.count, 60)
        let byTitle = Dictionary(uniqueKeysWithValues: items.map { ($0.title, $0) })
        var phrasings = Set<Int>()
        for line in drills {
            guard let answerStart = line.range(of: ". The answer is ", options: .backwards), line.hasSuffix(".") else { XCTFail(line); continue }
            let answer = String(line[answerStart.upperBound...].dropLast())
            let head = line[..<answerStart.lowerBound]
            let category: String
            var isPrompt = false
            if line.hasPrefix("The candidate items are "), let r = head.range(of: ". Choose the ") {
                phrasings.insert(0)
                category = String(head[r.upperBound...])
            } else if line.hasPrefix("The user wants ") {
                phrasings.insert(1)
                category = String(head.dropFirst("The user wants ".count).prefix { $0 != "." })
            } else if line.hasPrefix("Looking for ") {
                phrasings.insert(2)
                category = String(head.dropFirst("Looking for ".count).prefix { $0 != "?" })
            } else if let r = head.range(of: ". The user wants ", options: .backwards) {
                phrasings.insert(3)  // a whole prompt, the category named just before the answer
                isPrompt = true
                category = String(head[r.upperBound...])
                XCTAssertTrue(line.hasPrefix("The user views") || line.hasPrefix("The user purchases")
                              || line.hasPrefix("A shopper's") || line.hasPrefix("Given that"), line)
            } else { XCTFail(line); continue }
            let markers = ["The candidate items are ", "Candidates: ", "Pick one of these candidates: "]
            guard let listStart = markers.compactMap({ head.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) else {
                XCTFail(line); continue
            }
            let listEnd = head.range(of: ".", range: listStart.upperBound..<head.endIndex)?.lowerBound ?? head.endIndex
            let listed = head[listStart.upperBound..<listEnd].components(separatedBy: ", ")
            XCTAssertTrue(kinds.contains(category), line)
            XCTAssertTrue((4...11).contains(listed.count), line)
            XCTAssertEqual(Set(listed).count, listed.count, line)
            XCTAssertTrue(listed.allSatisfy { byTitle[$0] != nil }, line)
            XCTAssertEqual(listed.filter { byTitle[$0]?.categories.last == category }, [answer], line)
            if isPrompt {
                // The history names another item of the category and none of the candidates.
                let history = head[..<listStart.lowerBound]
                let historyTitles = items.map(\.title).filter { history.contains($0) }
                XCTAssertTrue(historyTitles.contains { byTitle[$0]?.categories.last == category && $0 != answer }, line)
                XCTAssertFalse(historyTitles.contains { listed.contains($0) }, line)
            }
        }
        XCTAssertEqual(phrasings, [0, 1, 2, 3])
        // Adding drills leaves the rest of the corpus as it was.
        let plain = PretrainCorpus.build(from: dataset, seed: 2, candidateSentences: 10, copyDrills: 5)
        let more = PretrainCorpus.build(from: dataset, seed: 2, candidateSentences: 10, copyDrills: 5, lookupDrills: 7)
        XCTAssertEqual(Array(more.prefix(plain.count)), plain)
        XCTAssertEqual(more.count, plain.count + 7)
        // One category for all items: nothing to look up.
        let same = try Dataset(url: temp, items: items.map { var i = $0; i.categories = ["Gear"]; return i },
                               config: config, events: events)
        XCTAssertEqual(PretrainCorpus.lookupDrills(from: same, count: 10, rng: &rng), [])
    }

    /// Bad inputs give typed errors with messages naming what to fix.
    func testBadInputsThrowClearErrors() throws {
        let missing = temp.appendingPathComponent("nope.txt")
        XCTAssertThrowsError(try PretrainCorpus.read(file: missing)) { error in
            XCTAssertEqual(error as? PretrainError, .missingCorpus(path: missing.path, reason: "no such file"))
            XCTAssertTrue(error.localizedDescription.contains("nope.txt"))
        }
        let empty = temp.appendingPathComponent("empty.txt")
        try Data("\n  \n\n".utf8).write(to: empty)
        XCTAssertThrowsError(try PretrainCorpus.read(file: empty)) { error in
            XCTAssertEqual(error as? PretrainError, .emptyCorpus(path: empty.path))
        }
        XCTAssertThrowsError(try Pretrainer(corpus: ["", " "], parameters: tinyParameters(), folder: temp.appendingPathComponent("x")))
        { XCTAssertEqual($0 as? PretrainError, .emptyCorpus(path: "")) }

        var p = tinyParameters()
        p.heads = 3
        XCTAssertThrowsError(try p.validate()) { error in
            XCTAssertEqual(error.localizedDescription, "--heads 3 must divide --hidden 32")
        }
        p = tinyParameters(); p.kvHeads = 3
        XCTAssertThrowsError(try p.validate()) { XCTAssertTrue($0.localizedDescription.contains("--kv-heads")) }
        p = tinyParameters(); p.sequenceLength = 100
        XCTAssertThrowsError(try p.validate()) { XCTAssertTrue($0.localizedDescription.contains("--context")) }
        p = tinyParameters(); p.vocabularySize = 10
        XCTAssertThrowsError(try p.validate()) { XCTAssertTrue($0.localizedDescription.contains("--vocab")) }
        p = tinyParameters(); p.steps = 0
        XCTAssertThrowsError(try Pretrainer(corpus: smallCorpus(), parameters: p, folder: temp.appendingPathComponent("y")))
        { XCTAssertTrue($0.localizedDescription.contains("--steps")) }

        p = tinyParameters(); p.sequenceLength = 60
        XCTAssertThrowsError(try Pretrainer(corpus: ["one two three"], parameters: p, folder: temp.appendingPathComponent("z"))) { error in
            guard case .corpusTooSmall = error as? PretrainError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Pretrainer(corpus: smallCorpus(), parameters: tinyParameters(), folder: temp.appendingPathComponent("w"),
                                            initFrom: temp.appendingPathComponent("no-model"))) { error in
            guard case .badInitFolder = error as? PretrainError else { return XCTFail("\(error)") }
        }
    }

    /// The bundled tiny Llama (Fixtures/models/tiny-llama, made by `tmf pretrain`, see its README)
    /// loads with its tokenizer, spells the shop's titles and, asked to choose among candidates,
    /// answers with a title (choosing among the candidates is what LoRA fine-tuning teaches).
    func testBundledTinyLlamaSpellsTitles() throws {
        let dir = fixturesURL.appendingPathComponent("models/tiny-llama")
        let tokenizer = try SentencePieceTokenizer(directory: dir, specialTokens: SentencePieceTokenizer.tmfSpecialTokens)
        let model = try LlamaModel.load(directory: dir)
        XCTAssertEqual(model.configuration.vocabularySize, tokenizer.baseVocabularySize)
        XCTAssertEqual(tokenizer.specialTokenID("[MT_i]"), tokenizer.baseVocabularySize)
        let dataset = try Dataset.load(from: fixturesURL.appendingPathComponent("shop"), options: LoadOptions(checkImages: false))
        let titles = dataset.items.map(\.title)
        let parameters = GenerationParameters(maxTokens: 24, stopTokens: [tokenizer.eosID])

        // Completing a title from its first two words gives a real title.
        var spelled = 0
        let probe = Array(stride(from: 0, to: titles.count, by: 15))
        for i in probe {
            let words = titles[i].split(separator: " ")
            let prefix = "The user views " + words.prefix(2).joined(separator: " ")
            let ids = try tokenizer.encode(prefix, addBOS: true)
            let out = model.generate(prompts: [ids], parameters: parameters)[0]
            let text = String(tokenizer.decode(Array(ids.dropFirst()) + out).dropFirst("The user views ".count))
            let completed = text.components(separatedBy: ",")[0].components(separatedBy: ".")[0]
            if titles.contains(completed) { spelled += 1 }
            print("title: \(prefix) → \(completed)")
        }
        XCTAssertGreaterThanOrEqual(spelled * 2, probe.count, "\(spelled)/\(probe.count) completions are titles")

        // Asked to choose, it answers with a candidate.
        var rng = SeededRNG(seed: 7)
        var chosen = 0, named = 0
        for trial in 0..<12 {
            var pool = Array(titles.indices)
            for k in 0..<11 { pool.swapAt(k, k + rng.nextInt(below: pool.count - k)) }
            let candidates = pool.prefix(11).map { titles[$0] }
            let list = candidates.joined(separator: ", ")
            let prompt = [
                "What's next to purchase? The candidate items are \(list). Choose only one item from the candidates. The answer is",
                "Candidates: \(list). Name the next item the user purchases, choosing exactly one candidate. The answer is",
                "Pick one of these candidates: \(list). The answer is",
            ][trial % 3]
            let out = model.generate(prompts: [try tokenizer.encode(prompt, addBOS: true)], parameters: parameters)[0]
            let answer = tokenizer.decode(out).trimmingCharacters(in: .whitespaces).components(separatedBy: ".")[0]
            if candidates.contains(answer) { chosen += 1 }
            if titles.contains(answer) { named += 1 }
            print("choice: → \(answer) \(candidates.contains(answer) ? "(candidate)" : titles.contains(answer) ? "(title)" : "")")
        }
        XCTAssertGreaterThanOrEqual(named, 8, "\(named)/12 answers are titles")

        // After "views A, adds to cart", it names A again (the shop's usual view → cart step).
        var copied = 0
        for i in probe {
            let ids = try tokenizer.encode("The user views \(titles[i]), adds to cart", addBOS: true)
            let out = model.generate(prompts: [ids], parameters: parameters)[0]
            let next = tokenizer.decode(out).trimmingCharacters(in: .whitespaces).components(separatedBy: ",")[0]
                .components(separatedBy: ".")[0]
            if next == titles[i] { copied += 1 }
            print("copy: \(titles[i]) → \(next)")
        }
        print("copied \(copied)/\(probe.count), chose \(chosen)/12")
        // Trained with copy drills, it answers from the candidate list (10/12 when the fixture was made).
        XCTAssertGreaterThanOrEqual(chosen, 6, "\(chosen)/12 answers are candidates")
        XCTAssertGreaterThanOrEqual(copied * 4, probe.count, "\(copied)/\(probe.count) view → cart steps copy the title")

        // A list-recall drill: shown a list of three titles, it repeats them in order (all 12
        // titles in place when the fixture was made).
        var recalled = 0
        for _ in 0..<4 {
            var pool = Array(titles.indices)
            for k in 0..<3 { pool.swapAt(k, k + rng.nextInt(below: pool.count - k)) }
            let listed = pool.prefix(3).map { titles[$0] }
            let ids = try tokenizer.encode("The candidate items are \(listed.joined(separator: ", ")). Once more, the candidate items are",
                                           addBOS: true)
            let out = model.generate(prompts: [ids], parameters: GenerationParameters(maxTokens: 40, stopTokens: [tokenizer.eosID]))[0]
            let again = tokenizer.decode(out).trimmingCharacters(in: .whitespaces).components(separatedBy: ", ")
                .map { $0.components(separatedBy: ".")[0] }
            recalled += zip(listed, again).filter { $0 == $1 }.count
            print("recall: \(listed) → \(again)")
        }
        XCTAssertGreaterThanOrEqual(recalled, 6, "\(recalled)/12 titles repeated in place")

        // Look-up drills it was not trained on (a fresh seed): it names the one candidate of the
        // asked-for category, copied whole (7 of these 12 when the fixture was made).
        var lookupRNG = SeededRNG(seed: 11)
        var found = 0
        for drill in PretrainCorpus.lookupDrills(from: dataset, count: 12, rng: &lookupRNG) {
            let cut = try XCTUnwrap(drill.range(of: " The answer is ", options: .backwards))
            let answer = String(drill[cut.upperBound...].dropLast())
            let ids = try tokenizer.encode(String(drill[..<cut.lowerBound]) + " The answer is", addBOS: true)
            let out = model.generate(prompts: [ids], parameters: parameters)[0]
            let said = tokenizer.decode(out).trimmingCharacters(in: .whitespaces).components(separatedBy: ".")[0]
            if said == answer { found += 1 }
        }
        print("look-up: \(found)/12")
        XCTAssertGreaterThanOrEqual(found, 4, "\(found)/12 look-ups name the candidate of the category")
    }
}
