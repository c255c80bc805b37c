import CCrypto
import Foundation

/// SHA-256 (FIPS 180-4), streamed: `update` any number of times, then `hexDigest`; a value
/// (a copy goes on from the same state). Used for the dataset fingerprint. The hashing is
/// OpenSSL's libcrypto (through the `CCrypto` shim), which uses the CPU's SHA instructions:
/// about six times the speed of the Swift implementation it replaced.
public struct SHA256: @unchecked Sendable {
    private var state = tmf_sha256()

    public init() { tmf_sha256_init(&state) }

    /// Feeds bytes.
    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        let fed: Void? = bytes.withContiguousStorageIfAvailable { buffer in
            tmf_sha256_update(&state, buffer.baseAddress, buffer.count)
        }
        if fed == nil { Array(bytes).withUnsafeBufferPointer { tmf_sha256_update(&state, $0.baseAddress, $0.count) } }
    }

    /// Feeds the UTF-8 bytes of a string.
    public mutating func update(string: String) {
        var s = string
        s.withUTF8 { tmf_sha256_update(&state, $0.baseAddress, $0.count) }
    }

    /// Finishes and returns the digest as 64 lower-case hex digits (the hash itself can go on).
    public func hexDigest() -> String {
        var copy = state
        var digest = [UInt8](repeating: 0, count: 32)
        tmf_sha256_final(&copy, &digest)
        let hex = Array("0123456789abcdef".utf8)
        return String(decoding: digest.flatMap { [hex[Int($0 >> 4)], hex[Int($0 & 15)]] }, as: UTF8.self)
    }
}

func decodeUTF8<C: Collection>(_ bytes: C) -> String? where C.Element == UInt8 {
    if bytes.allSatisfy({ $0 < 0x80 }) { return String(decoding: bytes, as: UTF8.self) }
    let s = String(decoding: bytes, as: UTF8.self)
    return s.utf8.elementsEqual(bytes) ? s : nil
}

/// Reads a file in large chunks through POSIX `read`, so memory stays bounded for any file size.
final class ChunkedFile {
    private let fd: Int32
    let path: String
    static let chunkSize = 1 << 20

    init(path: String) throws {
        fd = open(path, O_RDONLY)
        if fd < 0 {
            if errno == ENOENT { throw DataError.missingFile(path: path, hint: "check the dataset folder") }
            throw DataError.io(path: path, reason: String(cString: strerror(errno)))
        }
        self.path = path
    }

    deinit { close(fd) }

    /// The size of a regular file; nil for anything else (a pipe, a device, a folder).
    var regularFileSize: Int? {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return Int(st.st_size)
    }

    private var scratch = [UInt8](repeating: 0, count: ChunkedFile.chunkSize)

    /// Appends up to one chunk to `buffer`; returns false at end of file.
    func read(into buffer: inout [UInt8]) throws -> Bool {
        let n = scratch.withUnsafeMutableBufferPointer { buf in
            Foundation.read(fd, buf.baseAddress!, ChunkedFile.chunkSize)
        }
        if n < 0 { throw DataError.io(path: path, reason: String(cString: strerror(errno))) }
        buffer.append(contentsOf: scratch[0..<n])
        return n > 0
    }
}

/// Size limits of the dataset files, checked while streaming (before the memory is allocated).
public enum DataLimits {
    /// The longest line (or CSV record) accepted in `items.jsonl`, `interactions.csv` and RecBole
    /// atomic files: 1 MiB (an item's description is a few kilobytes; an event a few dozen bytes).
    /// A longer one is refused with `DataError.lineTooLong` as soon as the reader has seen that
    /// many bytes of it, so memory stays bounded whatever the file holds.
    public static let maximumLineBytes = 1 << 20
    /// The largest `dataset.json` accepted: 16 MiB (refused from its size, before reading).
    public static let maximumJSONFileBytes = 16 << 20
}

/// Calls `body` with each line (without `\n` or `\r\n`) and its 1-based number, streaming.
/// Every byte read is also fed to `hasher`. A line longer than `maxLineBytes` throws
/// `DataError.lineTooLong` once that many of its bytes are buffered.
func forEachLine(
    path: String, hasher: inout SHA256, maxLineBytes: Int = DataLimits.maximumLineBytes,
    _ body: (ArraySlice<UInt8>, Int) throws -> Void
) throws {
    try forEachLine(path: path, maxLineBytes: maxLineBytes, onRead: { hasher.update($0) }, body)
}

/// Calls `body` with each line of the file at `path` (without `\n` or `\r\n`) and its 1-based
/// number, streaming in 1 MiB chunks: memory stays bounded for any file size.
///
/// - Throws: `DataError.missingFile` or `.io` when the file cannot be read,
///   `DataError.lineTooLong` as soon as a line passes `maxLineBytes` (before it is held whole),
///   or what `body` throws.
public func forEachLine(
    of path: String, maxLineBytes: Int = DataLimits.maximumLineBytes,
    _ body: (ArraySlice<UInt8>, Int) throws -> Void
) throws {
    try forEachLine(path: path, maxLineBytes: maxLineBytes, onRead: { _ in }, body)
}

private func forEachLine(
    path: String, maxLineBytes: Int, onRead: (ArraySlice<UInt8>) -> Void,
    _ body: (ArraySlice<UInt8>, Int) throws -> Void
) throws {
    let file = try ChunkedFile(path: path)
    var buffer: [UInt8] = []
    var lineNumber = 0
    var eof = false
    while !eof {
        let before = buffer.count
        eof = !(try file.read(into: &buffer))
        onRead(buffer[before...])
        var start = 0
        var scan = before  // the bytes before hold no newline: they are the start of a line
        while let nl = firstNewline(in: buffer, from: scan) {
            lineNumber += 1
            var end = nl
            if end > start && buffer[end - 1] == 0x0D { end -= 1 }
            if end - start > maxLineBytes {
                throw DataError.lineTooLong(file: path, line: lineNumber, limit: maxLineBytes)
            }
            try body(buffer[start..<end], lineNumber)
            start = nl + 1
            scan = start
        }
        if eof && start < buffer.count {
            lineNumber += 1
            var end = buffer.count
            if buffer[end - 1] == 0x0D { end -= 1 }
            if end - start > maxLineBytes {
                throw DataError.lineTooLong(file: path, line: lineNumber, limit: maxLineBytes)
            }
            try body(buffer[start..<end], lineNumber)
            start = buffer.count
        }
        buffer.removeFirst(start)
        if buffer.count > maxLineBytes + 1 {  // + 1: a line's "\r" before its "\n"
            throw DataError.lineTooLong(file: path, line: lineNumber + 1, limit: maxLineBytes)
        }
    }
}

/// The index of the first `\n` in `buffer` at or after `from` (`memchr`: fast even unoptimised).
private func firstNewline(in buffer: [UInt8], from: Int) -> Int? {
    if from >= buffer.count { return nil }
    return buffer.withUnsafeBytes { raw -> Int? in
        guard let hit = memchr(raw.baseAddress! + from, 0x0A, raw.count - from) else { return nil }
        return raw.baseAddress!.distance(to: UnsafeRawPointer(hit))
    }
}

/// One parsed CSV record; fields live in a reused buffer (valid only inside the callback).
struct CSVRecord {
    var bytes: [UInt8] = []
    var ends: [Int] = []
    /// The 1-based line the record starts on.
    var line = 0

    var count: Int { ends.count }

    func field(_ i: Int) -> ArraySlice<UInt8> {
        let start = i == 0 ? 0 : ends[i - 1]
        return bytes[start..<ends[i]]
    }

    /// The field as a string, or nil if it is not UTF-8.
    func string(_ i: Int) -> String? { decodeUTF8(field(i)) }

    mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
    }
}

/// Streams an RFC 4180 CSV file (quoted fields, `""` escapes, newlines inside quotes, CRLF or LF).
/// Blank lines are skipped. Bytes read are fed to `hasher`. A record longer than `maxRecordBytes`
/// throws `DataError.lineTooLong` once that many of its bytes are buffered.
func forEachCSVRecord(
    path: String, hasher: inout SHA256, maxRecordBytes: Int = DataLimits.maximumLineBytes,
    _ body: (CSVRecord) throws -> Void
) throws {
    let file = try ChunkedFile(path: path)
    var buffer: [UInt8] = []
    var eof = false
    var record = CSVRecord()
    var line = 1
    var pos = 0
    while true {
        if !eof {
            let before = buffer.count
            eof = !(try file.read(into: &buffer))
            hasher.update(buffer[before...])
        }
        // Parse as many complete records as the buffer holds.
        parsing: while pos < buffer.count {
            record.reset()
            record.line = line
            var i = pos
            var newlines = 0
            var fieldStart = true
            var inQuotes = false
            var complete = false
            let n = buffer.count
            scan: while i < n {
                let c = buffer[i]
                if inQuotes {
                    if c == 0x22 {
                        if i + 1 < n {
                            if buffer[i + 1] == 0x22 { record.bytes.append(0x22); i += 2; continue }
                            inQuotes = false; i += 1; continue
                        } else if eof {
                            inQuotes = false; i += 1; continue
                        } else {
                            break scan  // need the next byte to decide
                        }
                    }
                    if c == 0x0A { newlines += 1 }
                    record.bytes.append(c)
                    i += 1
                    continue
                }
                switch c {
                case 0x22 where fieldStart:
                    inQuotes = true
                    fieldStart = false
                    i += 1
                case 0x2C:
                    record.ends.append(record.bytes.count)
                    fieldStart = true
                    i += 1
                case 0x0A:
                    newlines += 1
                    i += 1
                    complete = true
                    break scan
                case 0x0D where i + 1 < n && buffer[i + 1] == 0x0A:
                    i += 1
                default:
                    record.bytes.append(c)
                    fieldStart = false
                    i += 1
                }
            }
            if !complete {
                if !eof { break parsing }  // read more, then re-parse this record
                if inQuotes { throw DataError.unterminatedQuote(file: path, line: line) }
                complete = true
            }
            if i - pos > maxRecordBytes + 2 {  // + 2: the record's "\r\n"
                throw DataError.lineTooLong(file: path, line: line, limit: maxRecordBytes)
            }
            record.ends.append(record.bytes.count)
            pos = i
            line += newlines
            let blank = record.ends.count == 1 && record.bytes.isEmpty
            if !blank { try body(record) }
        }
        if eof && pos >= buffer.count { return }
        buffer.removeFirst(pos)
        pos = 0
        if buffer.count > maxRecordBytes + 2 {  // an unfinished record already over the limit (+ "\r\n")
            throw DataError.lineTooLong(file: path, line: line, limit: maxRecordBytes)
        }
        if eof && buffer.isEmpty { return }
    }
}

/// The whole contents of a small file, refused with `DataError.fileTooLarge` when it holds more
/// than `limit` bytes: from its size before anything is read, and while reading for a file that
/// has no size (a pipe).
func readBoundedFile(_ path: String, limit: Int) throws -> [UInt8] {
    let file = try ChunkedFile(path: path)
    if let size = file.regularFileSize, size > limit {
        throw DataError.fileTooLarge(path: path, size: size, limit: limit)
    }
    var out: [UInt8] = []
    while try file.read(into: &out) {
        if out.count > limit { throw DataError.fileTooLarge(path: path, size: nil, limit: limit) }
    }
    return out
}

/// Feeds `hasher` the line `"\(label)\t\(size)\n"` and then every byte of the file at `path`,
/// streamed in chunks (memory stays bounded for any file size). Returns false when the file
/// cannot be opened or read.
func hashFile(_ path: String, label: String, into hasher: inout SHA256) -> Bool {
    guard let file = try? ChunkedFile(path: path), let size = file.regularFileSize else { return false }
    hasher.update(string: "\(label)\t\(size)\n")
    var buffer: [UInt8] = []
    var total = 0
    while true {
        buffer.removeAll(keepingCapacity: true)
        guard let more = try? file.read(into: &buffer) else { return false }
        if !more { break }
        total += buffer.count
        hasher.update(buffer)
    }
    return total == size
}
