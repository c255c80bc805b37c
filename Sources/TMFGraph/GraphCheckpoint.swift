import Foundation
import TMFCheckpoint
import TMFTensor

/// `graph.safetensors`: MBHT's weights under the reference's module names, plus the exported
/// embeddings the fusion stage reads, and the configuration in the metadata.
///
/// Tensors:
/// - every parameter (`item_embedding.weight` [N + 2, d], `trm_encoder.layer.0...`, ...);
/// - `v_graph.item` [numItems, d]: item embeddings v_graph^i (row i = item i);
/// - `v_graph.behavior` [numBehaviors, d]: behavior-type embeddings v_graph^b (row b = behavior b).
///
/// Metadata: `format` = `tmf-mbht`, `mbht.configuration` (JSON, reference key names),
/// `mbht.fingerprint` (configuration + caller's data fingerprint), `mbht.data_fingerprint`.
public enum MBHTCheckpoint {
    /// The usual file name inside a model folder.
    public static let fileName = "graph.safetensors"
    /// Key of the exported item embeddings.
    public static let itemEmbeddingsKey = "v_graph.item"
    /// Key of the exported behavior embeddings.
    public static let behaviorEmbeddingsKey = "v_graph.behavior"

    /// The fingerprint stored in a checkpoint, or nil when the file is missing or not an MBHT
    /// checkpoint. Compare with `configuration.fingerprint(extra: dataFingerprint)` to decide
    /// whether the graph stage can be skipped.
    public static func storedFingerprint(at url: URL) -> String? {
        guard let file = try? SafeTensorsFile(contentsOf: url), file.metadata["format"] == "tmf-mbht" else { return nil }
        return file.metadata["mbht.fingerprint"]
    }

    /// Reads only the exported embeddings: (v_graph^i [numItems, d], v_graph^b [numBehaviors, d]).
    /// - Throws: `CheckpointError` for unreadable files, `GraphError.invalidCheckpoint` when the
    ///   tensors are absent.
    public static func loadEmbeddings(from url: URL) throws -> (items: Tensor, behaviors: Tensor) {
        let file = try SafeTensorsFile(contentsOf: url)
        guard file.contains(itemEmbeddingsKey), file.contains(behaviorEmbeddingsKey) else {
            throw GraphError.invalidCheckpoint(path: url.path, reason: "it has no \(itemEmbeddingsKey) / \(behaviorEmbeddingsKey) tensors")
        }
        return (try file.tensor(named: itemEmbeddingsKey), try file.tensor(named: behaviorEmbeddingsKey))
    }
}

extension MBHTModel {
    /// Writes `graph.safetensors` atomically (temporary file + rename).
    /// - Parameter dataFingerprint: the caller's fingerprint of the training data, folded into
    ///   the stored fingerprint.
    /// - Throws: `CheckpointError.writeFailed` and the writer's errors.
    public func save(to url: URL, dataFingerprint: String = "") throws {
        var writer = SafeTensorsWriter(metadata: [
            ("format", "tmf-mbht"),
            ("mbht.configuration", configuration.canonicalJSON()),
            ("mbht.fingerprint", configuration.fingerprint(extra: dataFingerprint)),
            ("mbht.data_fingerprint", dataFingerprint),
        ])
        for (name, t) in namedParameters { writer.add(name, t) }
        writer.add(MBHTCheckpoint.itemEmbeddingsKey, itemEmbeddings())
        writer.add(MBHTCheckpoint.behaviorEmbeddingsKey, behaviorEmbeddings())
        try writer.write(to: url)
    }

    /// Loads a model saved by `save(to:)`: the configuration from the metadata, every weight
    /// strictly (missing, unexpected or wrongly shaped keys are all reported together).
    /// - Throws: `GraphError.invalidCheckpoint` (not an MBHT file, bad configuration),
    ///   `CheckpointError` (unreadable file, key mismatch).
    public static func load(from url: URL) throws -> MBHTModel {
        let file = try SafeTensorsFile(contentsOf: url)
        guard file.metadata["format"] == "tmf-mbht", let json = file.metadata["mbht.configuration"] else {
            throw GraphError.invalidCheckpoint(path: url.path, reason: "it is not an MBHT checkpoint (no tmf-mbht metadata)")
        }
        let configuration: MBHTConfiguration
        do {
            configuration = try JSONDecoder().decode(MBHTConfiguration.self, from: Data(json.utf8))
        } catch {
            throw GraphError.invalidCheckpoint(path: url.path, reason: "its configuration does not decode: \(error.localizedDescription)")
        }
        let model = try MBHTModel(configuration: configuration)
        var params: [String: Tensor] = [:]
        for (name, t) in model.namedParameters { params[name] = t }
        try loadStrict(params, from: file, allowUnexpected: [.prefix("v_graph.")])
        return model
    }
}
