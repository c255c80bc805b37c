import Foundation
import TMFData
import TMFGraph

/// The training stage that wrote a `metrics.jsonl` record (its `"stage"` key).
public enum MetricsStage: String, Codable, Sendable, CaseIterable {
    /// Next-token pretraining of the Llama.
    case pretrain
    /// The MBHT graph encoder.
    case graph
    /// The curriculum LoRA + fusion tuning. Lines without a `"stage"` (older runs) are this stage.
    case llm
}

/// A value of one field of a metrics record. A `Float` is written with a `Float`'s shortest
/// digits (`0.25`, not `0.25000000372529`).
public enum MetricsValue: Encodable, Sendable, Equatable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
                          ExpressibleByStringLiteral {
    /// A whole number (`step`, `epoch`, counts).
    case int(Int)
    /// A `Float` figure (losses, learning rates).
    case float(Float)
    /// A `Double` figure (rates such as HitRate@1).
    case double(Double)
    /// Text (`level`, `kind`).
    case string(String)

    public init(integerLiteral value: Int) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .int(v): try c.encode(v)
        case let .float(v): try c.encode(v)
        case let .double(v): try c.encode(v)
        case let .string(v): try c.encode(v)
        }
    }
}

/// Errors reading a `metrics.jsonl` file. Each message names the file.
public enum MetricsError: Error, LocalizedError, Equatable {
    /// The model folder does not exist.
    case noModelFolder(path: String)
    /// There is no metrics file at this path.
    case missingFile(path: String)
    /// The file exists but cannot be read.
    case unreadable(path: String, reason: String)
    /// A line is not a metrics record; `line` counts from 1.
    case malformedLine(path: String, line: Int, reason: String)
    /// The file holds no record of a known stage.
    case noRecords(path: String)

    public var errorDescription: String? {
        switch self {
        case let .noModelFolder(path):
            return "model folder \(path) does not exist"
        case let .missingFile(path):
            return "no training metrics at \(path); a model folder gets its metrics.jsonl when it is trained"
        case let .unreadable(path, reason):
            return "cannot read training metrics \(path): \(reason)"
        case let .malformedLine(path, line, reason):
            return "\(path), line \(line): \(reason); fix or delete that line"
        case let .noRecords(path):
            return "\(path) holds no training records yet"
        }
    }
}

/// One record of `metrics.jsonl`, as read back.
public struct MetricsRecord: Sendable, Equatable {
    /// The stage that wrote it (`llm` for lines without one).
    public var stage: MetricsStage
    /// nil for a training step (or MBHT epoch); `"validation"` for a held-out evaluation.
    public var kind: String?
    /// The numeric fields (`step`, `epoch`, `loss`, `lr`, `HitRate@1`, …).
    public var numbers: [String: Double]
    /// The text fields other than `stage` and `kind` (`level`).
    public var strings: [String: String]

    public init(stage: MetricsStage, kind: String? = nil, numbers: [String: Double], strings: [String: String] = [:]) {
        self.stage = stage
        self.kind = kind
        self.numbers = numbers
        self.strings = strings
    }

    /// Whether this is a training step / epoch rather than a held-out evaluation.
    public var isTraining: Bool { kind == nil }
}

/// Appends training records to a `metrics.jsonl` file: one JSON object a line (keys sorted), each
/// naming its stage, written with one `write` per line so a killed run never leaves half a line.
///
/// Records by stage (every one also has `"stage"`):
/// - `llm`: a step `{step, level, loss, lr, tokens_per_s, answer_tokens}`; a validation
///   `{kind: "validation", step, HitRate@1, ValidRatio, HitRate@1(all), Examples}`.
/// - `graph`: an MBHT epoch `{epoch, loss}` and `HitRate@1` when it was validated.
/// - `pretrain`: a step `{step, loss, lr, grad_norm, tokens_per_s}`; a held-out loss
///   `{kind: "validation", step, loss}`.
///
/// ```swift
/// let log = MetricsLog(folder: modelFolder)
/// let summary = try pretrainer.run { event in try? log.append(event); return true }
/// ```
public struct MetricsLog: Sendable {
    /// The file name in a model folder.
    public static let fileName = "metrics.jsonl"
    /// The file appended to.
    public let url: URL

    /// A log appending to `url` (created on the first record).
    public init(url: URL) { self.url = url }

    /// A log appending to `folder/metrics.jsonl`.
    public init(folder: URL) { url = folder.appendingPathComponent(Self.fileName) }

    /// Appends one record: `fields` plus `"stage"`.
    /// - Throws: file-system errors.
    public func append(stage: MetricsStage, fields: [String: MetricsValue]) throws {
        try append(stage: stage, record: fields)
    }

    /// Appends one record: the keys `record` encodes to (a keyed container) plus `"stage"`.
    /// - Throws: encoding and file-system errors.
    public func append<Record: Encodable>(stage: MetricsStage, record: Record) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = try encoder.encode(Staged(stage: stage, record: record))
        data.append(0x0A)
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        let handle = try FileHandle(forUpdating: url)
        defer { try? handle.close() }
        try Self.dropTornLine(handle, end: try handle.seekToEnd())
        try handle.seekToEnd()
        try handle.write(contentsOf: data)  // one write per line
    }

    /// Cuts the file back to its last newline when it does not end with one: a writer killed in
    /// the middle of a line (SIGKILL, a second Ctrl-C) left it torn, and a record appended to it
    /// would make one unreadable line of two. (`tmf train` is the folder's only writer.)
    static func dropTornLine(_ handle: FileHandle, end: UInt64) throws {
        guard end > 0 else { return }
        try handle.seek(toOffset: end - 1)
        if try handle.read(upToCount: 1) == Data([0x0A]) { return }
        var cut: UInt64 = 0, position = end
        while position > 0 {
            let start = position - min(position, 65536)
            try handle.seek(toOffset: start)
            let chunk = try handle.read(upToCount: Int(position - start)) ?? Data()
            if let newline = chunk.lastIndex(of: 0x0A) {
                cut = start + UInt64(chunk.distance(from: chunk.startIndex, to: newline)) + 1
                break
            }
            position = start
        }
        try handle.truncate(atOffset: cut)
    }

    /// Logs a fine-tuning event: `.step` and `.validation` (stage `llm`); checkpoints are not logged.
    public func append(_ event: TrainingEvent) throws {
        switch event {
        case let .step(report):
            try append(stage: .llm, record: report)
        case let .validation(step, m, _):
            try append(stage: .llm, fields: [
                "kind": "validation", "step": .int(step), "HitRate@1": .double(m.hitRate), "ValidRatio": .double(m.validRatio),
                "HitRate@1(all)": .double(m.hitRateAll), "Examples": .int(m.examples),
            ])
        case .checkpoint:
            break
        }
    }

    /// Logs an MBHT event: `.epochFinished` (stage `graph`); steps and early stops are not logged.
    public func append(_ event: MBHTTrainingEvent) throws {
        guard case let .epochFinished(epoch, loss, hitRate, _) = event else { return }
        var fields: [String: MetricsValue] = ["epoch": .int(epoch), "loss": .float(loss)]
        if let hitRate { fields["HitRate@1"] = .double(hitRate) }
        try append(stage: .graph, fields: fields)
    }

    /// Logs a pretraining event: `.step` and `.evaluation` (held-out loss) as stage `pretrain`;
    /// the other events are not logged.
    public func append(_ event: PretrainEvent) throws {
        switch event {
        case let .step(r):
            try append(stage: .pretrain, fields: [
                "step": .int(r.step), "loss": .float(r.loss), "lr": .float(r.learningRate), "grad_norm": .float(r.gradientNorm),
                "tokens_per_s": .double(r.tokensPerSecond),
            ])
        case let .evaluation(step, loss):
            try append(stage: .pretrain, fields: ["kind": "validation", "step": .int(step), "loss": .float(loss)])
        case .prepared, .checkpoint:
            break
        }
    }

    /// Reads every record of the file. Blank lines are skipped, and so are records of a stage
    /// this version does not know; a line without `"stage"` is an `llm` record.
    /// - Throws: `MetricsError.missingFile`, `.unreadable`, `.malformedLine` (naming the line:
    ///   not a JSON object, or missing the step, epoch or loss its stage needs), `.noRecords`.
    public func read() throws -> [MetricsRecord] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw MetricsError.missingFile(path: url.path) }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw MetricsError.unreadable(path: url.path, reason: "not UTF-8 text or not readable")
        }
        var records: [MetricsRecord] = []
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.allSatisfy(\.isWhitespace) { continue }
            let fields: [String: JSONScalar]
            do { fields = try JSONDecoder().decode([String: JSONScalar].self, from: Data(line.utf8)) } catch {
                throw MetricsError.malformedLine(path: url.path, line: index + 1, reason: "not a JSON object")
            }
            if let record = try Self.record(fields, path: url.path, line: index + 1) { records.append(record) }
        }
        if records.isEmpty { throw MetricsError.noRecords(path: url.path) }
        return records
    }

    /// One parsed line as a record (nil for an unknown stage).
    static func record(_ fields: [String: JSONScalar], path: String, line: Int) throws -> MetricsRecord? {
        func bad(_ reason: String) -> MetricsError { .malformedLine(path: path, line: line, reason: reason) }
        var stage = MetricsStage.llm
        switch fields["stage"] {
        case nil: break
        case let .string(s)?:
            guard let known = MetricsStage(rawValue: s) else { return nil }
            stage = known
        default: throw bad("\"stage\" is not a string")
        }
        var kind: String?
        switch fields["kind"] {
        case nil: break
        case let .string(s)?: kind = s
        default: throw bad("\"kind\" is not a string")
        }
        var numbers: [String: Double] = [:], strings: [String: String] = [:]
        for (key, value) in fields where key != "stage" && key != "kind" {
            switch value {
            case let .number(x): numbers[key] = x
            case let .string(s): strings[key] = s
            case .other: break
            }
        }
        let x = stage == .graph ? "epoch" : "step"
        guard let position = numbers[x] else { throw bad("a \(stage.rawValue) record without \"\(x)\"") }
        guard position.isFinite, position >= 0, position == position.rounded() else {
            throw bad("\"\(x)\" is not a whole number")
        }
        if kind == nil && numbers["loss"] == nil { throw bad("a \(stage.rawValue) record without \"loss\"") }
        return MetricsRecord(stage: stage, kind: kind, numbers: numbers, strings: strings)
    }
}

/// A record and its stage, encoded as one object (the record's own keys and `"stage"`).
private struct Staged<Record: Encodable>: Encodable {
    let stage: MetricsStage
    let record: Record

    enum Key: String, CodingKey { case stage }

    func encode(to encoder: Encoder) throws {
        try record.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(stage, forKey: .stage)
    }
}

/// A JSON value of a metrics line: a number, a string, or anything else (ignored).
enum JSONScalar: Decodable, Equatable {
    case number(Double)
    case string(String)
    case other

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let x = try? c.decode(Double.self) {
            self = .number(x)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else {
            self = .other
        }
    }
}
