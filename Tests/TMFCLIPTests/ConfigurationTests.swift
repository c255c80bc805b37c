import Foundation
import TMFCLIP
import XCTest

final class ConfigurationTests: XCTestCase {
    func decode(_ json: String) throws -> CLIPConfiguration {
        try CLIPConfiguration.decode(Data(json.utf8), file: "test/config.json")
    }

    func testFixtureConfigsDecode() throws {
        let c = try CLIPConfiguration.load(contentsOf: CLIPFixture.gelu.url.appendingPathComponent("config.json"))
        XCTAssertEqual(c.projectionDim, 16)
        XCTAssertEqual(c.text.hiddenAct, .gelu)
        XCTAssertEqual(c.text.eosTokenID, 119)
        XCTAssertEqual(c.text.layerNormEps, 1e-6)
        XCTAssertEqual(c.vision.imageSize, 48)
        XCTAssertEqual(c.vision.patchSize, 16)
        XCTAssertEqual(c.vision.attentionHeads, 3)
        XCTAssertEqual(c.vision.tokenCount, 10)
    }

    /// Absent keys take transformers' defaults (ViT-B/32).
    func testDefaultsAreTransformers() throws {
        let c = try decode(#"{"text_config": {}, "vision_config": {}}"#)
        XCTAssertEqual(c, CLIPConfiguration())
        XCTAssertEqual(c.text.vocabSize, 49408)
        XCTAssertEqual(c.text.maxPositionEmbeddings, 77)
        XCTAssertEqual(c.text.eosTokenID, 49407)
        XCTAssertEqual(c.vision.hiddenSize, 768)
        XCTAssertEqual(c.vision.imageSize, 224)
        XCTAssertEqual(c.vision.patchSize, 32)
        XCTAssertEqual(c.vision.hiddenAct, .quickGELU)
        XCTAssertEqual(c.projectionDim, 512)
        XCTAssertEqual(c.vision.tokenCount, 50)
    }

    func testRoundTrip() throws {
        let c = try CLIPConfiguration.load(contentsOf: CLIPFixture.quickGELU.url.appendingPathComponent("config.json"))
        XCTAssertEqual(try CLIPConfiguration.decode(JSONEncoder().encode(c)), c)
    }

    func testSquareListSizes() throws {
        let c = try decode(#"{"text_config": {}, "vision_config": {"image_size": [64, 64], "patch_size": [16, 16]}}"#)
        XCTAssertEqual(c.vision.imageSize, 64)
        XCTAssertEqual(c.vision.gridSize, 4)
    }

    func testMissingSectionIsNamed() {
        XCTAssertThrowsError(try decode(#"{"text_config": {}, "projection_dim": 8}"#)) { error in
            XCTAssertEqual(error as? CLIPError, .missingConfigKey(key: "vision_config", file: "test/config.json"))
            XCTAssertTrue(error.localizedDescription.contains("'vision_config'"))
        }
    }

    func testUnsupportedActivationIsNamed() {
        XCTAssertThrowsError(try decode(#"{"text_config": {"hidden_act": "relu"}, "vision_config": {}}"#)) { error in
            XCTAssertEqual(error as? CLIPError,
                           .unsupportedActivation(key: "text_config.hidden_act", value: "relu", file: "test/config.json"))
            XCTAssertTrue(error.localizedDescription.contains("quick_gelu"))
        }
    }

    func testBadValuesAreNamed() {
        let cases: [(String, String)] = [
            (#"{"text_config": {"hidden_size": 30, "num_attention_heads": 8}, "vision_config": {}}"#, "text_config.num_attention_heads"),
            (#"{"text_config": {}, "vision_config": {"patch_size": 0}}"#, "vision_config.patch_size"),
            (#"{"text_config": {}, "vision_config": {"image_size": [224, 160]}}"#, "vision_config.image_size"),
            (#"{"text_config": {}, "vision_config": {"hidden_size": "wide"}}"#, "vision_config.hidden_size"),
            (#"{"text_config": {"eos_token_id": [1, 2]}, "vision_config": {}}"#, "text_config.eos_token_id"),
            (#"{"text_config": {"layer_norm_eps": -1}, "vision_config": {}}"#, "text_config.layer_norm_eps"),
            (#"{"text_config": {}, "vision_config": {}, "projection_dim": 0}"#, "projection_dim"),
            (#"{"text_config": [], "vision_config": {}}"#, "text_config"),
            (#"{"model_type": "llama", "text_config": {}, "vision_config": {}}"#, "model_type"),
        ]
        for (json, key) in cases {
            XCTAssertThrowsError(try decode(json), key) { error in
                guard case let .invalidConfigValue(k, _, _, file)? = error as? CLIPError else {
                    return XCTFail("\(key): \(error)")
                }
                XCTAssertEqual(k, key)
                XCTAssertEqual(file, "test/config.json")
            }
        }
    }

    func testUnreadableConfig() {
        XCTAssertThrowsError(try decode("not json")) { error in
            guard case .cannotReadConfig? = error as? CLIPError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try CLIPConfiguration.load(contentsOf: URL(fileURLWithPath: "/nonexistent/config.json"))) { error in
            guard case .cannotReadConfig? = error as? CLIPError else { return XCTFail("\(error)") }
        }
    }
}
