import Foundation
import TMFCheckpoint
import TMFLlama
import TMFTensor
import TMFTestSupport
import XCTest

/// Logits and greedy tokens against transformers (Scripts/make_llama_fixtures.py).
final class LlamaGoldenTests: XCTestCase {
    static let names = ["tiny-untied", "tiny-tied"]

    func testLogitsMatchTransformers() throws {
        for name in Self.names {
            let model = try LlamaFixtures.model(name)
            let c = try LlamaFixtures.testCase(name)
            let expected = try LlamaFixtures.expected(name)
            let plain = withNoGrad { model(.tokens(c.inputIds)) }
            let ref = try expected.tensor(named: "logits_plain")
            XCTAssertEqual(plain.shape, ref.shape)
            let e1 = relativeError(plain.scalars, ref.scalars)
            XCTAssertLessThan(e1, 1e-4, "\(name) plain logits")

            let padded = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
            let refPadded = try expected.tensor(named: "logits_padded")
            let e2 = relativeError(padded.scalars, refPadded.scalars,
                                   keep: unmasked(c.mask, width: model.configuration.vocabularySize))
            XCTAssertLessThan(e2, 1e-4, "\(name) left-padded logits")
            print("\(name): max relative logit error plain \(e1), left-padded \(e2)")
        }
    }

    func testExplicitPositionsEqualDefaultFromMask() throws {
        let model = try LlamaFixtures.model("tiny-tied")
        let c = try LlamaFixtures.testCase("tiny-tied")
        let a = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
        let b = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask, positions: c.positions) }
        XCTAssertEqual(a.scalars, b.scalars)
    }

    func testGreedyContinuationMatchesTransformers() throws {
        for name in Self.names {
            let model = try LlamaFixtures.model(name)
            let c = try LlamaFixtures.testCase(name)
            let prompts = zip(c.paddedIds, c.mask).map { ids, m in zip(ids, m).filter { $0.1 }.map { $0.0 } }
            let out = model.generate(prompts: prompts, parameters: GenerationParameters(maxTokens: 8))
            XCTAssertEqual(out, c.greedy, name)
        }
    }

    func testEmbeddingsInputEqualsTokens() throws {
        let model = try LlamaFixtures.model("tiny-untied")
        let c = try LlamaFixtures.testCase("tiny-untied")
        let a = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
        let b = withNoGrad { model(.embeddings(model.embed(c.paddedIds)), attentionMask: c.mask) }
        XCTAssertEqual(a.scalars, b.scalars)
    }

    func testLogitsSelectionsEqualFullLogits() throws {
        let model = try LlamaFixtures.model("tiny-tied")
        let c = try LlamaFixtures.testCase("tiny-tied")
        let v = model.configuration.vocabularySize, t = c.paddedIds[0].count
        let all = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
        let last = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask, logits: .last) }
        XCTAssertEqual(last.shape, [2, v])
        for b in 0..<2 {
            assertClose(Array(last.scalars[b * v..<(b + 1) * v]),
                        Array(all.scalars[(b * t + t - 1) * v..<(b * t + t) * v]), rtol: 1e-5, atol: 1e-5)
        }
        let rows = [3, 10, 17]
        let some = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask, logits: .rows(rows)) }
        XCTAssertEqual(some.shape, [3, v])
        for (i, r) in rows.enumerated() {
            assertClose(Array(some.scalars[i * v..<(i + 1) * v]), Array(all.scalars[r * v..<(r + 1) * v]),
                        rtol: 1e-5, atol: 1e-5)
        }
    }

    /// Prefill then one token at a time through the KV cache equals one full forward pass.
    func testKVCacheDecodingEqualsFullForward() throws {
        for name in Self.names {
            let model = try LlamaFixtures.model(name)
            let c = try LlamaFixtures.testCase(name)
            let v = model.configuration.vocabularySize, t = c.paddedIds[0].count
            let full = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
            let prefill = 5
            let cache = KVCache(configuration: model.configuration, batchSize: 2, capacity: t)
            var got = [[Float]](repeating: [], count: 2)
            withNoGrad {
                let first = model(.tokens(c.paddedIds.map { Array($0[..<prefill]) }),
                                  attentionMask: c.mask.map { Array($0[..<prefill]) }, cache: cache)
                for b in 0..<2 { got[b] += Array(first.scalars[b * prefill * v..<(b + 1) * prefill * v]) }
                for i in prefill..<t {
                    let step = model(.tokens(c.paddedIds.map { [$0[i]] }), attentionMask: c.mask.map { [$0[i]] },
                                     cache: cache)
                    XCTAssertEqual(step.shape, [2, 1, v])
                    for b in 0..<2 { got[b] += Array(step.scalars[b * v..<(b + 1) * v]) }
                }
            }
            XCTAssertEqual(cache.length, t)
            let e = relativeError(got[0] + got[1], full.scalars, keep: unmasked(c.mask, width: v))
            XCTAssertLessThan(e, 1e-5, name)
        }
    }
}
