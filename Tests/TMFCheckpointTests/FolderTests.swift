import Foundation
import XCTest
import TMFCheckpoint
import TMFTensor

/// Hugging Face model folders: single file and sharded with an index.
final class FolderTests: XCTestCase {
    struct Expected: Decodable {
        var shape: [Int]
        var expected_bits: [UInt32]
    }

    func expected() throws -> [String: Expected] {
        let data = try Data(contentsOf: safetensorsFixtures.appendingPathComponent("folder_expected.json"))
        return try JSONDecoder().decode([String: Expected].self, from: data)
    }

    func checkLoads(_ folder: URL) throws -> CheckpointFolder {
        let checkpoint = try CheckpointFolder(directory: folder)
        let want = try expected()
        XCTAssertEqual(Set(checkpoint.tensorNames), Set(want.keys))
        for (name, e) in want {
            let t = try checkpoint.tensor(named: name)
            XCTAssertEqual(t.shape, e.shape, name)
            XCTAssertEqual(bits(t), e.expected_bits, name)
        }
        return checkpoint
    }

    func testSingleFileFolder() throws {
        let c = try checkLoads(safetensorsFixtures.appendingPathComponent("single"))
        XCTAssertNil(c.indexURL)
        XCTAssertEqual(c.files.count, 1)
    }

    func testShardedFolder() throws {
        let c = try checkLoads(safetensorsFixtures.appendingPathComponent("sharded"))
        XCTAssertNotNil(c.indexURL)
        XCTAssertEqual(c.files.count, 2)
        XCTAssertEqual(try c.file(containing: "model.norm.weight").url.lastPathComponent,
                       "model-00002-of-00002.safetensors")
        XCTAssertEqual(try c.info(named: "model.layers.0.mlp.up_proj.weight").dtype, .bf16)
        XCTAssertEqual(try c.bf16Bits(named: "model.layers.0.mlp.up_proj.weight").count, 24)
        assertThrowsCheckpointError("tensorNotFound") { try c.tensor(named: "nope") }
    }

    /// A copy of the sharded fixture in a temporary folder.
    func shardedCopy() throws -> URL {
        let dir = try makeTemporaryDirectory(self).appendingPathComponent("model")
        try FileManager.default.copyItem(at: safetensorsFixtures.appendingPathComponent("sharded"), to: dir)
        return dir
    }

    func testMissingShard() throws {
        let dir = try shardedCopy()
        try FileManager.default.removeItem(at: dir.appendingPathComponent("model-00002-of-00002.safetensors"))
        let e = assertThrowsCheckpointError("missingShard") { try CheckpointFolder(directory: dir) }
        XCTAssertTrue(e?.errorDescription?.contains("model-00002-of-00002.safetensors") ?? false)
    }

    func testIndexPointingAtTensorNotInShard() throws {
        let dir = try shardedCopy()
        let index = dir.appendingPathComponent("model.safetensors.index.json")
        let text = try String(contentsOf: index, encoding: .utf8)
            .replacingOccurrences(of: "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"",
                                  with: "\"lm_head.weight\": \"model-00001-of-00002.safetensors\"")
        try text.write(to: index, atomically: true, encoding: .utf8)
        let e = assertThrowsCheckpointError("tensorMissingFromShard") { try CheckpointFolder(directory: dir) }
        XCTAssertTrue(e?.errorDescription?.contains("lm_head.weight") ?? false)
    }

    func testFolderWithoutCheckpoint() throws {
        let dir = try makeTemporaryDirectory(self)
        assertThrowsCheckpointError("noCheckpointInFolder") { try CheckpointFolder(directory: dir) }
    }

    func testInvalidIndex() throws {
        let dir = try makeTemporaryDirectory(self)
        let index = dir.appendingPathComponent("model.safetensors.index.json")
        for text in ["not json", "{\"metadata\": {}}", "{\"weight_map\": {\"a\": 3}}",
                     "{\"weight_map\": {\"a\": \"../../etc/passwd\"}}"] {
            try text.write(to: index, atomically: true, encoding: .utf8)
            assertThrowsCheckpointError("invalidIndex") { try CheckpointFolder(directory: dir) }
        }
    }
}
