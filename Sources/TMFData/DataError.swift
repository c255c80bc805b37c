import Foundation

/// Everything a dataset directory, a command-line value or an import can get wrong.
/// Each message names the file (and line, where there is one) and says what to do.
public enum DataError: Error, LocalizedError, Equatable {
    /// A required file is missing.
    case missingFile(path: String, hint: String)
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A required CSV column is absent from the header.
    case missingColumn(file: String, column: String, header: [String])
    /// A CSV record has the wrong number of fields.
    case wrongFieldCount(file: String, line: Int, expected: Int, found: Int)
    /// A quoted CSV field never ends.
    case unterminatedQuote(file: String, line: Int)
    /// A line is not valid UTF-8.
    case notUTF8(file: String, line: Int)
    /// A JSON line or file does not parse or has the wrong shape.
    case badJSON(file: String, line: Int, reason: String)
    /// A required field is missing or empty.
    case missingField(file: String, line: Int, field: String)
    /// Two items share an id.
    case duplicateItemID(file: String, line: Int, id: String, firstLine: Int)
    /// Two items share a (normalised) title; titles are the answers, so they must be distinct.
    case duplicateTitle(file: String, line: Int, title: String, firstLine: Int)
    /// An interaction names an item that `items.jsonl` does not define.
    case unknownItem(file: String, line: Int, id: String)
    /// An interaction names a behavior that is not configured.
    case unknownBehavior(file: String, line: Int, behavior: String, known: [String])
    /// A timestamp is neither integer unix seconds nor ISO-8601.
    case badTimestamp(file: String, line: Int, value: String)
    /// An image path is absolute, contains `..`, or resolves (through symlinks) outside the dataset.
    case imageEscapes(file: String, line: Int, path: String)
    /// An image file does not exist.
    case missingImage(file: String, line: Int, path: String)
    /// `dataset.json` (or an option) configures behaviors wrongly.
    case badConfig(file: String, reason: String)
    /// No interaction has the target behavior.
    case noTargetBehavior(file: String, target: String)
    /// The shop has too few items to draw candidate sets.
    case tooFewItems(count: Int, needed: Int)
    /// A user interacted with so many items that fewer than `needed` remain as negatives.
    case tooFewNegatives(user: String, available: Int, needed: Int)
    /// A bad value on the command line or in a call.
    case invalidArgument(String)
    /// A line (or CSV record) is longer than `limit` bytes (`DataLimits.maximumLineBytes`);
    /// refused while streaming, before it is held in memory.
    case lineTooLong(file: String, line: Int, limit: Int)
    /// A file that is read whole is larger than `limit` bytes (`size`: its size when known).
    case fileTooLarge(path: String, size: Int?, limit: Int)

    public var errorDescription: String? {
        switch self {
        case let .missingFile(path, hint):
            return "\(path): file not found; \(hint)"
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .missingColumn(file, column, header):
            return "\(file):1: missing column '\(column)' (header is \(header.joined(separator: ","))); the header must be user_id,item_id,behavior,timestamp"
        case let .wrongFieldCount(file, line, expected, found):
            return "\(file):\(line): \(found) fields, expected \(expected); quote fields that contain commas (RFC 4180) or fix the row, or pass --skip-invalid"
        case let .unterminatedQuote(file, line):
            return "\(file):\(line): a quoted field is never closed; close the quote (a quote inside a quoted field is written \"\")"
        case let .notUTF8(file, line):
            return "\(file):\(line): not valid UTF-8; re-encode the file as UTF-8 or pass --skip-invalid"
        case let .badJSON(file, line, reason):
            return "\(file):\(line): \(reason); write one JSON object per line or pass --skip-invalid"
        case let .missingField(file, line, field):
            return "\(file):\(line): missing or empty \"\(field)\"; every row needs one, or pass --skip-invalid"
        case let .duplicateItemID(file, line, id, firstLine):
            return "\(file):\(line): item_id \"\(id)\" already defined on line \(firstLine); make item ids unique or pass --skip-invalid"
        case let .duplicateTitle(file, line, title, firstLine):
            return "\(file):\(line): title \"\(title)\" already used on line \(firstLine); titles are the answers and must be distinct (add a brand, colour or model), or pass --skip-invalid"
        case let .unknownItem(file, line, id):
            return "\(file):\(line): item_id \"\(id)\" is not in items.jsonl; add the item or remove the row, or pass --skip-invalid"
        case let .unknownBehavior(file, line, behavior, known):
            return "\(file):\(line): behavior \"\(behavior)\" is not configured (known: \(known.joined(separator: ", "))); add it to \"behaviors\" in dataset.json or pass --skip-invalid"
        case let .badTimestamp(file, line, value):
            return "\(file):\(line): bad timestamp \"\(value)\"; use integer unix seconds or ISO-8601 (2024-05-01T12:00:00Z), or pass --skip-invalid"
        case let .imageEscapes(file, line, path):
            return "\(file):\(line): image path \"\(path)\" leaves the dataset folder; use a relative path inside it (no '..', not absolute, no symlink out), or pass --skip-invalid"
        case let .missingImage(file, line, path):
            return "\(file):\(line): image \"\(path)\" does not exist; add the file or drop the \"image\" field, or pass --skip-invalid"
        case let .badConfig(file, reason):
            return "\(file): \(reason)"
        case let .noTargetBehavior(file, target):
            return "\(file): no interaction has the target behavior \"\(target)\"; set \"target\" in dataset.json to a behavior that occurs (or pass --target)"
        case let .tooFewItems(count, needed):
            return "the shop has \(count) items but candidate sets need at least \(needed); add items to items.jsonl"
        case let .tooFewNegatives(user, available, needed):
            return "user \"\(user)\" interacted with all but \(available) items, but a candidate set needs \(needed) items the user never touched; add items or remove the user"
        case let .invalidArgument(message):
            return message
        case let .lineTooLong(file, line, limit):
            return "\(file):\(line): the line is longer than \(byteSize(limit)), the limit for one line; is this the right file? Shorten the line (one item, event or request a line)"
        case let .fileTooLarge(path, size, limit):
            let has = size.map { "has \(byteSize($0))" } ?? "holds more"
            return "\(path): the file \(has), more than the \(byteSize(limit)) limit for this file; is this the right file?"
        }
    }
}

/// "16 MiB", "3 GiB", "512 bytes": a byte count for messages.
func byteSize(_ n: Int) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 { return "\(n >> 30) GiB" }
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1 << 30 { return String(format: "%.1f GiB", Double(n) / Double(1 << 30)) }
    if n >= 1 << 20 { return String(format: "%.1f MiB", Double(n) / Double(1 << 20)) }
    return "\(n) bytes"
}
