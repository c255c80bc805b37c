import Foundation
import TMFCheckpoint
import TMFLlama
import TMFTensor
import TMFTestSupport
import XCTest

/// 16-bit frozen weights against transformers (Scripts/make_half_llama_fixtures.py,
/// Fixtures/llama/half). Every kernel path this CPU can run is checked, the portable one
/// everywhere: the widening paths against float32 on the 16-bit-valued weights, the
/// AVX512-BF16 path (and its emulation) against the same with every linear layer's input
/// rounded to bf16 first.
final class HalfWeightTests: XCTestCase {
    let half = LlamaFixtures.root.appendingPathComponent("half")

    override func tearDown() { HalfMatMul.forcePath(nil) }

    func expected() throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: half.appendingPathComponent("half-expected.safetensors"))
    }

    /// The paths runnable here, each with whether it rounds bf16 activations.
    var paths: [(HalfMatMul.Path, roundsActivations: Bool)] {
        HalfMatMul.Path.allCases.filter { HalfMatMul.isSupported($0) }
            .map { ($0, $0.roundsActivations) }
    }

    func testCheckpointTypeIsTheDefaultAndMatricesStayHalf() throws {
        let bf16 = try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-bf16"))
        XCTAssertEqual(bf16.storageType, .bf16)
        for (name, w) in bf16.namedWeights() {
            if w.shape.count == 2 { XCTAssertEqual(w.storageType, .bf16, name) } else { XCTAssertNotNil(w.floatTensor, name) }
        }
        XCTAssertEqual(try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-f16")).storageType, .f16)
        XCTAssertEqual(try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-bf16"), dtype: .f32).storageType, .f32)
        // An F32 checkpoint is converted once on request: its matrices to the same bits as
        // transformers' bf16 copy (norms stay Float32, unrounded).
        let converted = try LlamaModel.load(directory: LlamaFixtures.folder("tiny-untied"), dtype: .bf16)
        XCTAssertEqual(converted.storageType, .bf16)
        let stored = Dictionary(uniqueKeysWithValues: bf16.namedWeights())
        for (name, w) in converted.namedWeights() where w.shape.count == 2 {
            guard case let .half(a) = w, case let .half(b) = stored[name]! else { return XCTFail(name) }
            XCTAssertEqual(Array(a.bits), Array(b.bits), name)
        }
        // Keys are unchanged whatever the storage.
        XCTAssertEqual(converted.weightShapes(), LlamaModel.expectedWeights(converted.configuration))
    }

    func testLogitsMatchTransformersOnEveryPath() throws {
        let c = try LlamaFixtures.testCase("tiny-untied")
        let exp = try expected()
        for precision in ["bf16", "f16"] {
            let model = try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-" + precision))
            for (path, rounds) in paths {
                XCTAssertTrue(HalfMatMul.forcePath(path))
                let roundsHere = rounds && precision == "bf16"
                let key = roundsHere ? "bf16dot" : precision
                let plain = withNoGrad { model(.tokens(c.inputIds)) }
                let padded = withNoGrad { model(.tokens(c.paddedIds), attentionMask: c.mask) }
                let e1 = relativeError(plain.scalars, try exp.tensor(named: key + ".logits_plain").scalars)
                let e2 = relativeError(padded.scalars, try exp.tensor(named: key + ".logits_padded").scalars,
                                       keep: unmasked(c.mask, width: 128))
                print("\(precision) on \(path): max relative logit error plain \(e1), left-padded \(e2)")
                // Widening paths: fp32 products of exact values, only the summation order differs.
                // bf16 dot products: the activations are rounded as in the reference, but a sum that
                // lands near a rounding boundary can round the other way (one bf16 ulp, 2^-8).
                let tolerance: Float = roundsHere ? 2e-3 : 1e-5
                XCTAssertLessThan(e1, tolerance, "\(precision) \(path)")
                XCTAssertLessThan(e2, tolerance, "\(precision) \(path)")
            }
        }
    }

    func testInputGradientThroughHalfWeights() throws {
        let c = try LlamaFixtures.testCase("tiny-untied")
        let exp = try expected()
        let model = try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-bf16"))
        for (path, rounds) in paths {
            XCTAssertTrue(HalfMatMul.forcePath(path))
            let embeds = model.embed(c.paddedIds).copy()
            embeds.requiresGrad = true
            let logits = model(.embeddings(embeds), attentionMask: c.mask, positions: c.positions, training: true)
            let loss = Tensor.crossEntropy(logits.reshaped([-1, 128]), targets: c.labels!.flatMap { $0 })
            loss.backward()
            let e = relativeError(embeds.grad!.scalars, try exp.tensor(named: "bf16.grad.inputs_embeds").scalars)
            print("bf16 on \(path): loss \(loss.item), input-gradient max relative error \(e)")
            XCTAssertEqual(loss.item, try exp.tensor(named: "bf16.loss").scalars[0], accuracy: rounds ? 1e-2 : 1e-5)
            XCTAssertLessThan(e, rounds ? 2e-2 : 1e-4, "\(path)")
        }
    }

    func testConvertedModelEqualsStoredOne() throws {
        let c = try LlamaFixtures.testCase("tiny-untied")
        let stored = try LlamaModel.load(directory: half.appendingPathComponent("tiny-untied-bf16"))
        let b = withNoGrad { stored(.tokens(c.inputIds)) }
        // Converting to its own type changes nothing; to Float32 widens exactly (then OpenBLAS runs it).
        XCTAssertEqual(withNoGrad { stored.converted(to: .bf16)(.tokens(c.inputIds)) }.scalars, b.scalars)
        let widened = stored.converted(to: .f32)
        XCTAssertEqual(widened.storageType, .f32)
        let w = withNoGrad { widened(.tokens(c.inputIds)) }.scalars
        withWideningHalfPath { path in
            XCTAssertLessThan(relativeError(w, withNoGrad { stored(.tokens(c.inputIds)) }.scalars), 1e-5, "\(path)")
        }
        // The automatic path, where it rounds activations to bf16 (AVX512-BF16): close, not equal.
        if HalfMatMul.path(for: .bf16).roundsActivations { XCTAssertLessThan(relativeError(w, b.scalars), 2e-2) }
        // f16 from bf16: rounded once more, close to the f16 checkpoint's logits.
        let f16 = withNoGrad { stored.converted(to: .f16)(.tokens(c.inputIds)) }
        XCTAssertLessThan(relativeError(f16.scalars, try expected().tensor(named: "f16.logits_plain").scalars), 2e-2)
    }

    /// The bundled model (trained by `tmf pretrain`, stored BF16) decodes the same 40 tokens
    /// greedily as transformers in bfloat16 and in float32.
    func testGreedyTextOfTheBundledModelMatchesTransformers() throws {
        let data = try Data(contentsOf: half.appendingPathComponent("tiny-llama-greedy.json"))
        let g = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let prompt = (g["prompt_ids"] as! [NSNumber]).map(\.intValue)
        let want = (g["bf16_ids"] as! [NSNumber]).map(\.intValue)
        XCTAssertEqual(want, (g["f32_ids"] as! [NSNumber]).map(\.intValue))
        let folder = fixturesURL.appendingPathComponent("models/tiny-llama")
        let model = try LlamaModel.load(directory: folder)
        XCTAssertEqual(model.storageType, .bf16)
        for (path, _) in paths {
            XCTAssertTrue(HalfMatMul.forcePath(path))
            let out = model.generate(prompts: [prompt], parameters: GenerationParameters(maxTokens: 40))
            XCTAssertEqual(out, [want], "\(path)")
        }
        let f32 = try LlamaModel.load(directory: folder, dtype: .f32)
        XCTAssertEqual(f32.generate(prompts: [prompt], parameters: GenerationParameters(maxTokens: 40)), [want])
    }
}
