import Foundation

/// SHA-256 (FIPS 180-4), streamed: `update` any number of times, then `hexDigest`.
/// Used for the dataset fingerprint; no Foundation crypto exists on Linux.
public struct SHA256: Sendable {
    private var h: [UInt32] = [
        0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    public init() {}

    /// Feeds bytes.
    public mutating func update<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        length &+= UInt64(bytes.count)
        pending.append(contentsOf: bytes)
        let full = pending.count / 64 * 64
        if full == 0 { return }
        pending.withUnsafeBufferPointer { buf in
            var off = 0
            while off < full {
                compress(UnsafeBufferPointer(rebasing: buf[off..<off + 64]))
                off += 64
            }
        }
        pending.removeFirst(full)
    }

    /// Feeds the UTF-8 bytes of a string.
    public mutating func update(string: String) { update(Array(string.utf8)) }

    /// Finishes and returns the digest as 64 lower-case hex digits.
    public func hexDigest() -> String {
        var copy = self
        let bitLength = length &* 8
        var tail: [UInt8] = [0x80]
        while (copy.pending.count + tail.count) % 64 != 56 { tail.append(0) }
        for i in (0..<8).reversed() { tail.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        let savedLength = copy.length
        copy.update(tail)
        copy.length = savedLength
        return copy.h.map { String(format: "%08x", $0) }.joined()
    }

    private mutating func compress(_ block: UnsafeBufferPointer<UInt8>) {
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for i in 0..<16 {
                w[i] = UInt32(block[i * 4]) << 24 | UInt32(block[i * 4 + 1]) << 16
                    | UInt32(block[i * 4 + 2]) << 8 | UInt32(block[i * 4 + 3])
            }
            for i in 16..<64 {
                let s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
                let s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
                w[i] = w[i - 16] &+ s0 &+ w[i - 7] &+ s1
            }
            var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
            SHA256.k.withUnsafeBufferPointer { k in
                for i in 0..<64 {
                    let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
                    let ch = (e & f) ^ (~e & g)
                    let t1 = hh &+ s1 &+ ch &+ k[i] &+ w[i]
                    let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
                    let maj = (a & b) ^ (a & c) ^ (b & c)
                    let t2 = s0 &+ maj
                    hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
                }
            }
            h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
        }
    }

    @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}

/// Decodes UTF-8 bytes, or returns nil if they are not valid UTF-8.
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
