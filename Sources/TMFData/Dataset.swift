import Foundation

/// One item of `items.jsonl`. Only `id` and `title` are required; a missing image or text is
/// allowed (the encoders use a zero vector for a missing modality).
public struct Item: Sendable, Equatable {
    /// `item_id`, unique in the shop.
    public var id: String
    /// The title: the item's name in prompts and the answer the model must produce; distinct
    /// (after `normalizeTitle`) across the shop.
    public var title: String
    public var brand: String?
    public var categories: [String]
    public var description: String?
    /// Image path relative to the dataset folder, checked to exist and to stay inside it.
    public var image: String?

    public init(id: String, title: String, brand: String? = nil, categories: [String] = [],
                description: String? = nil, image: String? = nil) {
        self.id = id
        self.title = title
        self.brand = brand
        self.categories = categories
        self.description = description
        self.image = image
    }

    /// The text CLIP encodes: title, brand, categories and description.
    public var text: String {
        var parts = [title]
        if let brand, !brand.isEmpty { parts.append(brand) }
        if !categories.isEmpty { parts.append(categories.joined(separator: ", ")) }
        if let description, !description.isEmpty { parts.append(description) }
        return parts.joined(separator: ". ")
    }
}

/// A behavior type: its name in `interactions.csv` and the phrase used in prompts
/// ("view" → "views", "cart" → "adds to cart").
public struct Behavior: Sendable, Equatable, Hashable {
    public var name: String
    public var phrase: String

    public init(name: String, phrase: String) {
        self.name = name
        self.phrase = phrase
    }
}

/// Which behaviors exist and which one is predicted (from `dataset.json` or the defaults).
public struct DatasetConfig: Sendable, Equatable {
    /// At least two behaviors, in a fixed order (their indices are behavior ids).
    public var behaviors: [Behavior]
    /// Name of the target behavior.
    public var target: String

    public init(behaviors: [Behavior], target: String) {
        self.behaviors = behaviors
        self.target = target
    }

    /// view / cart / purchase, target purchase: used when `dataset.json` is absent.
    public static let standard = DatasetConfig(
        behaviors: [
            Behavior(name: "view", phrase: "views"),
            Behavior(name: "cart", phrase: "adds to cart"),
            Behavior(name: "purchase", phrase: "purchases"),
        ],
        target: "purchase")

    /// Checks there are two or more distinct, non-empty behaviors and that the target is one of them.
    public func validated(file: String) throws -> DatasetConfig {
        if behaviors.count < 2 {
            throw DataError.badConfig(file: file, reason: "\"behaviors\" lists \(behaviors.count) behavior(s); list at least two, e.g. {\"view\": \"views\", \"purchase\": \"purchases\"}")
        }
        var seen = Set<String>()
        for b in behaviors {
            if b.name.isEmpty || b.phrase.trimmingCharacters(in: .whitespaces).isEmpty {
                throw DataError.badConfig(file: file, reason: "behavior \"\(b.name)\" needs a non-empty name and phrase")
            }
            if !seen.insert(b.name).inserted {
                throw DataError.badConfig(file: file, reason: "behavior \"\(b.name)\" is listed twice")
            }
        }
        if !seen.contains(target) {
            throw DataError.badConfig(file: file, reason: "target \"\(target)\" is not one of the behaviors (\(behaviors.map(\.name).joined(separator: ", "))); set \"target\" to one of them")
        }
        return self
    }

    /// Reads `dataset.json`: `{"behaviors": {"view": "views", ...}, "target": "purchase"}`.
    /// `behaviors` may also be an array of `{"name": ..., "phrase": ...}`. Object keys keep their
    /// order in the file. Missing `behaviors` means the standard three; missing `target` means
    /// "purchase".
    public static func read(from url: URL) throws -> DatasetConfig {
        let name = url.path
        let data = Data(try readBoundedFile(name, limit: DataLimits.maximumJSONFileBytes))
        guard let text = decodeUTF8(data) else { throw DataError.notUTF8(file: name, line: 1) }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw DataError.badJSON(file: name, line: 1, reason: "not a JSON object")
        }
        var config = DatasetConfig.standard
        if let raw = dict["behaviors"] {
            if let map = raw as? [String: Any] {
                var list: [Behavior] = []
                for (k, v) in map {
                    guard let phrase = v as? String else {
                        throw DataError.badConfig(file: name, reason: "the phrase of behavior \"\(k)\" must be a string")
                    }
                    list.append(Behavior(name: k, phrase: phrase))
                }
                // JSONSerialization forgets key order: restore the file's order.
                func position(_ key: String) -> Int {
                    let quoted = "\"\(key)\""
                    return text.range(of: quoted).map { text.distance(from: text.startIndex, to: $0.lowerBound) } ?? Int.max
                }
                config.behaviors = list.sorted { (position($0.name), $0.name) < (position($1.name), $1.name) }
            } else if let array = raw as? [Any] {
                config.behaviors = try array.map { entry in
                    guard let e = entry as? [String: Any], let n = e["name"] as? String, let p = e["phrase"] as? String else {
                        throw DataError.badConfig(file: name, reason: "each entry of \"behaviors\" needs \"name\" and \"phrase\" strings")
                    }
                    return Behavior(name: n, phrase: p)
                }
            } else {
                throw DataError.badConfig(file: name, reason: "\"behaviors\" must map behavior names to phrases")
            }
        }
        if let t = dict["target"] {
            guard let t = t as? String else { throw DataError.badConfig(file: name, reason: "\"target\" must be a string") }
            config.target = t
        }
        return try config.validated(file: name)
    }

    /// The JSON text of `dataset.json` for this configuration (keys in behavior order).
    public func jsonText() -> String {
        let pairs = behaviors.map { "    \(jsonString($0.name)): \(jsonString($0.phrase))" }.joined(separator: ",\n")
        return "{\n  \"behaviors\": {\n\(pairs)\n  },\n  \"target\": \(jsonString(target))\n}\n"
    }
}

/// Options for `Dataset.load`.
public struct LoadOptions: Sendable {
    /// Drop bad rows (counting them in `Dataset.skipped`) instead of failing on the first one.
    public var skipInvalid = false
    /// Overrides the target behavior of `dataset.json`.
    public var target: String?
    /// Check that image paths stay inside the dataset and exist (on by default).
    public var checkImages = true

    public init(skipInvalid: Bool = false, target: String? = nil, checkImages: Bool = true) {
        self.skipInvalid = skipInvalid
        self.target = target
        self.checkImages = checkImages
    }
}

/// Rows dropped by `--skip-invalid`, by reason, with the first few messages.
public struct SkipReport: Sendable, Equatable {
    /// Count per reason (e.g. "unknown item").
    public var counts: [String: Int] = [:]
    /// The first messages, for the user to look at.
    public var examples: [String] = []

    public init() {}

    /// Total rows dropped.
    public var total: Int { counts.values.reduce(0, +) }

    mutating func add(_ reason: String, _ error: DataError) {
        counts[reason, default: 0] += 1
        if examples.count < 5 { examples.append(error.localizedDescription) }
    }

    /// "12 rows skipped (3 unknown item, 9 bad timestamp)" or nil when nothing was skipped.
    public var summary: String? {
        if total == 0 { return nil }
        let parts = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }
        return "\(total) invalid row(s) skipped (\(parts.joined(separator: ", ")))"
    }
}

/// A loaded, validated dataset directory (DESIGN.md §3).
///
/// Interactions are stored column-wise and grouped by user, ordered by timestamp (ties keep file
/// order), so memory is about 17 bytes an event plus the distinct user ids, whatever the text size.
public struct Dataset: Sendable {
    /// The dataset folder.
    public let url: URL
    /// Items in `items.jsonl` order; an item's index is its id everywhere else.
    public let items: [Item]
    /// `item_id` → index in `items`.
    public let itemIndex: [String: Int]
    /// Behaviors; a behavior's index is its id.
    public let behaviors: [Behavior]
    /// Index of the target behavior in `behaviors`.
    public let target: Int
    /// User ids in order of first appearance in `interactions.csv`.
    public let userIDs: [String]
    /// Events of user `u` are `userOffsets[u] ..< userOffsets[u + 1]` in the event columns.
    public let userOffsets: [Int]
    /// Item index of each event (grouped by user, time-ordered).
    public let eventItems: [Int32]
    /// Behavior index of each event.
    public let eventBehaviors: [UInt8]
    /// Unix seconds of each event.
    public let eventTimes: [Double]
    /// SHA-256 of the contents (items, interactions, config, images) and the effective target:
    /// the key for caches and for the model folder's record of its data.
    public let fingerprint: String
    /// Rows dropped under `skipInvalid`.
    public let skipped: SkipReport
    /// The distinct items of user `u`, ascending, are `userItems[userItemOffsets[u] ..<
    /// userItemOffsets[u + 1]]`: membership by binary search, so a user with a million events
    /// costs no per-example set.
    let userItemOffsets: [Int]
    let userItems: [Int32]

    /// The event range of user `u`.
    public func events(ofUser u: Int) -> Range<Int> { userOffsets[u]..<userOffsets[u + 1] }

    /// Number of events.
    public var eventCount: Int { eventItems.count }

    /// The configuration in effect.
    public var config: DatasetConfig { DatasetConfig(behaviors: behaviors, target: behaviors[target].name) }

    /// Builds a dataset from memory (tests, importers). `events` are (user id, item index, behavior
    /// index, time) in file order; they are grouped and ordered as `load` does.
    public init(url: URL, items: [Item], config: DatasetConfig,
                events: [(user: String, item: Int, behavior: Int, time: Double)],
                fingerprint: String = "", skipped: SkipReport = SkipReport()) throws {
        let config = try config.validated(file: "dataset configuration")
        var users: [String: Int32] = [:]
        var ids: [String] = []
        var cols = EventColumns()
        for e in events {
            let u: Int32
            if let x = users[e.user] { u = x } else { u = Int32(ids.count); users[e.user] = u; ids.append(e.user) }
            cols.append(user: u, item: Int32(e.item), behavior: UInt8(e.behavior), time: e.time)
        }
        let target = config.behaviors.firstIndex { $0.name == config.target }!
        self.init(url: url, items: items, behaviors: config.behaviors, target: target, userIDs: ids,
                  columns: cols, fingerprint: fingerprint, skipped: skipped)
    }

    init(url: URL, items: [Item], behaviors: [Behavior], target: Int, userIDs: [String],
         columns: EventColumns, fingerprint: String, skipped: SkipReport) {
        self.url = url
        self.items = items
        var index: [String: Int] = [:]
        for (i, item) in items.enumerated() { index[item.id] = i }
        self.itemIndex = index
        self.behaviors = behaviors
        self.target = target
        self.userIDs = userIDs
        self.fingerprint = fingerprint
        self.skipped = skipped
        // Group by user (counting sort, stable), then order each user's events by time; ties keep
        // file order because the grouping is stable and the sort key includes the position.
        let n = columns.users.count
        var offsets = [Int](repeating: 0, count: userIDs.count + 1)
        for u in columns.users { offsets[Int(u) + 1] += 1 }
        for u in 0..<userIDs.count { offsets[u + 1] += offsets[u] }
        var order = [Int32](repeating: 0, count: n)
        var fill = offsets
        for (row, u) in columns.users.enumerated() {
            order[fill[Int(u)]] = Int32(row)
            fill[Int(u)] += 1
        }
        let times = columns.times
        for u in 0..<userIDs.count {
            let r = offsets[u]..<offsets[u + 1]
            var sorted = true
            for k in r.dropFirst() where times[Int(order[k - 1])] > times[Int(order[k])] { sorted = false; break }
            if !sorted {
                order[r].sort { (times[Int($0)], $0) < (times[Int($1)], $1) }
            }
        }
        userOffsets = offsets
        let items = order.map { columns.items[Int($0)] }
        eventItems = items
        var distinctOffsets = [0]
        distinctOffsets.reserveCapacity(userIDs.count + 1)
        var distinct: [Int32] = []
        for u in 0..<userIDs.count {
            let sorted = items[offsets[u]..<offsets[u + 1]].sorted()
            for (k, item) in sorted.enumerated() where k == 0 || sorted[k - 1] != item { distinct.append(item) }
            distinctOffsets.append(distinct.count)
        }
        userItemOffsets = distinctOffsets
        userItems = distinct
        eventBehaviors = order.map { columns.behaviors[Int($0)] }
        eventTimes = order.map { times[Int($0)] }
    }
}

/// Interactions in file order, column-wise.
struct EventColumns {
    var users: [Int32] = []
    var items: [Int32] = []
    var behaviors: [UInt8] = []
    var times: [Double] = []

    mutating func append(user: Int32, item: Int32, behavior: UInt8, time: Double) {
        users.append(user)
        items.append(item)
        behaviors.append(behavior)
        times.append(time)
    }
}

/// A JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
