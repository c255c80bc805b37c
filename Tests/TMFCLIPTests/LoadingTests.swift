import Foundation
import TMFCheckpoint
import TMFCLIP
import TMFTensor
import TMFTestSupport
import XCTest

final class LoadingTests: XCTestCase {
    /// Every model parameter is a key transformers wrote, and every key it wrote is a parameter,
    /// with the same shape: the name table covers the model exactly.
    func testParameterNamesCoverTransformersKeys() throws {
        for fixture in CLIPFixture.allCases {
            let file = try SafeTensorsFile(contentsOf: fixture.url.appendingPathComponent("model.safetensors"))
            let configuration = try CLIPConfiguration.load(contentsOf: fixture.url.appendingPathComponent("config.json"))
            let model = CLIPModel(configuration: configuration)
            let params = model.parameters
            XCTAssertEqual(Set(params.keys), Set(file.tensorNames), fixture.rawValue)
            for info in file.infos { XCTAssertEqual(params[info.name]?.shape, info.shape, info.name) }
            // The keys a checkpoint must hold, read off a meta model, are the same.
            XCTAssertEqual(CLIPModel.expectedWeights(configuration), params.mapValues(\.shape), fixture.rawValue)
        }
    }

    func testLoadedValuesAreTheCheckpoints() throws {
        let fixture = CLIPFixture.quickGELU
        let file = try SafeTensorsFile(contentsOf: fixture.url.appendingPathComponent("model.safetensors"))
        let params = try fixture.model().parameters
        for name in ["logit_scale", "vision_model.pre_layrnorm.bias", "text_model.encoder.layers.1.mlp.fc2.weight"] {
            XCTAssertEqual(params[name]!.scalars, try file.tensor(named: name).scalars, name)
        }
    }

    /// Writes the fixture's tensors, edited by `edit`, to a temporary folder with its config.
    func editedCheckpoint(_ edit: (inout [String: Tensor]) -> Void) throws -> URL {
        let src = CLIPFixture.quickGELU.url
        let file = try SafeTensorsFile(contentsOf: src.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames { tensors[name] = try file.tensor(named: name) }
        edit(&tensors)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-clip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(tensors, to: dir.appendingPathComponent("model.safetensors"))
        return dir
    }

    func testMissingAndWrongShapedKeysAreOneError() throws {
        let dir = try editedCheckpoint { t in
            t["text_projection.weight"] = nil
            t["vision_model.encoder.layers.0.mlp.fc1.bias"] = nil
            t["vision_model.embeddings.position_embedding.weight"] = Tensor(zeros: [16, 32])
            t["text_model.extra.weight"] = Tensor(zeros: [2])
        }
        XCTAssertThrowsError(try CLIPModel.load(directory: dir)) { error in
            guard case let CheckpointError.keyMismatch(m) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(m.missing, ["text_projection.weight", "vision_model.encoder.layers.0.mlp.fc1.bias"])
            XCTAssertEqual(m.unexpected, ["text_model.extra.weight"])
            XCTAssertEqual(m.wrongShape, [ShapeMismatch(key: "vision_model.embeddings.position_embedding.weight",
                                                        checkpointShape: [16, 32], modelShape: [17, 32])])
            let text = error.localizedDescription
            XCTAssertTrue(text.contains("2 missing") && text.contains("wrong shape"), text)
        }
    }

    /// Older transformers saved the `position_ids` buffers; they are ignored.
    func testLegacyPositionIDBuffersAreIgnored() throws {
        let dir = try editedCheckpoint { t in
            t["text_model.embeddings.position_ids"] = Tensor((0..<16).map(Float.init), shape: [1, 16])
            t["vision_model.embeddings.position_ids"] = Tensor((0..<17).map(Float.init), shape: [1, 17])
        }
        let model = try CLIPModel.load(directory: dir)
        let reference = try CLIPFixture.quickGELU.model()
        XCTAssertEqual(try model.textEmbeddings([[0, 5, 99]]).scalars, try reference.textEmbeddings([[0, 5, 99]]).scalars)
    }

    func testHalfPrecisionCheckpointLoads() throws {
        let src = CLIPFixture.quickGELU.url
        let file = try SafeTensorsFile(contentsOf: src.appendingPathComponent("model.safetensors"))
        var tensors: [String: Tensor] = [:]
        for name in file.tensorNames { tensors[name] = try file.tensor(named: name) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-clip-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"), to: dir.appendingPathComponent("config.json"))
        try SafeTensorsWriter.write(tensors, as: .bf16, to: dir.appendingPathComponent("model.safetensors"))
        let model = try CLIPModel.load(directory: dir)
        let reference = try CLIPFixture.quickGELU.model()
        let a = try model.textEmbeddings([[0, 5, 99]]), b = try reference.textEmbeddings([[0, 5, 99]])
        XCTAssertLessThan(maxRelativeError(a, b), 0.1)  // bf16 weights: close, not equal
        // Loaded as stored: the linear layers' matrices and the token table stay bf16, the rest
        // is Float32; the products equal the Float32 model on the same (widened) values.
        let weights = model.namedWeights()
        XCTAssertEqual(Set(weights.filter { $0.1.storageType == .bf16 }.map(\.0)),
                       Set(weights.filter { $0.1.shape.count == 2 && ($0.0.hasSuffix("proj.weight") || $0.0.contains("fc")
                           || $0.0.hasSuffix("token_embedding.weight") || $0.0.hasSuffix("projection.weight")) }.map(\.0)))
        // On a path that rounds activations to bf16 (AVX512-BF16, the automatic one where the CPU
        // has it), close; on one that widens the weights, equal up to summation order.
        let widened = try CLIPModel.load(directory: dir, dtype: .f32)
        XCTAssertTrue(widened.namedWeights().allSatisfy { $0.1.storageType == .f32 })
        var rng = SeededRNG(seed: 3)
        let s = model.configuration.vision.imageSize
        let pixels = Tensor.normal([2, 3, s, s], rng: &rng)
        let wideText = try widened.textEmbeddings([[0, 5, 99]]), wideImages = try widened.imageEmbeddings(pixels)
        if HalfMatMul.path(for: .bf16).roundsActivations {
            XCTAssertLessThan(maxRelativeError(a, wideText), 2e-2)
            XCTAssertLessThan(maxRelativeError(try model.imageEmbeddings(pixels), wideImages), 2e-2)
        }
        try withWideningHalfPath { path in
            XCTAssertLessThan(maxRelativeError(try model.textEmbeddings([[0, 5, 99]]), wideText), 1e-5, "\(path)")
            XCTAssertLessThan(maxRelativeError(try model.imageEmbeddings(pixels), wideImages), 1e-5, "\(path)")
        }
    }

    func testBadInputsThrow() throws {
        let model = try CLIPFixture.quickGELU.model()
        XCTAssertThrowsError(try model.imageEmbeddings(Tensor(zeros: [1, 3, 16, 16]))) { error in
            XCTAssertEqual(error as? CLIPError, .invalidPixels(expected: [1, 3, 32, 32], got: [1, 3, 16, 16]))
        }
        XCTAssertThrowsError(try model.textEmbeddings([])) { XCTAssertTrue($0 is CLIPError) }
        XCTAssertThrowsError(try model.textEmbeddings([[1, 2], [3]])) { XCTAssertTrue($0 is CLIPError) }
        XCTAssertThrowsError(try model.textEmbeddings([[1, 100]])) { error in
            XCTAssertTrue(error.localizedDescription.contains("id 100"), error.localizedDescription)
        }
        XCTAssertThrowsError(try model.textEmbeddings([Array(repeating: 3, count: 17)])) { error in
            XCTAssertTrue(error.localizedDescription.contains("max_position_embeddings"), error.localizedDescription)
        }
        XCTAssertThrowsError(try model.textEmbeddings([[1, 2]], attentionMask: [[1]])) { XCTAssertTrue($0 is CLIPError) }
    }
}
