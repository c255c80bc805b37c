import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// The Swift writer produces the bytes Python's `safetensors.torch.save_file` writes.
final class WriterTests: XCTestCase {
    /// Builds the fixture again from the float32 values torch converted and compares bytes.
    func checkByteExact(_ name: String) throws {
        let expected = try ExpectedFile.load(name)
        let original = Array(try Data(contentsOf: safetensorsFixtures.appendingPathComponent(expected.file)))
        var writer = SafeTensorsWriter(metadata: expected.metadataEntries)
        for (key, entry) in expected.tensors {
            let dtype = try XCTUnwrap(SafeTensorsDType(rawValue: entry.dtype))
            writer.add(key, tensor(bits: try XCTUnwrap(entry.source_bits), shape: entry.shape), as: dtype)
        }
        let bytes = try writer.serialized()
        XCTAssertEqual(bytes.count, original.count, name)
        XCTAssertTrue(bytes == original, "\(name): Swift bytes differ from Python's at byte "
                      + "\(zip(bytes, original).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1)")

        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent(expected.file)
        try writer.write(to: url)
        XCTAssertTrue(Array(try Data(contentsOf: url)) == original, "\(name): written file differs")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [expected.file])
    }

    func testF32ByteExact() throws { try checkByteExact("f32") }
    func testF16ByteExactIncludingRounding() throws { try checkByteExact("f16") }
    func testBF16ByteExactIncludingRounding() throws { try checkByteExact("bf16") }

    func testReadThenWriteIsByteIdentical() throws {
        let files = ["f32", "f16", "bf16", "f64", "mixed"].map { "\($0).safetensors" }
            + ["single/model.safetensors", "sharded/model-00001-of-00002.safetensors",
               "sharded/model-00002-of-00002.safetensors"]
        for name in files {
            let url = safetensorsFixtures.appendingPathComponent(name)
            let original = Array(try Data(contentsOf: url))
            let file = try SafeTensorsFile(contentsOf: url)
            var writer = SafeTensorsWriter()
            try writer.addAll(from: file)
            XCTAssertTrue(try writer.serialized() == original, name)
        }
    }

    func testFloatTensorsReadThenWrittenAsFloatAreByteIdentical() throws {
        // Through Float32 and back: F16/BF16 → F32 → F16/BF16 is exact.
        for name in ["f32", "f16", "bf16"] {
            let url = safetensorsFixtures.appendingPathComponent("\(name).safetensors")
            let file = try SafeTensorsFile(contentsOf: url)
            var writer = SafeTensorsWriter(metadata: file.metadataEntries)
            for info in file.infos { writer.add(info.name, try file.tensor(named: info.name), as: info.dtype) }
            XCTAssertTrue(try writer.serialized() == Array(try Data(contentsOf: url)), name)
        }
    }

    func testHeaderLayoutWithoutAndWithEmptyMetadata() throws {
        var w = SafeTensorsWriter()
        XCTAssertEqual(try w.serialized(), [8, 0, 0, 0, 0, 0, 0, 0] + Array("{}      ".utf8))
        w.metadata = []
        let bytes = try w.serialized()
        XCTAssertEqual(String(decoding: bytes[8...], as: UTF8.self), "{\"__metadata__\":{}}     ")
        w.add("x", Tensor([1, 2], shape: [2]), as: .bf16)
        w.add("y", Tensor([1], shape: [1]))
        let text = String(decoding: try w.serialized().dropFirst(8), as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("{\"__metadata__\":{},\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                     + "\"x\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]}}"), text)
    }

    func testInvalidInputLeavesNoFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent("out.safetensors")
        var w = SafeTensorsWriter()
        w.add("a", Tensor([1], shape: [1]))
        w.add("a", Tensor([2], shape: [1]))
        assertThrowsCheckpointError("invalidTensorForWriting") { try w.write(to: url) }

        var w2 = SafeTensorsWriter()
        w2.add("a", Tensor([1], shape: [1]), as: .i32)
        assertThrowsCheckpointError("invalidTensorForWriting") { try w2.write(to: url) }

        var w3 = SafeTensorsWriter()
        w3.addRaw("r", dtype: .i64, shape: [2], bytes: [1, 2, 3])
        assertThrowsCheckpointError("invalidTensorForWriting") { try w3.write(to: url) }

        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])
    }

    func testFailedRenameRemovesTheTemporary() throws {
        let dir = try makeTemporaryDirectory(self)
        // The target is a non-empty directory: the data is written, the rename fails.
        let target = dir.appendingPathComponent("model.safetensors")
        try FileManager.default.createDirectory(at: target.appendingPathComponent("keep"), withIntermediateDirectories: true)
        var w = SafeTensorsWriter()
        w.add("a", Tensor(repeating: 1, shape: [1000]))
        assertThrowsCheckpointError("writeFailed") { try w.write(to: target) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["model.safetensors"])

        // A missing folder fails before anything is created.
        assertThrowsCheckpointError("writeFailed") {
            try w.write(to: dir.appendingPathComponent("no/such/dir/x.safetensors"))
        }
    }

    func testStaticWriteConvenience() throws {
        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent("adapter_model.safetensors")
        try SafeTensorsWriter.write(["b": Tensor([1, 2], shape: [2]), "a": Tensor([3], shape: [1])],
                                    as: .bf16, metadata: [("format", "pt")], to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.tensorNames, ["a", "b"])
        XCTAssertEqual(try file.tensor(named: "b").scalars, [1, 2])
        XCTAssertEqual(try file.info(named: "a").dtype, .bf16)
    }

    func testOverwriteReplacesTheFile() throws {
        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent("w.safetensors")
        var w = SafeTensorsWriter()
        w.add("a", Tensor([1, 2, 3], shape: [3]))
        try w.write(to: url)
        var w2 = SafeTensorsWriter(metadata: [("format", "pt")])
        w2.add("b", Tensor([4, 5], shape: [1, 2]), as: .f16)
        try w2.write(to: url)
        let file = try SafeTensorsFile(contentsOf: url)
        XCTAssertEqual(file.tensorNames, ["b"])
        XCTAssertEqual(try file.tensor(named: "b").scalars, [4, 5])
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["w.safetensors"])
    }
}
