import Foundation

extension Dataset {
    /// Loads and validates a dataset folder: `items.jsonl`, `interactions.csv`, the optional
    /// `dataset.json` and the images the items name. Files are streamed in 1 MiB chunks.
    ///
    /// - Throws: `DataError` naming the file, line and fix for the first problem found; with
    ///   `options.skipInvalid` bad rows are dropped and counted in `skipped` instead (missing files,
    ///   a bad header or configuration, and a missing target behavior still throw).
    public static func load(from url: URL, options: LoadOptions = LoadOptions()) throws -> Dataset {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw DataError.missingFile(path: url.path, hint: "pass a dataset folder holding items.jsonl and interactions.csv (see DESIGN.md §3), or make one with `tmf synth`")
        }
        let itemsURL = url.appendingPathComponent("items.jsonl")
        let interURL = url.appendingPathComponent("interactions.csv")
        let configURL = url.appendingPathComponent("dataset.json")
        for (f, what) in [(itemsURL, "one JSON object per item: {\"item_id\": ..., \"title\": ...}"),
                          (interURL, "a CSV with header user_id,item_id,behavior,timestamp")] {
            if !fm.fileExists(atPath: f.path) {
                throw DataError.missingFile(path: f.path, hint: "the dataset folder needs \(f.lastPathComponent): \(what)")
            }
        }
        var config = DatasetConfig.standard
        var configHash = SHA256()
        if fm.fileExists(atPath: configURL.path) {
            config = try DatasetConfig.read(from: configURL)
            configHash.update(try readBoundedFile(configURL.path, limit: DataLimits.maximumJSONFileBytes))
        }
        if let t = options.target {
            config.target = t
            config = try config.validated(file: "--target")
        }
        var skipped = SkipReport()

        // Items.
        var itemHash = SHA256()
        let (items, imageHash) = try loadItems(itemsURL, root: url, options: options, hasher: &itemHash, skipped: &skipped)

        // Interactions.
        var interHash = SHA256()
        let behaviorIndex = Dictionary(uniqueKeysWithValues: config.behaviors.enumerated().map { ($1.name, $0) })
        let target = behaviorIndex[config.target]!
        var itemIndex: [String: Int32] = [:]
        itemIndex.reserveCapacity(items.count)
        for (i, item) in items.enumerated() { itemIndex[item.id] = Int32(i) }
        var users: [String: Int32] = [:]
        var userIDs: [String] = []
        var cols = EventColumns()
        var columns: [String: Int] = [:]
        var needed = 0
        var (userCol, itemCol, behaviorCol, timeCol) = (0, 0, 0, 0)
        var sawHeader = false
        let file = interURL.path
        try forEachCSVRecord(path: file, hasher: &interHash) { rec in
            if !sawHeader {
                sawHeader = true
                var header: [String] = []
                for i in 0..<rec.count {
                    guard let s = rec.string(i) else { throw DataError.notUTF8(file: file, line: rec.line) }
                    var name = s.trimmingCharacters(in: .whitespaces)
                    if name.hasPrefix("\u{FEFF}") { name.removeFirst() }
                    header.append(name)
                }
                for (i, name) in header.enumerated() where columns[name] == nil { columns[name] = i }
                for c in ["user_id", "item_id", "behavior", "timestamp"] where columns[c] == nil {
                    throw DataError.missingColumn(file: file, column: c, header: header)
                }
                needed = header.count
                (userCol, itemCol, behaviorCol, timeCol) =
                    (columns["user_id"]!, columns["item_id"]!, columns["behavior"]!, columns["timestamp"]!)
                return
            }
            do {
                if rec.count != needed {
                    throw DataError.wrongFieldCount(file: file, line: rec.line, expected: needed, found: rec.count)
                }
                guard let user = rec.string(userCol), let itemID = rec.string(itemCol),
                      let behavior = rec.string(behaviorCol), let stamp = rec.string(timeCol)
                else { throw DataError.notUTF8(file: file, line: rec.line) }
                if user.isEmpty { throw DataError.missingField(file: file, line: rec.line, field: "user_id") }
                guard let item = itemIndex[itemID] else { throw DataError.unknownItem(file: file, line: rec.line, id: itemID) }
                guard let b = behaviorIndex[behavior] else {
                    throw DataError.unknownBehavior(file: file, line: rec.line, behavior: behavior, known: config.behaviors.map(\.name))
                }
                guard let time = parseTimestamp(stamp) else { throw DataError.badTimestamp(file: file, line: rec.line, value: stamp) }
                let u: Int32
                if let x = users[user] { u = x } else {
                    u = Int32(userIDs.count)
                    users[user] = u
                    userIDs.append(user)
                }
                cols.append(user: u, item: item, behavior: UInt8(b), time: time)
            } catch let error as DataError {
                guard options.skipInvalid else { throw error }
                skipped.add(reason(error), error)
            }
        }
        if !sawHeader {
            throw DataError.missingColumn(file: file, column: "user_id", header: [])
        }
        if !cols.behaviors.contains(UInt8(target)) {
            throw DataError.noTargetBehavior(file: file, target: config.target)
        }

        var all = SHA256()
        all.update(string: "tmf-dataset-v1\n")
        for h in [itemHash, interHash, configHash, imageHash] { all.update(string: h.hexDigest() + "\n") }
        all.update(string: "target=\(config.target)\nskipInvalid=\(options.skipInvalid)\n")
        return Dataset(url: url, items: items, behaviors: config.behaviors, target: target, userIDs: userIDs,
                       columns: cols, fingerprint: all.hexDigest(), skipped: skipped)
    }

    private static func reason(_ e: DataError) -> String {
        switch e {
        case .wrongFieldCount: return "wrong field count"
        case .notUTF8: return "not UTF-8"
        case .badJSON: return "bad JSON"
        case .missingField: return "missing field"
        case .duplicateItemID: return "duplicate item id"
        case .duplicateTitle: return "duplicate title"
        case .unknownItem: return "unknown item"
        case .unknownBehavior: return "unknown behavior"
        case .badTimestamp: return "bad timestamp"
        case .imageEscapes: return "image outside dataset"
        case .missingImage: return "missing image"
        default: return "other"
        }
    }

    private static func loadItems(_ itemsURL: URL, root: URL, options: LoadOptions, hasher: inout SHA256,
                                  skipped: inout SkipReport) throws -> ([Item], SHA256) {
        var items: [Item] = []
        var idLine: [String: Int] = [:]
        var titleLine: [String: Int] = [:]
        var imageHash = SHA256()
        let file = itemsURL.path
        let rootReal = realPath(root.path) ?? root.standardizedFileURL.path
        try forEachLine(path: file, hasher: &hasher) { raw, line in
            var bytes = raw
            if line == 1 && bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }  // UTF-8 BOM
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
            do {
                guard decodeUTF8(bytes) != nil else { throw DataError.notUTF8(file: file, line: line) }
                let obj: Any
                do { obj = try JSONSerialization.jsonObject(with: Data(bytes)) } catch {
                    throw DataError.badJSON(file: file, line: line, reason: "not valid JSON")
                }
                guard let dict = obj as? [String: Any] else {
                    throw DataError.badJSON(file: file, line: line, reason: "not a JSON object")
                }
                func text(_ key: String) throws -> String? {
                    switch dict[key] {
                    case nil, is NSNull: return nil
                    case let s as String: return s
                    case let n as NSNumber where key == "item_id": return n.stringValue
                    default: throw DataError.badJSON(file: file, line: line, reason: "\"\(key)\" must be a string")
                    }
                }
                guard let id = try text("item_id"), !id.isEmpty else {
                    throw DataError.missingField(file: file, line: line, field: "item_id")
                }
                guard let title = try text("title"), !normalizeTitle(title).isEmpty else {
                    throw DataError.missingField(file: file, line: line, field: "title")
                }
                if let first = idLine[id] { throw DataError.duplicateItemID(file: file, line: line, id: id, firstLine: first) }
                let key = normalizeTitle(title)
                if let first = titleLine[key] { throw DataError.duplicateTitle(file: file, line: line, title: title, firstLine: first) }
                var categories: [String] = []
                switch dict["categories"] {
                case nil, is NSNull: break
                case let s as String: categories = [s]
                case let a as [Any]:
                    categories = try a.map {
                        guard let s = $0 as? String else {
                            throw DataError.badJSON(file: file, line: line, reason: "\"categories\" must be a list of strings")
                        }
                        return s
                    }
                default: throw DataError.badJSON(file: file, line: line, reason: "\"categories\" must be a list of strings")
                }
                var image = try text("image")
                if image?.isEmpty == true { image = nil }
                if let path = image, options.checkImages {
                    try checkImage(path, root: root, rootReal: rootReal, file: file, line: line,
                                   label: "\(items.count)\t\(path)", hasher: &imageHash)
                }
                items.append(Item(id: id, title: title, brand: try text("brand"), categories: categories,
                                  description: try text("description"), image: image))
                idLine[id] = line
                titleLine[key] = line
            } catch let error as DataError {
                guard options.skipInvalid else { throw error }
                skipped.add(reason(error), error)
            }
        }
        return (items, imageHash)
    }

    /// Checks an image path stays inside the dataset and exists, and feeds `hasher` its label,
    /// size and bytes (streamed: an image of any size costs no memory here).
    private static func checkImage(_ path: String, root: URL, rootReal: String, file: String, line: Int,
                                   label: String, hasher: inout SHA256) throws {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if path.hasPrefix("/") || path.hasPrefix("~") || parts.contains("..") || path.contains("\\") {
            throw DataError.imageEscapes(file: file, line: line, path: path)
        }
        let full = (root.path.hasSuffix("/") ? root.path : root.path + "/") + path
        guard let real = realPath(full) else {
            // A dangling symlink or an absent file.
            throw DataError.missingImage(file: file, line: line, path: path)
        }
        if !real.hasPrefix(rootReal.hasSuffix("/") ? rootReal : rootReal + "/") {
            throw DataError.imageEscapes(file: file, line: line, path: path)
        }
        var hashed = hasher
        guard hashFile(real, label: label, into: &hashed) else {
            throw DataError.missingImage(file: file, line: line, path: path)
        }
        hasher = hashed
    }
}

/// `realpath(3)`: the absolute path with symlinks resolved, or nil if it does not exist.
func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}
