import Foundation
import TMFCheckpoint
import TMFLlama
import TMFLoRA
import TMFTensor
import TMFTestSupport
import XCTest

/// LoRA against peft (Scripts/make_llama_fixtures.py, Fixtures/llama/tiny-untied-adapter).
final class LoRATests: XCTestCase {
    let root = fixturesURL.appendingPathComponent("llama")
    var baseURL: URL { root.appendingPathComponent("tiny-untied") }
    var adapterURL: URL { root.appendingPathComponent("tiny-untied-adapter") }

    struct Case { var ids: [[Int]]; var mask: [[Bool]]; var positions: [[Int]]; var labels: [[Int]] }

    func testCase() throws -> Case {
        let all = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("cases.json"))) as! [String: Any]
        let c = all["tiny-untied"] as! [String: Any]
        func ints(_ k: String) -> [[Int]] { (c[k] as! [[NSNumber]]).map { $0.map(\.intValue) } }
        return Case(ids: ints("padded_ids"), mask: ints("attention_mask").map { $0.map { $0 != 0 } },
                    positions: ints("position_ids"), labels: ints("labels"))
    }

    func expected() throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: root.appendingPathComponent("tiny-untied-expected.safetensors"))
    }

    /// max |a − b| / max |b| over `keep`.
    func relativeError(_ a: [Float], _ b: [Float], keep: ((Int) -> Bool)? = nil) -> Float {
        var d: Float = 0, r: Float = 0
        for i in a.indices where keep?(i) ?? true { d = max(d, abs(a[i] - b[i])); r = max(r, abs(b[i])) }
        return r == 0 ? d : d / r
    }

    func keepUnmasked(_ mask: [[Bool]], _ width: Int) -> (Int) -> Bool {
        let t = mask[0].count
        return { i in let row = i / width; return mask[row / t][row % t] }
    }

    func testFreshAdapterWithZeroBEqualsBase() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let base = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        let lora = LoRAModel(base: model, configuration: try LoRAConfiguration(rank: 4, alpha: 8,
                             targetModules: loraTargetNames), seed: 3)
        XCTAssertEqual(lora.adapters.count, 7 * 2)
        XCTAssertTrue(lora.adapters.values.allSatisfy { $0.b.scalars.allSatisfy { $0 == 0 } })
        XCTAssertTrue(lora.adapters.values.contains { $0.a.scalars.contains { $0 != 0 } })
        // peft's bound for A: 1/√in (kaiming-uniform, a = √5).
        let a = lora.adapters["model.layers.0.mlp.down_proj"]!.a
        XCTAssertLessThanOrEqual(a.scalars.map(abs).max()!, 1 / Float(160).squareRoot())
        let with = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        XCTAssertEqual(with.scalars, base.scalars)
    }

    func testPeftAdapterLoadsWithSameLogits() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let lora = try LoRAModel.load(directory: adapterURL, base: model)
        XCTAssertEqual(lora.configuration.rank, 4)
        XCTAssertEqual(lora.configuration.alpha, 8)
        XCTAssertEqual(Set(lora.configuration.targetModules), ["q_proj", "v_proj", "down_proj"])
        let logits = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        let ref = try expected().tensor(named: "lora_logits_padded")
        let e = relativeError(logits.scalars, ref.scalars, keep: keepUnmasked(c.mask, 128))
        print("peft adapter logits: max relative error \(e)")
        XCTAssertLessThan(e, 1e-4)
    }

    /// The fixture adapter on `model`, and the case's loss back-propagated from its input
    /// embeddings (a leaf that requires grad, as in the fixture script).
    func backpropagateLoss(_ model: LlamaModel, _ c: Case) throws -> (lora: LoRAModel, embeds: Tensor, loss: Tensor) {
        let lora = try LoRAModel.load(directory: adapterURL, base: model)
        let embeds = model.embed(c.ids).copy()
        embeds.requiresGrad = true
        let logits = model(.embeddings(embeds), attentionMask: c.mask, positions: c.positions, training: true)
        let loss = Tensor.crossEntropy(logits.reshaped([-1, 128]), targets: c.labels.flatMap { $0 })
        loss.backward()
        return (lora, embeds, loss)
    }

    func testGradientsMatchPeft() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let (lora, embeds, loss) = try backpropagateLoss(model, c)
        let exp = try expected()
        XCTAssertEqual(loss.item, try exp.tensor(named: "loss").scalars[0], accuracy: 1e-5)
        var worst: Float = 0
        for (name, p) in lora.peftNamedParameters {
            let ref = try exp.tensor(named: "grad." + name)
            let e = relativeError(p.grad!.scalars, ref.scalars)
            worst = max(worst, e)
            XCTAssertLessThan(e, 1e-3, name)
        }
        let eEmb = relativeError(embeds.grad!.scalars, try exp.tensor(named: "grad.inputs_embeds").scalars)
        XCTAssertLessThan(eEmb, 1e-3, "input embedding gradient")
        print("LoRA gradients: worst relative error \(worst); input embeddings \(eEmb)")
        // The frozen base collects nothing.
        XCTAssertTrue(model.weightTensors.values.allSatisfy { $0.grad == nil && !$0.requiresGrad })
    }

    /// Recomputing each layer's activations in the backward pass (gradient checkpointing) gives
    /// the gradients of the ordinary tape.
    func testRecomputedActivationsGiveTheSameGradients() throws {
        let c = try testCase()
        func gradients(recompute: Bool) throws -> (loss: Float, embeds: [Float], lora: [String: [Float]]) {
            let model = try LlamaModel.load(directory: baseURL)
            model.recomputesActivations = recompute
            let (lora, embeds, loss) = try backpropagateLoss(model, c)
            return (loss.item, embeds.grad!.scalars, lora.peftNamedParameters.mapValues { $0.grad!.scalars })
        }
        let plain = try gradients(recompute: false), again = try gradients(recompute: true)
        XCTAssertEqual(again.loss, plain.loss)
        XCTAssertLessThan(relativeError(again.embeds, plain.embeds), 1e-6)
        XCTAssertEqual(Set(again.lora.keys), Set(plain.lora.keys))
        for (name, g) in plain.lora { XCTAssertLessThan(relativeError(again.lora[name]!, g), 1e-6, name) }
    }

    func testMergedEqualsUnmerged() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let baseLogits = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        let w0 = model.layers[1].attention.qProj.weight.tensor.scalars
        let lora = try LoRAModel.load(directory: adapterURL, base: model)
        let unmerged = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        lora.merge()
        XCTAssertNil(model.layers[0].attention.qProj.adapter)
        let merged = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        XCTAssertLessThan(relativeError(merged.scalars, unmerged.scalars), 1e-5)
        lora.unmerge()
        assertClose(model.layers[1].attention.qProj.weight.tensor.scalars, w0, rtol: 1e-5, atol: 1e-6)
        let again = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        XCTAssertLessThan(relativeError(again.scalars, unmerged.scalars), 1e-5)
        lora.detach()
        let detached = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask) }
        XCTAssertLessThan(relativeError(detached.scalars, baseLogits.scalars), 1e-5)
    }

    /// Saves an adapter in peft's layout; it loads back here, and the same folder (with the
    /// inputs and our logits) is what `Scripts/make_llama_fixtures.py --check-adapter` checks in peft.
    func testSaveUsesPeftNamesAndRoundTrips() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let lora = LoRAModel(base: model, configuration: try LoRAConfiguration(rank: 2, alpha: 6,
                             targetModules: ["q_proj", "k_proj", "o_proj", "up_proj"]), seed: 11)
        var rng = SeededRNG(seed: 5)
        for p in lora.parameters { for i in 0..<p.count { p.pointer[i] = 0.2 * rng.nextNormal() } }
        let logits = withNoGrad { model(.tokens(c.ids), attentionMask: c.mask, positions: c.positions) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-peft-roundtrip")
        try? FileManager.default.removeItem(at: dir)
        try lora.save(to: dir, baseModelPath: baseURL.path)

        let file = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("adapter_model.safetensors"))
        XCTAssertTrue(file.tensorNames.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"))
        XCTAssertTrue(file.tensorNames.contains("base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"))
        XCTAssertEqual(file.tensorNames.count, 2 * 4 * 2)

        // Inputs, our logits and the base path for the Python check.
        func floats(_ rows: [[Int]]) -> Tensor { Tensor(rows.flatMap { $0.map(Float.init) }, shape: [rows.count, rows[0].count]) }
        try SafeTensorsWriter.write(["input_ids": floats(c.ids), "attention_mask": floats(c.mask.map { $0.map { $0 ? 1 : 0 } }),
                                     "position_ids": floats(c.positions), "logits": logits],
                                    to: dir.appendingPathComponent("tmf_check.safetensors"))
        try JSONSerialization.data(withJSONObject: ["base": baseURL.path]).write(to: dir.appendingPathComponent("tmf_check.json"))

        lora.detach()
        let fresh = try LlamaModel.load(directory: baseURL)
        let loaded = try LoRAModel.load(directory: dir, base: fresh)
        XCTAssertEqual(loaded.configuration.targetModules.sorted(), ["k_proj", "o_proj", "q_proj", "up_proj"])
        XCTAssertEqual(loaded.configuration.scaling, 3)
        let again = withNoGrad { fresh(.tokens(c.ids), attentionMask: c.mask, positions: c.positions) }
        XCTAssertEqual(again.scalars, logits.scalars)
    }

    func testTrainingStepLowersLoss() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let c = try testCase()
        let lora = LoRAModel(base: model, configuration: try LoRAConfiguration(rank: 4, alpha: 8, dropout: 0.1), seed: 1)
        let adam = Adam(parameters: lora.parameters, learningRate: 1e-2)
        var losses: [Float] = []
        for _ in 0..<5 {
            adam.zeroGrad()
            let logits = model(.tokens(c.ids), attentionMask: c.mask, training: true)
            let loss = Tensor.crossEntropy(logits.reshaped([-1, 128]), targets: c.labels.flatMap { $0 })
            loss.backward()
            adam.step()
            losses.append(loss.item)
        }
        XCTAssertLessThan(losses.last!, losses.first!)
    }

    func testAdapterErrors() throws {
        let model = try LlamaModel.load(directory: baseURL)
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-lora-errors-\(getpid())")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        XCTAssertThrowsError(try LoRAModel.load(directory: tmp, base: model)) { e in
            guard case LoRAError.missingFile = e else { return XCTFail("\(e)") }
        }
        let config = tmp.appendingPathComponent("adapter_config.json")
        try #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "lm_head"]}"#
            .write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LoRAModel.load(directory: tmp, base: model)) { e in
            guard case let LoRAError.invalidConfig(_, key, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "target_modules")
        }
        try #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "use_dora": true}"#
            .write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LoRAModel.load(directory: tmp, base: model)) { e in
            guard case let LoRAError.invalidConfig(_, key, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "use_dora")
        }
        // A config whose rank disagrees with the stored tensors: one strict-loading error, and
        // the model is left without adapters.
        try FileManager.default.copyItem(at: adapterURL.appendingPathComponent("adapter_model.safetensors"),
                                         to: tmp.appendingPathComponent("adapter_model.safetensors"))
        try #"{"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}"#
            .write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LoRAModel.load(directory: tmp, base: model)) { e in
            guard case let CheckpointError.keyMismatch(m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(m.wrongShape.count, 12)
        }
        XCTAssertNil(model.layers[0].attention.qProj.adapter)
    }
}
