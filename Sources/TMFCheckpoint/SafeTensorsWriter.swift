import Foundation
import TMFTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a safetensors file from named tensors, byte for byte as Python's
/// `safetensors.torch.save_file` lays it out, and writes it atomically.
///
/// Layout rules (from the reference Rust implementation): tensors are ordered by dtype
/// (descending safetensors dtype order: I64/F64 before F32 before BF16 before F16 …), then by
/// name (byte-wise); data is packed in that order without gaps; the header is compact JSON with
/// `__metadata__` first (when given) and each entry as `{"dtype":…,"shape":[…],"data_offsets":[b,e]}`,
/// padded with spaces to a multiple of 8 bytes. Metadata entries are written in the order given
/// (the reference writes its hash map's order, so only files with at most one metadata key
/// are reproducible from Python byte for byte; re-writing a read file keeps its order).
///
/// ```swift
/// var w = SafeTensorsWriter(metadata: [("format", "pt")])
/// w.add("lm_head.weight", logits, as: .bf16)
/// try w.write(to: url)
/// ```
public struct SafeTensorsWriter {
    enum Payload {
        case float(Tensor)
        case raw([UInt8])
    }

    struct Entry {
        var name: String
        var dtype: SafeTensorsDType
        var shape: [Int]
        var payload: Payload
    }

    /// `__metadata__` entries in output order; nil writes no `__metadata__` key (Python's
    /// `metadata=None`), an empty array writes `"__metadata__":{}`.
    public var metadata: [(key: String, value: String)]?
    private var entries: [Entry] = []

    /// An empty writer with optional `__metadata__` entries (written in this order).
    public init(metadata: [(key: String, value: String)]? = nil) {
        self.metadata = metadata
    }

    /// Queues `tensor` (any shape) under `name`, to be stored as `dtype` (F32, F16 or BF16;
    /// F16/BF16 round to nearest even exactly as torch's `.to(torch.float16/bfloat16)`).
    /// The tensor's values are read when the file is written. Problems (duplicate names, other
    /// dtypes) are reported by `write(to:)` / `serialized()`.
    public mutating func add(_ name: String, _ tensor: Tensor, as dtype: SafeTensorsDType = .f32) {
        entries.append(Entry(name: name, dtype: dtype, shape: tensor.shape, payload: .float(tensor)))
    }

    /// Queues already-encoded little-endian bytes of any dtype (e.g. copied from another file
    /// with `SafeTensorsFile.rawBytes(named:)`). `bytes.count` must match `shape` × dtype size.
    public mutating func addRaw(_ name: String, dtype: SafeTensorsDType, shape: [Int], bytes: [UInt8]) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, payload: .raw(bytes)))
    }

    /// Queues every tensor of `file` with its stored dtype and bytes, and adopts its metadata,
    /// so that `write(to:)` reproduces the file byte for byte.
    /// - Throws: errors of `SafeTensorsFile.rawBytes(named:)` (none for a validated file).
    public mutating func addAll(from file: SafeTensorsFile) throws {
        metadata = file.metadataEntries
        for info in file.infos {
            addRaw(info.name, dtype: info.dtype, shape: info.shape, bytes: try file.rawBytes(named: info.name))
        }
    }

    /// The complete file contents.
    /// - Throws: `CheckpointError.invalidTensorForWriting` for a duplicate or reserved name, a
    ///   dtype other than F32/F16/BF16 for a Float32 tensor, or raw bytes of the wrong size.
    public func serialized() throws -> [UInt8] {
        var out: [UInt8] = []
        try emit(path: "<memory>") { out.append(contentsOf: $0) }
        return out
    }

    /// Writes the file atomically: into a temporary file in the same folder, fsync, rename over
    /// `url`, fsync the folder. On any error no file (and no temporary) is left behind and an
    /// existing file at `url` is untouched.
    /// - Throws: `CheckpointError.invalidTensorForWriting` (see `serialized()`),
    ///   `CheckpointError.writeFailed` for I/O errors.
    public func write(to url: URL) throws {
        let (ordered, header) = try prepare(path: url.path)
        try AtomicFile.write(to: url) { sink in
            try Self.emit(ordered: ordered, header: header, sink)
        }
    }

    /// Writes `tensors` (all as `dtype`: F32, F16 or BF16) and `metadata` to `url` atomically;
    /// the same as adding each tensor to a writer and calling `write(to:)`.
    /// - Throws: see `write(to:)`.
    public static func write(_ tensors: [String: Tensor], as dtype: SafeTensorsDType = .f32,
                             metadata: [(key: String, value: String)]? = nil, to url: URL) throws {
        var writer = SafeTensorsWriter(metadata: metadata)
        for (name, t) in tensors { writer.add(name, t, as: dtype) }
        try writer.write(to: url)
    }

    // MARK: layout

    private func emit(path: String, _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (ordered, header) = try prepare(path: path)
        try Self.emit(ordered: ordered, header: header, sink)
    }

    /// Validates the entries, sorts them and builds the length prefix + padded header.
    private func prepare(path: String) throws -> ([Entry], [UInt8]) {
        var seen = Set<String>()
        for e in entries {
            func bad(_ reason: String) -> CheckpointError {
                .invalidTensorForWriting(path: path, tensor: e.name, reason: reason)
            }
            if e.name == "__metadata__" { throw bad("the name __metadata__ is reserved") }
            if !seen.insert(e.name).inserted { throw bad("the name is used twice") }
            switch e.payload {
            case .float:
                if !e.dtype.isWritableFromFloat32 {
                    throw bad("Float32 tensors can be stored as F32, F16 or BF16, not \(e.dtype.rawValue)")
                }
            case let .raw(bytes):
                guard e.shape.allSatisfy({ $0 >= 0 }) else { throw bad("negative dimension in \(e.shape)") }
                var elements = 1
                for d in e.shape {
                    let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                    if overflow { throw bad("shape \(e.shape) is too large") }
                    elements = p
                }
                if e.dtype.byteCount(elements: elements) != bytes.count {
                    throw bad("\(bytes.count) bytes do not hold a \(e.dtype.rawValue) tensor of shape \(e.shape)")
                }
            }
        }
        let ordered = entries.sorted { a, b in
            if a.dtype != b.dtype { return a.dtype > b.dtype }
            return a.name.utf8.lexicographicallyPrecedes(b.name.utf8)
        }
        var json: [UInt8] = [UInt8(ascii: "{")]
        var first = true
        func separator() {
            if !first { json.append(UInt8(ascii: ",")) }
            first = false
        }
        if let metadata {
            separator()
            JSONWriter.appendString("__metadata__", to: &json)
            json.append(contentsOf: Array(":{".utf8))
            for (i, (key, value)) in metadata.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(key, to: &json)
                json.append(UInt8(ascii: ":"))
                JSONWriter.appendString(value, to: &json)
            }
            json.append(UInt8(ascii: "}"))
        }
        var offset = 0
        for e in ordered {
            let elements = e.shape.reduce(1, *)
            let size = e.dtype.byteCount(elements: elements)!
            separator()
            JSONWriter.appendString(e.name, to: &json)
            json.append(contentsOf: Array(":{\"dtype\":".utf8))
            JSONWriter.appendString(e.dtype.rawValue, to: &json)
            json.append(contentsOf: Array(",\"shape\":[".utf8))
            for (i, d) in e.shape.enumerated() {
                if i > 0 { json.append(UInt8(ascii: ",")) }
                JSONWriter.appendInt(d, to: &json)
            }
            json.append(contentsOf: Array("],\"data_offsets\":[".utf8))
            JSONWriter.appendInt(offset, to: &json)
            json.append(UInt8(ascii: ","))
            JSONWriter.appendInt(offset + size, to: &json)
            json.append(contentsOf: Array("]}".utf8))
            offset += size
        }
        json.append(UInt8(ascii: "}"))
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        if json.count > SafeTensorsFile.maximumHeaderSize {
            throw CheckpointError.invalidTensorForWriting(
                path: path, tensor: "__metadata__", reason: "the header would exceed \(SafeTensorsFile.maximumHeaderSize) bytes")
        }
        var header: [UInt8] = []
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { header.append(contentsOf: $0) }
        header.append(contentsOf: json)
        return (ordered, header)
    }

    /// Streams header and data to `sink`, converting in chunks.
    private static func emit(ordered: [Entry], header: [UInt8],
                             _ sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try header.withUnsafeBytes { try sink($0) }
        let chunk = 1 << 16
        var buffer = [UInt16](repeating: 0, count: chunk)
        for e in ordered {
            switch e.payload {
            case let .raw(bytes):
                try bytes.withUnsafeBytes { try sink($0) }
            case let .float(t):
                let p = t.pointer, n = t.count
                if e.dtype == .f32 {
                    // Host order is little-endian on every platform tmf supports.
                    try sink(UnsafeRawBufferPointer(start: p, count: n * 4))
                    continue
                }
                var start = 0
                while start < n {
                    let m = min(chunk, n - start)
                    for i in 0..<m {
                        let v = p[start + i]
                        buffer[i] = (e.dtype == .f16 ? HalfConversion.float16Bits(v) : HalfConversion.bfloat16Bits(v)).littleEndian
                    }
                    try buffer.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<(2 * m)])) }
                    start += m
                }
            }
        }
    }
}

/// Writes a file through a temporary name in the same folder, then renames it into place.
enum AtomicFile {
    /// Calls `body` with a sink that appends bytes to a temporary file next to `url`; then
    /// fsyncs, renames to `url` and fsyncs the folder. Any failure removes the temporary.
    /// - Throws: `CheckpointError.writeFailed`, or what `body` throws.
    static func write(to url: URL, _ body: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let path = url.path
        let folder = url.deletingLastPathComponent().path
        let temp = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        func failure(_ what: String) -> CheckpointError {
            .writeFailed(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if fd < 0 { throw failure("cannot create a temporary file in \(folder)") }
        var isOpen = true
        do {
            try body { bytes in
                var done = 0
                while done < bytes.count {
                    let r = posixWrite(fd, bytes.baseAddress! + done, bytes.count - done)
                    if r < 0 {
                        if errno == EINTR { continue }
                        throw failure("write failed")
                    }
                    done += r
                }
            }
            if fsync(fd) != 0 { throw failure("fsync failed") }
            isOpen = false
            if close(fd) != 0 { throw failure("close failed") }
            if rename(temp, path) != 0 { throw failure("cannot rename the temporary file into place") }
        } catch {
            if isOpen { close(fd) }
            unlink(temp)
            throw error
        }
        let dir = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            _ = fsync(dir)  // best effort: the file is complete and in place either way
            close(dir)
        }
    }
}

/// `write(2)`, named apart from the `write` methods above.
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
