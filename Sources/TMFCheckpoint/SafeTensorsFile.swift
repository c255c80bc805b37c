import Foundation
import TMFTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The header entry of one tensor in a safetensors file.
public struct SafeTensorInfo: Sendable, Equatable {
    /// The tensor's key.
    public var name: String
    /// Element type as stored.
    public var dtype: SafeTensorsDType
    /// Dimensions, outermost first (PyTorch order); `[]` for a scalar.
    public var shape: [Int]
    /// Byte range inside the data region (which starts right after the header).
    public var dataOffsets: Range<Int>

    /// Product of the dimensions.
    public var elementCount: Int { shape.reduce(1, *) }
    /// Bytes of data.
    public var byteCount: Int { dataOffsets.count }
}

/// Anything strict loading can read named tensors from (a file or a sharded folder).
public protocol TensorSource {
    /// A path for messages.
    var sourceDescription: String { get }
    /// The path of the file holding tensor `name`, for messages (default `sourceDescription`).
    func sourceDescription(of name: String) -> String
    /// Every tensor name, in a stable order.
    var tensorNames: [String] { get }
    /// Header entry of `name`. Throws `CheckpointError.tensorNotFound`.
    func info(named name: String) throws -> SafeTensorInfo
    /// Converts tensor `name` to Float32 into `destination`'s storage (same element count).
    /// Throws `CheckpointError.tensorNotFound`, `.cannotConvertToFloat32`, `.elementCountMismatch`.
    func read(named name: String, into destination: Tensor) throws
}

extension TensorSource {
    public func sourceDescription(of name: String) -> String { sourceDescription }
}

/// A read-only, private memory mapping of a whole file; unmapped when the last user is gone.
/// Tensors that alias it hold it through their storage's deallocator.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let size: Int

    /// Maps `path`. Files shorter than `minimumSize` throw `fileTooShort` without being mapped.
    init(path: String, minimumSize: Int) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw CheckpointError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) != 0 {
            throw CheckpointError.cannotOpen(path: path, reason: String(cString: strerror(errno)))
        }
        if (st.st_mode & S_IFMT) != S_IFREG {
            throw CheckpointError.cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        if size < minimumSize { throw CheckpointError.fileTooShort(path: path, size: size) }
        // MAP_PRIVATE with write permission: the file is never modified, but a tensor aliasing the
        // mapping may be updated in place (copy-on-write pages) instead of crashing.
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil {
            throw CheckpointError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = p!
        self.size = size
    }

    deinit { munmap(base, size) }
}

/// A safetensors file, memory-mapped and validated on open.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"__metadata__": {...}, "name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}}`),
/// then the data region. Every header field is checked before use; any problem throws a
/// specific `CheckpointError`. Tensors convert to Float32 on access; the mapping stays alive as
/// long as this object or a tensor aliasing it does. Gaps between tensors and bytes after the
/// last one are tolerated (the reference reader refuses them); overlaps are not.
///
/// The mapping is private copy-on-write: the file is opened read-only and never modified, and
/// pages of a tensor that aliases it become private copies if written. Truncating the file on
/// disk while it is mapped is not supported (the OS would fault on access).
public final class SafeTensorsFile: TensorSource, @unchecked Sendable {
    /// Largest header accepted (as the reference implementation: 100 MB).
    public static let maximumHeaderSize = 100_000_000
    /// Most elements one tensor may claim: 2^34 (64 GiB as Float32, eight times the largest
    /// tensor of any released Llama). A header claiming more is refused with
    /// `CheckpointError.tensorTooLarge` on open, before anything is allocated for it.
    public static let maximumTensorElements = 1 << 34

    /// The file.
    public let url: URL
    /// Header entries in the order the header lists them.
    public let infos: [SafeTensorInfo]
    /// The `__metadata__` entries in header order, or nil when the header has none.
    public let metadataEntries: [(key: String, value: String)]?
    /// Byte offset of the data region in the file (8 + header length).
    public let dataStart: Int

    let mapping: MappedFile
    private let index: [String: Int]

    /// Opens, maps and validates `url`.
    ///
    /// - Throws: `CheckpointError.cannotOpen`, `.fileTooShort`, `.headerTooLarge`,
    ///   `.headerPastEndOfFile`, `.invalidHeader`, `.unknownDType`, `.invalidShape`,
    ///   `.tensorTooLarge`, `.invalidDataOffsets`, `.sizeMismatch`, `.dataOutOfBounds`, `.overlappingTensors`.
    public init(contentsOf url: URL) throws {
        self.url = url
        let path = url.path
        mapping = try MappedFile(path: path, minimumSize: 8)
        let claimed = UInt64(littleEndian: mapping.base.loadUnaligned(as: UInt64.self))
        if claimed > UInt64(Self.maximumHeaderSize) {
            throw CheckpointError.headerTooLarge(path: path, claimed: claimed, limit: Self.maximumHeaderSize)
        }
        let n = Int(claimed)
        if 8 + n > mapping.size {
            throw CheckpointError.headerPastEndOfFile(path: path, claimed: claimed, fileSize: mapping.size)
        }
        dataStart = 8 + n
        let headerBytes = Array(UnsafeRawBufferPointer(start: mapping.base + 8, count: n))
        let parsed = try Self.parseHeader(headerBytes, path: path, dataSize: mapping.size - dataStart)
        infos = parsed.infos
        metadataEntries = parsed.metadata
        var index: [String: Int] = [:]
        for (i, info) in infos.enumerated() { index[info.name] = i }
        self.index = index
    }

    /// The path, for messages.
    public var sourceDescription: String { url.path }

    /// Tensor names in header order.
    public var tensorNames: [String] { infos.map(\.name) }

    /// `__metadata__` as a dictionary (empty when absent).
    public var metadata: [String: String] {
        var d: [String: String] = [:]
        for (k, v) in metadataEntries ?? [] { d[k] = v }
        return d
    }

    /// Whether the file has a tensor called `name`.
    public func contains(_ name: String) -> Bool { index[name] != nil }

    /// Header entry of `name`. Throws `CheckpointError.tensorNotFound`.
    public func info(named name: String) throws -> SafeTensorInfo {
        guard let i = index[name] else { throw CheckpointError.tensorNotFound(path: url.path, tensor: name) }
        return infos[i]
    }

    /// Tensor `name` as Float32 in its stored shape (named `name`).
    ///
    /// F32 data aliases the mapping without a copy when it is 64-byte aligned (writes to it
    /// stay private to this process); otherwise F32, F16, BF16 and F64 are converted into new
    /// storage (F64 rounds to nearest even).
    /// - Throws: `CheckpointError.tensorNotFound`, `.cannotConvertToFloat32`.
    public func tensor(named name: String) throws -> Tensor {
        let info = try info(named: name)
        guard info.dtype.convertsToFloat32 else {
            throw CheckpointError.cannotConvertToFloat32(path: url.path, tensor: name, dtype: info.dtype)
        }
        let source = mapping.base + dataStart + info.dataOffsets.lowerBound
        let t: Tensor
        if info.dtype == .f32, info.elementCount > 0, Int(bitPattern: source) % 64 == 0 {
            let mapping = self.mapping
            let storage = TensorStorage(borrowing: source.assumingMemoryBound(to: Float.self),
                                        count: info.elementCount,
                                        deallocator: { _ in withExtendedLifetime(mapping) {} })
            t = Tensor(shape: info.shape, storage: storage)
        } else {
            t = Tensor(uninitialized: info.shape)
            Self.convert(UnsafeRawPointer(source), dtype: info.dtype, count: info.elementCount, into: t.pointer)
        }
        t.name = name
        return t
    }

    /// Converts tensor `name` to Float32 into `destination`'s storage, in place.
    /// - Throws: `CheckpointError.tensorNotFound`, `.cannotConvertToFloat32`,
    ///   `.elementCountMismatch` when `destination.count` differs from the tensor's.
    public func read(named name: String, into destination: Tensor) throws {
        let info = try info(named: name)
        guard info.dtype.convertsToFloat32 else {
            throw CheckpointError.cannotConvertToFloat32(path: url.path, tensor: name, dtype: info.dtype)
        }
        guard destination.count == info.elementCount else {
            throw CheckpointError.elementCountMismatch(path: url.path, tensor: name, expected: info.elementCount,
                                                       actual: destination.count)
        }
        let source = UnsafeRawPointer(mapping.base + dataStart + info.dataOffsets.lowerBound)
        Self.convert(source, dtype: info.dtype, count: info.elementCount, into: destination.pointer)
    }

    /// The raw bfloat16 bit patterns of a BF16 tensor (row-major), for bf16 kernels.
    /// - Throws: `CheckpointError.tensorNotFound`, `.dtypeMismatch` if it is not BF16.
    public func bf16Bits(named name: String) throws -> [UInt16] {
        let info = try info(named: name)
        guard info.dtype == .bf16 else {
            throw CheckpointError.dtypeMismatch(path: url.path, tensor: name, expected: .bf16, actual: info.dtype)
        }
        let source = UnsafeRawPointer(mapping.base + dataStart + info.dataOffsets.lowerBound)
        return (0..<info.elementCount).map {
            UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))
        }
    }

    /// Tensor `name` as a 16-bit weight of `precision`, in its stored shape. A tensor already
    /// stored in `precision` (and 2-byte aligned, as safetensors files written by torch are) is
    /// used in place in the memory mapping: no copy. Other float dtypes are converted once
    /// (through Float32, rounding to nearest even).
    /// - Throws: `CheckpointError.tensorNotFound`, `.cannotConvertToFloat32`.
    public func halfTensor(named name: String, as precision: HalfPrecision) throws -> HalfTensor {
        let info = try info(named: name)
        let source = mapping.base + dataStart + info.dataOffsets.lowerBound
        let stored: HalfPrecision? = info.dtype == .bf16 ? .bf16 : info.dtype == .f16 ? .f16 : nil
        if stored == precision, Int(bitPattern: source) % 2 == 0 {
            return HalfTensor(shape: info.shape, precision: precision,
                              borrowing: UnsafePointer(source.assumingMemoryBound(to: UInt16.self)), owner: mapping)
        }
        return HalfTensor(rounding: try tensor(named: name), to: precision)
    }

    /// Calls `body` with the stored bytes of tensor `name` (any dtype, little-endian, row-major).
    /// The buffer is valid only during the call.
    /// - Throws: `CheckpointError.tensorNotFound`, or what `body` throws.
    public func withRawBytes<R>(named name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let info = try info(named: name)
        let buffer = UnsafeRawBufferPointer(start: mapping.base + dataStart + info.dataOffsets.lowerBound,
                                            count: info.byteCount)
        return try withExtendedLifetime(mapping) { try body(buffer) }
    }

    /// A copy of the stored bytes of tensor `name` (any dtype).
    /// - Throws: `CheckpointError.tensorNotFound`.
    public func rawBytes(named name: String) throws -> [UInt8] {
        try withRawBytes(named: name) { Array($0) }
    }

    // MARK: conversion

    /// Converts `count` little-endian elements of `dtype` at `source` (any alignment) to Float32.
    static func convert(_ source: UnsafeRawPointer, dtype: SafeTensorsDType, count: Int,
                        into out: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: count * 4)
        case .f16:
            for i in 0..<count {
                let b = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                out[i] = HalfConversion.float(fromFloat16Bits: b)
            }
        case .bf16:
            for i in 0..<count {
                let b = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                out[i] = HalfConversion.float(fromBFloat16Bits: b)
            }
        case .f64:
            for i in 0..<count {
                let b = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                out[i] = Float(Double(bitPattern: b))
            }
        default:
            preconditionFailure("convert called for \(dtype)")
        }
    }

    // MARK: header

    struct ParsedHeader {
        var infos: [SafeTensorInfo]
        var metadata: [(key: String, value: String)]?
    }

    /// Parses and validates a header against a data region of `dataSize` bytes.
    static func parseHeader(_ bytes: [UInt8], path: String, dataSize: Int) throws -> ParsedHeader {
        guard JSONReader.isValidUTF8(bytes) else {
            throw CheckpointError.invalidHeader(path: path, reason: "the header is not valid UTF-8")
        }
        let root: JSONValue
        do {
            root = try JSONReader.parse(bytes)
        } catch {
            throw CheckpointError.invalidHeader(path: path, reason: "the header is not valid JSON (\(error.message))")
        }
        guard case let .object(entries) = root else {
            throw CheckpointError.invalidHeader(path: path, reason: "the header is \(root.kind), not a JSON object")
        }
        var infos: [SafeTensorInfo] = []
        var metadata: [(key: String, value: String)]?
        for (name, value) in entries {
            if name == "__metadata__" {
                switch value {
                case .null: metadata = nil
                case let .object(pairs):
                    metadata = try pairs.map { key, v in
                        guard case let .string(s) = v else {
                            throw CheckpointError.invalidHeader(
                                path: path, reason: "__metadata__ entry '\(key)' is \(v.kind), not a string")
                        }
                        return (key, s)
                    }
                default:
                    throw CheckpointError.invalidHeader(
                        path: path, reason: "__metadata__ is \(value.kind), not an object of strings")
                }
                continue
            }
            infos.append(try parseTensor(name: name, value: value, path: path, dataSize: dataSize))
        }
        // Overlaps: walk the non-empty ranges in offset order.
        let ordered = infos.filter { !$0.dataOffsets.isEmpty }.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound)
        }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.dataOffsets.lowerBound < a.dataOffsets.upperBound {
            throw CheckpointError.overlappingTensors(path: path, first: a.name, second: b.name)
        }
        return ParsedHeader(infos: infos, metadata: metadata)
    }

    private static func parseTensor(name: String, value: JSONValue, path: String,
                                    dataSize: Int) throws -> SafeTensorInfo {
        guard case let .object(fields) = value else {
            throw CheckpointError.invalidHeader(path: path, reason: "the entry of tensor '\(name)' is \(value.kind), not an object")
        }
        func field(_ key: String) -> JSONValue? { fields.first { $0.key == key }?.value }

        guard let dtypeValue = field("dtype") else {
            throw CheckpointError.invalidHeader(path: path, reason: "tensor '\(name)' has no dtype")
        }
        guard case let .string(dtypeName) = dtypeValue else {
            throw CheckpointError.unknownDType(path: path, tensor: name, dtype: "\(dtypeValue.kind)")
        }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else {
            throw CheckpointError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }

        guard let shapeValue = field("shape") else {
            throw CheckpointError.invalidShape(path: path, tensor: name, reason: "it is missing")
        }
        guard case let .array(dims) = shapeValue else {
            throw CheckpointError.invalidShape(path: path, tensor: name, reason: "it is \(shapeValue.kind), not a list")
        }
        var shape: [Int] = []
        var elements = 1
        for d in dims {
            guard let v = d.intValue, v >= 0 else {
                throw CheckpointError.invalidShape(path: path, tensor: name,
                                                   reason: "dimension \(d.kind) is not a non-negative integer")
            }
            let (p, overflow) = elements.multipliedReportingOverflow(by: v)
            if overflow { throw CheckpointError.invalidShape(path: path, tensor: name, reason: "its size overflows") }
            elements = p
            shape.append(v)
        }
        if elements > maximumTensorElements {
            throw CheckpointError.tensorTooLarge(path: path, tensor: name, shape: shape, limit: maximumTensorElements)
        }

        guard let offsetsValue = field("data_offsets") else {
            throw CheckpointError.invalidDataOffsets(path: path, tensor: name, reason: "they are missing")
        }
        guard case let .array(offsets) = offsetsValue, offsets.count == 2 else {
            throw CheckpointError.invalidDataOffsets(path: path, tensor: name,
                                                     reason: "\(offsetsValue.kind) is not a [begin, end] pair")
        }
        guard let begin = offsets[0].intValue, let end = offsets[1].intValue, begin >= 0, end >= 0 else {
            throw CheckpointError.invalidDataOffsets(path: path, tensor: name,
                                                     reason: "begin and end must be non-negative integers")
        }
        guard begin <= end else {
            throw CheckpointError.invalidDataOffsets(path: path, tensor: name, reason: "begin \(begin) > end \(end)")
        }
        let expected = dtype.byteCount(elements: elements)
        if expected != end - begin {
            throw CheckpointError.sizeMismatch(path: path, tensor: name, dtype: dtype, shape: shape,
                                               expectedBytes: expected, actualBytes: end - begin)
        }
        if end > dataSize {
            throw CheckpointError.dataOutOfBounds(path: path, tensor: name, end: end, dataSize: dataSize)
        }
        return SafeTensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }
}
