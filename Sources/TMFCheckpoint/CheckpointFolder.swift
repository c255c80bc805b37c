import Foundation
import TMFTensor

/// A Hugging Face model folder's weights: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json` (`{"weight_map": {"tensor name": "shard file", ...}}`).
/// Tensors are looked up across shards by name; every shard is opened (mapped and validated)
/// up front.
public final class CheckpointFolder: TensorSource, @unchecked Sendable {
    /// The folder.
    public let url: URL
    /// The index file when the folder is sharded, else nil.
    public let indexURL: URL?
    /// The opened files: the single file, or the shards in order of first mention in the index.
    public let files: [SafeTensorsFile]
    /// Every tensor name: header order of the single file, or the index's `weight_map` order.
    public let tensorNames: [String]
    private let location: [String: Int]

    /// Opens the weights in `directory`. `model.safetensors` wins when both it and an index exist
    /// (as in transformers). In a sharded folder only tensors named in `weight_map` are visible.
    ///
    /// - Throws: `CheckpointError.noCheckpointInFolder` when neither file exists;
    ///   `.invalidIndex` for an unreadable index or a `weight_map` that is not an object of file
    ///   names; `.missingShard`; `.tensorMissingFromShard`; and any error of
    ///   `SafeTensorsFile.init(contentsOf:)` for a bad file.
    public init(directory: URL) throws {
        url = directory
        let fm = FileManager.default
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        if fm.fileExists(atPath: single.path) {
            let file = try SafeTensorsFile(contentsOf: single)
            indexURL = nil
            files = [file]
            tensorNames = file.tensorNames
            location = Dictionary(uniqueKeysWithValues: file.tensorNames.map { ($0, 0) })
            return
        }
        guard fm.fileExists(atPath: index.path) else {
            throw CheckpointError.noCheckpointInFolder(path: directory.path)
        }
        indexURL = index
        let weightMap = try Self.readWeightMap(index)
        var shardIndex: [String: Int] = [:]
        var files: [SafeTensorsFile] = []
        var location: [String: Int] = [:]
        for (tensor, shard) in weightMap {
            let fileIndex: Int
            if let i = shardIndex[shard] {
                fileIndex = i
            } else {
                let shardURL = directory.appendingPathComponent(shard)
                guard fm.fileExists(atPath: shardURL.path) else {
                    throw CheckpointError.missingShard(index: index.path, shard: shard, tensor: tensor)
                }
                files.append(try SafeTensorsFile(contentsOf: shardURL))
                fileIndex = files.count - 1
                shardIndex[shard] = fileIndex
            }
            guard files[fileIndex].contains(tensor) else {
                throw CheckpointError.tensorMissingFromShard(index: index.path, shard: shard, tensor: tensor)
            }
            location[tensor] = fileIndex
        }
        self.files = files
        self.location = location
        tensorNames = weightMap.map(\.0)
    }

    private static func readWeightMap(_ index: URL) throws -> [(String, String)] {
        let path = index.path
        let bytes: [UInt8]
        do {
            bytes = Array(try readSmallFile(index))
        } catch {
            throw CheckpointError.invalidIndex(path: path, reason: "cannot read it (\(error.localizedDescription))")
        }
        guard JSONReader.isValidUTF8(bytes) else {
            throw CheckpointError.invalidIndex(path: path, reason: "it is not valid UTF-8")
        }
        let root: JSONValue
        do {
            root = try JSONReader.parse(bytes)
        } catch {
            throw CheckpointError.invalidIndex(path: path, reason: "it is not valid JSON (\(error.message))")
        }
        guard case let .object(entries) = root,
              let map = entries.first(where: { $0.key == "weight_map" })?.value,
              case let .object(pairs) = map else {
            throw CheckpointError.invalidIndex(path: path, reason: "it has no \"weight_map\" object")
        }
        return try pairs.map { tensor, value in
            guard case let .string(shard) = value else {
                throw CheckpointError.invalidIndex(path: path, reason: "weight_map entry '\(tensor)' is \(value.kind), not a file name")
            }
            if shard.isEmpty || shard.hasPrefix("/") || shard.split(separator: "/").contains("..") {
                throw CheckpointError.invalidIndex(path: path, reason: "weight_map entry '\(tensor)' names '\(shard)', not a file inside the folder")
            }
            return (tensor, shard)
        }
    }

    /// The folder path, for messages.
    public var sourceDescription: String { url.path }

    /// The shard holding `name` (the folder when no file has it).
    public func sourceDescription(of name: String) -> String { (try? file(containing: name).url.path) ?? url.path }

    /// Whether some file of the folder provides `name`.
    public func contains(_ name: String) -> Bool { location[name] != nil }

    /// The file holding tensor `name`. Throws `CheckpointError.tensorNotFound`.
    public func file(containing name: String) throws -> SafeTensorsFile {
        guard let i = location[name] else { throw CheckpointError.tensorNotFound(path: url.path, tensor: name) }
        return files[i]
    }

    /// Header entry of `name`. Throws `CheckpointError.tensorNotFound`.
    public func info(named name: String) throws -> SafeTensorInfo {
        try file(containing: name).info(named: name)
    }

    /// Tensor `name` as Float32 (see `SafeTensorsFile.tensor(named:)`).
    /// - Throws: `CheckpointError.tensorNotFound`, `.cannotConvertToFloat32`.
    public func tensor(named name: String) throws -> Tensor {
        try file(containing: name).tensor(named: name)
    }

    /// Converts tensor `name` into `destination` (see `SafeTensorsFile.read(named:into:)`).
    public func read(named name: String, into destination: Tensor) throws {
        try file(containing: name).read(named: name, into: destination)
    }

    /// Tensor `name` as a 16-bit weight (see `SafeTensorsFile.halfTensor(named:as:)`: in place
    /// when stored in `precision`).
    public func halfTensor(named name: String, as precision: HalfPrecision) throws -> HalfTensor {
        try file(containing: name).halfTensor(named: name, as: precision)
    }

    /// A loader for models built from this folder (`LlamaModel`, `CLIPModel`): matrices (role
    /// `.matrix`) as `dtype` — 16-bit ones in place when stored so (`halfTensor(named:as:)`) —
    /// and everything else as Float32.
    public func weightLoader(dtype: WeightStorageType) -> WeightLoader {
        WeightLoader { key, _, role in
            if role == .matrix, let precision = dtype.halfPrecision {
                return .half(try self.halfTensor(named: key, as: precision))
            }
            return .float(try self.tensor(named: key))
        }
    }

    /// The storage the two-dimensional tensors among `keys` share: `.bf16` or `.f16` when every
    /// one is stored so, else `.f32` (a model's default `dtype`).
    public func matrixStorageType(of keys: some Sequence<String>) throws -> WeightStorageType {
        var types = Set<SafeTensorsDType>()
        for key in keys {
            let info = try info(named: key)
            if info.shape.count == 2 { types.insert(info.dtype) }
        }
        return types == [.bf16] ? .bf16 : types == [.f16] ? .f16 : .f32
    }

    /// Raw bfloat16 bits of a BF16 tensor. Throws `.tensorNotFound`, `.dtypeMismatch`.
    public func bf16Bits(named name: String) throws -> [UInt16] {
        try file(containing: name).bf16Bits(named: name)
    }
}
