import Foundation

/// A parameter whose checkpoint tensor has a different shape than the model expects.
public struct ShapeMismatch: Sendable, Equatable, CustomStringConvertible {
    /// The model's parameter name.
    public var key: String
    /// Shape in the checkpoint.
    public var checkpointShape: [Int]
    /// Shape of the model's parameter.
    public var modelShape: [Int]

    /// A mismatch for parameter `key`.
    public init(key: String, checkpointShape: [Int], modelShape: [Int]) {
        self.key = key
        self.checkpointShape = checkpointShape
        self.modelShape = modelShape
    }

    /// `key (checkpoint [..], model [..])`.
    public var description: String {
        "\(key) (checkpoint \(checkpointShape), model \(modelShape))"
    }
}

/// Everything that keeps a checkpoint from loading strictly into a model, gathered in one pass.
public struct LoadMismatch: Sendable, Equatable {
    /// Where the tensors came from (a file or folder path).
    public var source: String
    /// Model parameters the checkpoint does not provide (sorted).
    public var missing: [String]
    /// Checkpoint tensors (after renaming) that match no parameter and are not allowed (sorted).
    public var unexpected: [String]
    /// Parameters present on both sides with different shapes (sorted by key).
    public var wrongShape: [ShapeMismatch]
    /// Parameters that two or more checkpoint tensors map to after renaming (sorted).
    public var duplicates: [String]

    /// A report for `source` (lists as given).
    public init(source: String, missing: [String], unexpected: [String], wrongShape: [ShapeMismatch],
                duplicates: [String] = []) {
        self.source = source
        self.missing = missing
        self.unexpected = unexpected
        self.wrongShape = wrongShape
        self.duplicates = duplicates
    }

    /// Whether nothing is wrong.
    public var isEmpty: Bool {
        missing.isEmpty && unexpected.isEmpty && wrongShape.isEmpty && duplicates.isEmpty
    }
}

/// Everything that can go wrong reading, writing or loading a safetensors checkpoint.
///
/// Each message names the file and, where one is involved, the tensor, and says what to do.
public enum CheckpointError: Error, LocalizedError, Equatable {
    /// The file could not be opened, inspected or mapped (missing, a directory, no permission).
    case cannotOpen(path: String, reason: String)
    /// The file is shorter than the 8-byte header length prefix.
    case fileTooShort(path: String, size: Int)
    /// The header length prefix claims more than `limit` bytes (refused without allocating).
    case headerTooLarge(path: String, claimed: UInt64, limit: Int)
    /// The header length prefix points past the end of the file.
    case headerPastEndOfFile(path: String, claimed: UInt64, fileSize: Int)
    /// The header is not valid UTF-8, not JSON, not an object, or an entry has the wrong form.
    case invalidHeader(path: String, reason: String)
    /// A tensor declares a dtype safetensors does not define.
    case unknownDType(path: String, tensor: String, dtype: String)
    /// A tensor's `shape` is not a list of non-negative integers (or its size overflows).
    case invalidShape(path: String, tensor: String, reason: String)
    /// A tensor's shape claims more than `limit` elements (`SafeTensorsFile.maximumTensorElements`).
    case tensorTooLarge(path: String, tensor: String, shape: [Int], limit: Int)
    /// A tensor's `data_offsets` is not `[begin, end]` with integers `0 <= begin <= end`.
    case invalidDataOffsets(path: String, tensor: String, reason: String)
    /// A tensor's bytes end past the data region (the file is truncated or the header is wrong).
    case dataOutOfBounds(path: String, tensor: String, end: Int, dataSize: Int)
    /// Two tensors' byte ranges overlap.
    case overlappingTensors(path: String, first: String, second: String)
    /// `shape` × dtype size disagrees with `end − begin`.
    case sizeMismatch(path: String, tensor: String, dtype: SafeTensorsDType, shape: [Int],
                      expectedBytes: Int?, actualBytes: Int)
    /// No tensor of that name in the file or folder.
    case tensorNotFound(path: String, tensor: String)
    /// The tensor's dtype is known but cannot be converted to Float32.
    case cannotConvertToFloat32(path: String, tensor: String, dtype: SafeTensorsDType)
    /// The tensor has another dtype than the accessor needs (e.g. `bf16Bits` on an F32 tensor).
    case dtypeMismatch(path: String, tensor: String, expected: SafeTensorsDType, actual: SafeTensorsDType)
    /// A destination tensor does not have the source tensor's number of elements.
    case elementCountMismatch(path: String, tensor: String, expected: Int, actual: Int)
    /// A folder has neither `model.safetensors` nor `model.safetensors.index.json`.
    case noCheckpointInFolder(path: String)
    /// `model.safetensors.index.json` is unreadable or lacks a `weight_map` of strings.
    case invalidIndex(path: String, reason: String)
    /// A shard named in the index does not exist.
    case missingShard(index: String, shard: String, tensor: String)
    /// The index maps a tensor to a shard that does not contain it.
    case tensorMissingFromShard(index: String, shard: String, tensor: String)
    /// A tensor or metadata handed to the writer is unusable (duplicate name, bad dtype, size).
    case invalidTensorForWriting(path: String, tensor: String, reason: String)
    /// Writing the file failed; no file was left behind.
    case writeFailed(path: String, reason: String)
    /// Strict loading found missing, unexpected, wrongly shaped or duplicate keys (all listed).
    case keyMismatch(LoadMismatch)

    /// One paragraph: what is wrong, in which file and tensor, and what to do.
    public var errorDescription: String? {
        switch self {
        case let .cannotOpen(path, reason):
            return "Cannot open checkpoint \(path): \(reason). Check the path and its permissions."
        case let .fileTooShort(path, size):
            return "\(path) is not a safetensors file: it has \(size) bytes, fewer than the 8-byte "
                + "header length. The file is empty or truncated; download or export it again."
        case let .headerTooLarge(path, claimed, limit):
            return "\(path) claims a \(claimed)-byte header, more than the \(limit)-byte limit: it is "
                + "not a safetensors file or it is corrupt. Download or export it again."
        case let .headerPastEndOfFile(path, claimed, fileSize):
            return "\(path) claims a \(claimed)-byte header but the file has only \(fileSize) bytes: "
                + "it is truncated or not a safetensors file. Download or export it again."
        case let .invalidHeader(path, reason):
            return "\(path) has an invalid safetensors header: \(reason). The file is corrupt or "
                + "not a safetensors file; export it again with safetensors."
        case let .unknownDType(path, tensor, dtype):
            return "Tensor '\(tensor)' in \(path) has dtype '\(dtype)', which safetensors does not "
                + "define. The file is corrupt or from an unsupported writer; re-export it as F32, F16 or BF16."
        case let .invalidShape(path, tensor, reason):
            return "Tensor '\(tensor)' in \(path) has an invalid shape: \(reason). The shape must be a "
                + "list of non-negative integers; the file is corrupt, export it again."
        case let .tensorTooLarge(path, tensor, shape, limit):
            let count = shape.reduce(1, *)
            return "Tensor '\(tensor)' in \(path) claims shape \(shape) (\(count) elements), more than the \(limit) "
                + "elements one tensor may have: the file is corrupt or not a model checkpoint. Export it again."
        case let .invalidDataOffsets(path, tensor, reason):
            return "Tensor '\(tensor)' in \(path) has invalid data_offsets: \(reason). They must be "
                + "[begin, end] with 0 <= begin <= end; the file is corrupt, export it again."
        case let .dataOutOfBounds(path, tensor, end, dataSize):
            return "Tensor '\(tensor)' in \(path) ends at byte \(end) of the data but the file holds only "
                + "\(dataSize) data bytes: the file is truncated (an interrupted download?). Download it again."
        case let .overlappingTensors(path, first, second):
            return "Tensors '\(first)' and '\(second)' in \(path) overlap in the data region: the file is "
                + "corrupt. Export it again with safetensors."
        case let .sizeMismatch(path, tensor, dtype, shape, expected, actual):
            let want = expected.map { "\($0) bytes" } ?? "a size that does not fit in memory"
            return "Tensor '\(tensor)' in \(path) (\(dtype.rawValue), shape \(shape)) needs \(want) but "
                + "its data_offsets span \(actual) bytes: the file is corrupt. Export it again."
        case let .tensorNotFound(path, tensor):
            return "No tensor '\(tensor)' in \(path). Check the checkpoint matches the model (config.json) "
                + "and the key names."
        case let .cannotConvertToFloat32(path, tensor, dtype):
            return "Tensor '\(tensor)' in \(path) is \(dtype.rawValue), which cannot convert to Float32 "
                + "(only F32, F16, BF16 and F64 can). Convert the checkpoint to F32, F16 or BF16."
        case let .dtypeMismatch(path, tensor, expected, actual):
            return "Tensor '\(tensor)' in \(path) is \(actual.rawValue), not \(expected.rawValue) as "
                + "needed here. Use the Float32 accessor or convert the checkpoint to \(expected.rawValue)."
        case let .elementCountMismatch(path, tensor, expected, actual):
            return "Tensor '\(tensor)' in \(path) has \(expected) elements but the destination holds "
                + "\(actual). Check the model configuration matches the checkpoint."
        case let .noCheckpointInFolder(path):
            return "\(path) contains neither model.safetensors nor model.safetensors.index.json. Point "
                + "at a Hugging Face model folder with safetensors weights (convert .bin weights first)."
        case let .invalidIndex(path, reason):
            return "\(path) is not a valid safetensors index: \(reason). Download the model folder again."
        case let .missingShard(index, shard, tensor):
            return "\(index) maps '\(tensor)' to shard \(shard), which does not exist next to it. "
                + "Download the missing shard (the folder is incomplete)."
        case let .tensorMissingFromShard(index, shard, tensor):
            return "\(index) maps '\(tensor)' to shard \(shard), but that shard has no such tensor. "
                + "The index and shards come from different exports; download the folder again."
        case let .invalidTensorForWriting(path, tensor, reason):
            return "Cannot write tensor '\(tensor)' to \(path): \(reason)."
        case let .writeFailed(path, reason):
            return "Could not write \(path): \(reason). Nothing was written; check free space and "
                + "permissions of the folder."
        case let .keyMismatch(m):
            var parts: [String] = []
            // The error value holds every key; the message shows the first 50 of each kind.
            func list(_ items: [String]) -> String {
                let shown = items.prefix(50).joined(separator: ", ")
                return items.count > 50 ? shown + ", … and \(items.count - 50) more" : shown
            }
            if !m.missing.isEmpty { parts.append("\(m.missing.count) missing: \(list(m.missing))") }
            if !m.unexpected.isEmpty { parts.append("\(m.unexpected.count) unexpected: \(list(m.unexpected))") }
            if !m.wrongShape.isEmpty {
                parts.append("\(m.wrongShape.count) with the wrong shape: \(list(m.wrongShape.map(\.description)))")
            }
            if !m.duplicates.isEmpty {
                parts.append("\(m.duplicates.count) given by several checkpoint tensors: \(list(m.duplicates))")
            }
            return "Checkpoint \(m.source) does not match the model: " + parts.joined(separator: "; ")
                + ". Check that the checkpoint and config.json belong together, or add rename rules / "
                + "allowed-unexpected prefixes for known differences."
        }
    }
}
