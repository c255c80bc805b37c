import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// Strict loading reports every key problem at once and fills parameters in place.
final class StrictLoadingTests: XCTestCase {
    /// A checkpoint with keys under "model." in F32, F16 and BF16, plus an extra "rotary.inv_freq".
    func makeCheckpoint() throws -> SafeTensorsFile {
        let dir = try makeTemporaryDirectory(self)
        var w = SafeTensorsWriter(metadata: [("format", "pt")])
        w.add("model.embed.weight", Tensor([1, 2, 3, 4, 5, 6], shape: [3, 2]))
        w.add("model.norm.weight", Tensor([0.5, -1.5], shape: [2]), as: .f16)
        w.add("model.proj.weight", Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), as: .bf16)
        w.add("rotary.inv_freq", Tensor([1], shape: [1]))
        let url = dir.appendingPathComponent("model.safetensors")
        try w.write(to: url)
        return try SafeTensorsFile(contentsOf: url)
    }

    func testEveryProblemIsListedInOneError() throws {
        let source = try makeCheckpoint()
        let params: [String: Tensor] = [
            "embed.weight": Tensor(zeros: [3, 2]),
            "norm.weight": Tensor(zeros: [2]),
            "proj.weight": Tensor(zeros: [3, 2]),  // wrong shape: checkpoint has [2, 3]
            "head.weight": Tensor(zeros: [2, 2]),  // missing
            "bias": Tensor(zeros: [1]),            // missing
        ]
        let error = assertThrowsCheckpointError("keyMismatch") {
            try loadStrict(params, from: source, renames: [.prefix("model.", "")])
        }
        guard case let .keyMismatch(m)? = error else { return }
        XCTAssertEqual(m.missing, ["bias", "head.weight"])
        XCTAssertEqual(m.unexpected, ["rotary.inv_freq"])
        XCTAssertEqual(m.wrongShape, [ShapeMismatch(key: "proj.weight", checkpointShape: [2, 3], modelShape: [3, 2])])
        let message = error?.errorDescription ?? ""
        for word in ["bias", "head.weight", "rotary.inv_freq", "proj.weight", "[2, 3]", "model.safetensors"] {
            XCTAssertTrue(message.contains(word), "\(word) not in: \(message)")
        }
        // Nothing was copied.
        XCTAssertEqual(params["embed.weight"]!.scalars, [0, 0, 0, 0, 0, 0])
    }

    func testCleanLoadFillsValuesInPlace() throws {
        let source = try makeCheckpoint()
        let params: [String: Tensor] = [
            "embed.weight": Tensor(zeros: [3, 2]),
            "norm.weight": Tensor(zeros: [2]),
            "proj.weight": Tensor(zeros: [2, 3]),
        ]
        let storages = params.mapValues { $0.pointer }
        let report = try loadStrict(params, from: source, renames: [.prefix("model.", "")],
                                    allowUnexpected: [.prefix("rotary.")])
        XCTAssertEqual(report.loaded, ["embed.weight", "norm.weight", "proj.weight"])
        XCTAssertEqual(report.ignored, ["rotary.inv_freq"])
        XCTAssertEqual(params["embed.weight"]!.scalars, [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(params["norm.weight"]!.scalars, [0.5, -1.5])
        XCTAssertEqual(params["proj.weight"]!.scalars, [1, 2, 3, 4, 5, 6])
        for (k, p) in storages { XCTAssertEqual(params[k]!.pointer, p, "\(k) storage replaced") }
    }

    func testRenameRulesApplyInOrderAndDuplicatesAreReported() throws {
        let rules: [KeyRule] = [.prefix("model.", ""), .exact("embed.weight", "tok_embeddings"),
                                .prefix("tok_", "token_")]
        XCTAssertEqual(KeyRule.apply(rules, to: "model.embed.weight"), "token_embeddings")
        XCTAssertEqual(KeyRule.apply(rules, to: "model.embed.weight.x"), "embed.weight.x")
        XCTAssertEqual(KeyRule.apply(rules, to: "other"), "other")

        let source = try makeCheckpoint()
        let params: [String: Tensor] = ["w": Tensor(zeros: [2])]
        let error = assertThrowsCheckpointError("keyMismatch") {
            try loadStrict(params, from: source,
                           renames: [.exact("model.norm.weight", "w"), .exact("rotary.inv_freq", "w")],
                           allowUnexpected: [.prefix("model.")])
        }
        guard case let .keyMismatch(m)? = error else { return }
        XCTAssertEqual(m.duplicates, ["w"])
        XCTAssertEqual(m.missing, [])
    }

    func testLongListsAreAllInTheErrorValue() throws {
        let source = try makeCheckpoint()
        var params: [String: Tensor] = [:]
        for i in 0..<60 { params["layer.\(i)"] = Tensor(zeros: [1]) }
        let error = assertThrowsCheckpointError("keyMismatch") { try loadStrict(params, from: source) }
        guard case let .keyMismatch(m)? = error else { return }
        XCTAssertEqual(m.missing.count, 60)
        XCTAssertEqual(m.unexpected.count, 4)
        XCTAssertTrue(error?.errorDescription?.contains("and 10 more") ?? false)
    }

    func testLoadsAcrossShards() throws {
        let folder = try CheckpointFolder(directory: safetensorsFixtures.appendingPathComponent("sharded"))
        var params: [String: Tensor] = [:]
        for name in folder.tensorNames { params[name] = Tensor(zeros: try folder.info(named: name).shape) }
        try loadStrict(params, from: folder)
        for name in folder.tensorNames {
            XCTAssertEqual(bits(params[name]!), bits(try folder.tensor(named: name)), name)
        }
    }

    func testNonFloatTensorIsRefusedBeforeCopying() throws {
        let dir = try makeTemporaryDirectory(self)
        var w = SafeTensorsWriter()
        w.add("a", Tensor([1, 2], shape: [2]))
        w.addRaw("ids", dtype: .i32, shape: [2], bytes: [1, 0, 0, 0, 2, 0, 0, 0])
        let url = dir.appendingPathComponent("x.safetensors")
        try w.write(to: url)
        let params = ["a": Tensor(zeros: [2]), "ids": Tensor(zeros: [2])]
        assertThrowsCheckpointError("cannotConvertToFloat32") {
            try loadStrict(params, from: try SafeTensorsFile(contentsOf: url))
        }
        XCTAssertEqual(params["a"]!.scalars, [0, 0])
    }
}
