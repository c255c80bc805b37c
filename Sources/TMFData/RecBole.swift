import Foundation

/// Options of `importRecBole`.
public struct RecBoleImportOptions: Sendable {
    /// Atomic-file base name (`NAME.inter`, `NAME.item`); nil = the only `.inter` in the folder.
    public var name: String?
    /// With only a rating field: ratings at or above this are `rate_high` (the target), below
    /// `rate_low`.
    public var ratingThreshold: Double = 4
    /// Target behavior; nil = `buy` / `purchase` / `pay` / `order` if present (then `rate_high`).
    public var target: String?

    public init(name: String? = nil, ratingThreshold: Double = 4, target: String? = nil) {
        self.name = name
        self.ratingThreshold = ratingThreshold
        self.target = target
    }
}

/// What `importRecBole` wrote.
public struct RecBoleImportReport: Sendable, Equatable {
    public var items: Int
    public var events: Int
    public var behaviors: [String]
    public var target: String
    /// Interactions dropped because their item is not in `.item`.
    public var droppedUnknownItems: Int
    /// Items whose title was made distinct by appending their id.
    public var renamedTitles: Int
}

/// Converts RecBole atomic files to a tmf dataset folder (DESIGN.md §3).
///
/// `.inter` (tab-separated, header `name:type`) needs `user_id` and `item_id`, and a behavior field
/// (`behavior`, `behavior_type`, `behaviour`, `action`, `type`) or a `rating`; `timestamp` is
/// optional (without it, file order is the time). `.item` needs `item_id` and a `title` (or
/// `name` / `movie_title`) field; `brand`, `categories` / `genre` / `class` and `description` are kept, and a
/// `release_year` / `year` field is appended to the description ("Released in 1995.").
/// Duplicate titles get " (ITEM_ID)" appended, since titles are the answers.
///
/// - Throws: `DataError` naming the file and line for a missing file or field, or a non-empty `out`.
public func importRecBole(from dir: URL, to out: URL, options: RecBoleImportOptions = RecBoleImportOptions()) throws
    -> RecBoleImportReport
{
    let fm = FileManager.default
    let base: String
    if let name = options.name {
        base = name
    } else {
        let inters = ((try? fm.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasSuffix(".inter") }.sorted()
        guard inters.count == 1 else {
            throw DataError.missingFile(
                path: dir.appendingPathComponent("*.inter").path,
                hint: inters.isEmpty ? "the folder needs RecBole atomic files NAME.inter and NAME.item"
                    : "found \(inters.count) .inter files; pick one with --name")
        }
        base = String(inters[0].dropLast(".inter".count))
    }
    let interURL = dir.appendingPathComponent(base + ".inter")
    let itemURL = dir.appendingPathComponent(base + ".item")
    for f in [interURL, itemURL] where !fm.fileExists(atPath: f.path) {
        throw DataError.missingFile(path: f.path, hint: "RecBole import needs \(base).inter and \(base).item")
    }
    if let existing = try? fm.contentsOfDirectory(atPath: out.path), !existing.isEmpty {
        throw DataError.invalidArgument("\(out.path) exists and is not empty; choose a new folder or delete it first")
    }
    do { try fm.createDirectory(at: out, withIntermediateDirectories: true) } catch {
        throw DataError.io(path: out.path, reason: "cannot create folder (\(error.localizedDescription))")
    }

    /// Parses a `name:type` header into name → column.
    func header(_ bytes: ArraySlice<UInt8>, file: String) throws -> [String: Int] {
        guard let s = decodeUTF8(bytes) else { throw DataError.notUTF8(file: file, line: 1) }
        var out: [String: Int] = [:]
        for (i, f) in s.split(separator: "\t", omittingEmptySubsequences: false).enumerated() {
            let name = f.split(separator: ":").first.map(String.init) ?? ""
            if out[name] == nil { out[name] = i }
        }
        return out
    }
    func fields(_ bytes: ArraySlice<UInt8>, file: String, line: Int) throws -> [String] {
        guard let s = decodeUTF8(bytes) else { throw DataError.notUTF8(file: file, line: line) }
        return s.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
    }

    // Items.
    var hasher = SHA256()
    var cols: [String: Int] = [:]
    var itemsText = ""
    var known: [String: Int] = [:]
    var titles = Set<String>()
    var renamed = 0
    try forEachLine(path: itemURL.path, hasher: &hasher) { bytes, line in
        if line == 1 {
            cols = try header(bytes, file: itemURL.path)
            if cols["item_id"] == nil { throw DataError.missingColumn(file: itemURL.path, column: "item_id:token", header: Array(cols.keys).sorted()) }
            if cols["title"] == nil && cols["name"] == nil && cols["movie_title"] == nil {
                throw DataError.missingColumn(file: itemURL.path, column: "title:token_seq", header: Array(cols.keys).sorted())
            }
            return
        }
        if bytes.isEmpty { return }
        let f = try fields(bytes, file: itemURL.path, line: line)
        func get(_ names: String...) -> String? {
            for n in names { if let c = cols[n], c < f.count, !f[c].isEmpty { return f[c] } }
            return nil
        }
        guard let id = get("item_id") else { throw DataError.missingField(file: itemURL.path, line: line, field: "item_id") }
        if let first = known[id] { throw DataError.duplicateItemID(file: itemURL.path, line: line, id: id, firstLine: first) }
        var title = normalizeSpaces(get("title", "name", "movie_title") ?? "item \(id)")
        if titles.contains(normalizeTitle(title)) {
            title += " (\(id))"
            renamed += 1
        }
        titles.insert(normalizeTitle(title))
        known[id] = line
        var obj = "{\"item_id\": \(jsonString(id)), \"title\": \(jsonString(title))"
        if let b = get("brand") { obj += ", \"brand\": \(jsonString(b))" }
        if let c = get("categories", "genre", "category", "class") {
            let list = c.split(separator: " ").map { jsonString(String($0)) }.joined(separator: ", ")
            obj += ", \"categories\": [\(list)]"
        }
        var description = get("description")
        if let y = get("release_year", "year") {  // MovieLens: the year joins the text CLIP and the LLM read
            description = (description.map { $0 + " " } ?? "") + "Released in \(y)."
        }
        if let d = description { obj += ", \"description\": \(jsonString(d))" }
        itemsText += obj + "}\n"
    }

    // Interactions.
    var csv = "user_id,item_id,behavior,timestamp\n"
    let csvTmp = out.appendingPathComponent(".interactions.csv.tmp")
    _ = fm.createFile(atPath: csvTmp.path, contents: nil)
    guard let handle = FileHandle(forWritingAtPath: csvTmp.path) else {
        throw DataError.io(path: csvTmp.path, reason: "cannot create file")
    }
    var behaviorColumn: Int?
    var ratingColumn: Int?
    var seen: [String] = []
    var events = 0
    var dropped = 0
    try forEachLine(path: interURL.path, hasher: &hasher) { bytes, line in
        if line == 1 {
            cols = try header(bytes, file: interURL.path)
            for c in ["user_id", "item_id"] where cols[c] == nil {
                throw DataError.missingColumn(file: interURL.path, column: c + ":token", header: Array(cols.keys).sorted())
            }
            behaviorColumn = ["behavior", "behavior_type", "behaviour", "action", "type"].lazy.compactMap { cols[$0] }.first
            ratingColumn = cols["rating"]
            if behaviorColumn == nil && ratingColumn == nil {
                throw DataError.missingColumn(file: interURL.path, column: "behavior:token (or rating:float)", header: Array(cols.keys).sorted())
            }
            return
        }
        if bytes.isEmpty { return }
        let f = try fields(bytes, file: interURL.path, line: line)
        func at(_ c: Int?) -> String? { c.flatMap { $0 < f.count ? f[$0] : nil } }
        guard let user = at(cols["user_id"]), !user.isEmpty, let item = at(cols["item_id"]) else {
            throw DataError.wrongFieldCount(file: interURL.path, line: line, expected: cols.count, found: f.count)
        }
        guard known[item] != nil else { dropped += 1; return }
        let behavior: String
        if let bc = behaviorColumn {
            guard let b = at(bc), !b.isEmpty else { throw DataError.missingField(file: interURL.path, line: line, field: "behavior") }
            behavior = b
        } else {
            guard let r = at(ratingColumn).flatMap(Double.init) else {
                throw DataError.missingField(file: interURL.path, line: line, field: "rating")
            }
            behavior = r >= options.ratingThreshold ? "rate_high" : "rate_low"
        }
        if !seen.contains(behavior) { seen.append(behavior) }
        var time = String(line - 1)
        if let t = at(cols["timestamp"]), !t.isEmpty {
            // Finite and below 2^53 (where a Double stops holding every whole second): a time
            // past that is not a time (found by fuzzing: 1e30 trapped the Int64 conversion).
            guard let v = Double(t), v.isFinite, abs(v) < 9.0e15 else {
                throw DataError.badTimestamp(file: interURL.path, line: line, value: String(t.prefix(200)))
            }
            time = v == v.rounded() ? String(Int64(v)) : String(v)
        }
        csv += [user, item, behavior, time].map(csvField).joined(separator: ",") + "\n"
        events += 1
        if csv.utf8.count > 1 << 20 {
            handle.write(Data(csv.utf8))
            csv.removeAll(keepingCapacity: true)
        }
    }
    handle.write(Data(csv.utf8))
    try handle.close()

    if behaviorColumn == nil {
        for b in ["rate_low", "rate_high"] where !seen.contains(b) { seen.append(b) }
    }
    if seen.count < 2 {
        throw DataError.badConfig(file: interURL.path, reason: "only \(seen.count) behavior type(s) found (\(seen.joined(separator: ", "))); tmf needs at least two")
    }
    let target = options.target
        ?? ["buy", "purchase", "pay", "order", "rate_high"].first { seen.contains($0) }
    guard let target, seen.contains(target) else {
        throw DataError.badConfig(file: interURL.path, reason: "no target behavior: pass --target with one of \(seen.joined(separator: ", "))")
    }
    let config = DatasetConfig(behaviors: seen.map { Behavior(name: $0, phrase: recBolePhrase($0)) }, target: target)
    try writeAtomically(itemsText, to: out.appendingPathComponent("items.jsonl"))
    try writeAtomically(config.jsonText(), to: out.appendingPathComponent("dataset.json"))
    if rename(csvTmp.path, out.appendingPathComponent("interactions.csv").path) != 0 {
        throw DataError.io(path: out.path, reason: String(cString: strerror(errno)))
    }
    return RecBoleImportReport(items: known.count, events: events, behaviors: seen, target: target,
                               droppedUnknownItems: dropped, renamedTitles: renamed)
}

/// A prompt phrase for a behavior name ("pv" → "views"); edit `dataset.json` to change it.
func recBolePhrase(_ name: String) -> String {
    switch name.lowercased() {
    case "pv", "view", "click", "clk": return "views"
    case "cart", "add_to_cart", "addtocart": return "adds to cart"
    case "fav", "favorite", "favourite", "collect": return "favourites"
    case "buy", "purchase", "pay", "order": return "purchases"
    case "rate_high": return "rates highly"
    case "rate_low": return "rates poorly"
    default: return name.replacingOccurrences(of: "_", with: " ") + "s"
    }
}

/// A CSV field, quoted if needed (RFC 4180).
func csvField(_ s: String) -> String {
    if s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
    return s
}

private func normalizeSpaces(_ s: String) -> String {
    s.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
}
