import Foundation
import TMFCheckpoint
import TMFLlama
import TMFTensor
import TMFTestSupport
import XCTest

/// One clear typed error per broken model folder.
final class LlamaErrorTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-llama-errors-\(getpid())-\(name.hashValue)")
        try? FileManager.default.removeItem(at: tmp)
        try FileManager.default.createDirectory(at: tmp.deletingLastPathComponent(), withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    /// A copy of fixture `name` in `tmp`, with config.json keys changed (nil removes).
    func copy(_ name: String, config changes: [String: Any?] = [:]) throws -> URL {
        try FileManager.default.copyItem(at: LlamaFixtures.folder(name), to: tmp)
        if !changes.isEmpty {
            let url = tmp.appendingPathComponent("config.json")
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            for (k, v) in changes { json[k] = v }
            try JSONSerialization.data(withJSONObject: json).write(to: url)
        }
        return tmp
    }

    func assertInvalidConfig(_ changes: [String: Any?], key: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let dir = try copy("tiny-tied", config: changes)
        XCTAssertThrowsError(try LlamaModel.load(directory: dir), file: file, line: line) { e in
            guard case let LlamaError.invalidConfig(path, k, _) = e else { return XCTFail("\(e)", file: file, line: line) }
            XCTAssertEqual(k, key, file: file, line: line)
            XCTAssertTrue(path.hasSuffix("config.json"), file: file, line: line)
            XCTAssertTrue(e.localizedDescription.contains(key), file: file, line: line)
        }
        try FileManager.default.removeItem(at: dir)
    }

    func testMissingConfig() throws {
        let dir = try copy("tiny-tied")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try LlamaModel.load(directory: dir)) { e in
            XCTAssertEqual(e as? LlamaError, .missingConfig(path: dir.path))
        }
    }

    func testUnreadableConfig() throws {
        let dir = try copy("tiny-tied")
        try "{ not json".write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try LlamaModel.load(directory: dir)) { e in
            guard case LlamaError.unreadableConfig = e else { return XCTFail("\(e)") }
        }
    }

    func testInconsistentConfigNamesTheKey() throws {
        try assertInvalidConfig(["hidden_size": nil], key: "hidden_size")
        try assertInvalidConfig(["num_key_value_heads": 3], key: "num_key_value_heads")
        try assertInvalidConfig(["rms_norm_eps": -1.0], key: "rms_norm_eps")
        try assertInvalidConfig(["num_hidden_layers": "three"], key: "num_hidden_layers")
        try assertInvalidConfig(["vocab_size": 0], key: "vocab_size")
        try assertInvalidConfig(["hidden_act": "gelu"], key: "hidden_act")
        try assertInvalidConfig(["rope_parameters": ["rope_type": "llama3", "rope_theta": 10000.0]], key: "rope_parameters.rope_type")
        try assertInvalidConfig(["eos_token_id": 999], key: "eos_token_id")
    }

    func testRopeThetaReadFromEitherPlace() throws {
        XCTAssertEqual(try LlamaConfiguration.load(directory: LlamaFixtures.folder("tiny-tied")).ropeTheta, 20000)
        let dir = try copy("tiny-untied", config: ["rope_parameters": nil, "rope_theta": 1234.0])
        XCTAssertEqual(try LlamaConfiguration.load(directory: dir).ropeTheta, 1234)
        let c = try LlamaConfiguration.load(directory: LlamaFixtures.folder("tiny-untied"))
        XCTAssertEqual(c.kvHeads, 2)
        XCTAssertEqual(c.headDim, 16)
        XCTAssertEqual(c.rmsNormEps, 1e-5)
        XCTAssertFalse(c.tieWordEmbeddings)
        // Encodes to Hugging Face keys and decodes back.
        let again = try JSONDecoder().decode(LlamaConfiguration.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(again, c)
    }

    func testMissingShard() throws {
        let dir = try copy("tiny-untied")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00003.safetensors"))
        XCTAssertThrowsError(try LlamaModel.load(directory: dir)) { e in
            guard case let CheckpointError.missingShard(_, shard, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(shard, "model-00002-of-00003.safetensors")
        }
    }

    func testMissingCheckpoint() throws {
        let dir = try copy("tiny-tied")
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model.safetensors"))
        XCTAssertThrowsError(try LlamaModel.load(directory: dir)) { e in
            guard case CheckpointError.noCheckpointInFolder = e else { return XCTFail("\(e)") }
        }
    }

    func testWrongShapesListedInOneError() throws {
        let dir = try copy("tiny-tied", config: ["intermediate_size": 96])
        XCTAssertThrowsError(try LlamaModel.load(directory: dir)) { e in
            guard case let CheckpointError.keyMismatch(m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(m.wrongShape.count, 3 * 3)  // gate, up, down in each of 3 layers
            XCTAssertTrue(m.missing.isEmpty && m.unexpected.isEmpty)
        }
        // Untied config on a tied checkpoint: lm_head.weight is missing.
        try FileManager.default.removeItem(at: dir)
        let dir2 = try copy("tiny-tied", config: ["tie_word_embeddings": false])
        XCTAssertThrowsError(try LlamaModel.load(directory: dir2)) { e in
            guard case let CheckpointError.keyMismatch(m) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(m.missing, ["lm_head.weight"])
        }
    }

    func testTiedHeadSharesEmbedding() throws {
        let tied = try LlamaFixtures.model("tiny-tied")
        XCTAssertTrue(tied.lmHead.weight.tensor === tied.embedTokens.weight.tensor)
        XCTAssertNil(tied.weightTensors["lm_head.weight"])
        let untied = try LlamaFixtures.model("tiny-untied")
        XCTAssertFalse(untied.lmHead.weight.tensor === untied.embedTokens.weight.tensor)
    }
}

final class LlamaWeightNameTests: XCTestCase {
    /// The name table used for loading covers exactly the model's weights, with their shapes.
    func testExpectedWeightsMatchModelWeights() throws {
        for name in ["tiny-tied", "tiny-untied"] {
            let c = try LlamaConfiguration.load(directory: LlamaFixtures.folder(name))
            let model = LlamaModel(configuration: c)
            XCTAssertEqual(LlamaModel.expectedWeights(c), model.weightTensors.mapValues(\.shape))
        }
    }
}
