import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a small file (a `config.json`, `tmf.json`, an index) could not be read whole.
public enum SmallFileError: Error, LocalizedError, Equatable {
    /// The file is missing, a folder, or unreadable.
    case cannotRead(path: String, reason: String)
    /// The file holds more than `limit` bytes (`size`: its size when known); refused before reading.
    case tooLarge(path: String, size: Int?, limit: Int)

    /// A phrase that fits after "…: " in the callers' messages.
    public var errorDescription: String? {
        switch self {
        case let .cannotRead(_, reason):
            return reason
        case let .tooLarge(_, size, limit):
            let has = size.map { "it has \($0) bytes" } ?? "it holds more"
            return "\(has), more than the \(limit >> 20) MiB limit for this file: it is not the file it should be"
        }
    }
}

/// Reads a small file whole, refusing it when it holds more than `limit` bytes: from its size
/// before any byte is read (a regular file), or as soon as more than `limit` bytes have arrived
/// (a pipe). The default limit is `maximumSmallFileBytes`.
/// - Throws: `SmallFileError`.
public func readSmallFile(_ url: URL, limit: Int = maximumSmallFileBytes) throws -> Data {
    let path = url.path
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SmallFileError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) != 0 { throw SmallFileError.cannotRead(path: path, reason: String(cString: strerror(errno))) }
    if (st.st_mode & S_IFMT) == S_IFDIR { throw SmallFileError.cannotRead(path: path, reason: "it is a folder") }
    if (st.st_mode & S_IFMT) == S_IFREG && Int(st.st_size) > limit {
        throw SmallFileError.tooLarge(path: path, size: Int(st.st_size), limit: limit)
    }
    var out = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw SmallFileError.cannotRead(path: path, reason: String(cString: strerror(errno)))
        }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
        if out.count > limit { throw SmallFileError.tooLarge(path: path, size: nil, limit: limit) }
    }
}

/// The largest JSON file read whole (`config.json`, `tmf.json`, `adapter_config.json`,
/// `model.safetensors.index.json`, a checkpoint's `state.json`): 16 MiB. The real ones are a
/// few kilobytes (an index of a 70B model: about 70 KB).
public let maximumSmallFileBytes = 16 << 20
