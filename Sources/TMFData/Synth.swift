import Foundation
import TMFImage
import TMFTensor

/// Options of `synthesizeShop`.
public struct SynthOptions: Sendable {
    public var users: Int
    public var items: Int
    public var seed: UInt64
    /// Side of the square PNG images, in pixels.
    public var imageSize: Int

    public init(users: Int = 1000, items: Int = 500, seed: UInt64 = 1, imageSize: Int = 32) {
        self.users = users
        self.items = items
        self.seed = seed
        self.imageSize = imageSize
    }
}

/// What `synthesizeShop` wrote.
public struct SynthReport: Sendable, Equatable {
    public var items: Int
    public var users: Int
    public var events: Int
}

/// The synthetic shop's world: sports goods in shopping topics, with complementary categories.
enum SynthWorld {
    struct Category {
        let name: String
        let topic: Int
    }

    static let topics = ["Cycling", "Running", "Camping", "Yoga", "Swimming", "Winter sports"]
    /// Per topic, categories in complement order: buying one leads to the next (helmet → shorts).
    static let topicCategories: [[String]] = [
        ["bike helmet", "bike shorts", "cycling gloves", "cycling jersey", "bike light"],
        ["running shoes", "running socks", "running shorts", "running cap", "sports watch"],
        ["tent", "sleeping bag", "camping lantern", "hiking backpack", "hiking boots"],
        ["yoga mat", "yoga pants", "yoga block", "water bottle"],
        ["swimsuit", "swim goggles", "beach towel", "swim cap"],
        ["ski jacket", "ski gloves", "beanie", "snow boots"],
    ]
    static let categories: [Category] = topicCategories.enumerated().flatMap { t, names in
        names.map { Category(name: $0, topic: t) }
    }
    static let categoriesOfTopic: [[Int]] = {
        var out = [[Int]](repeating: [], count: topics.count)
        for (i, c) in categories.enumerated() { out[c.topic].append(i) }
        return out
    }()

    /// The complementary next category of `c` (the next one in its topic, cyclically).
    static func complement(_ c: Int) -> Int {
        let list = categoriesOfTopic[categories[c].topic]
        return list[(list.firstIndex(of: c)! + 1) % list.count]
    }

    static let colors: [(name: String, rgb: (UInt8, UInt8, UInt8))] = [
        ("red", (214, 32, 40)), ("pink", (240, 120, 180)), ("orange", (245, 140, 20)),
        ("yellow", (238, 206, 38)), ("green", (40, 160, 64)), ("teal", (20, 150, 150)),
        ("blue", (32, 84, 204)), ("purple", (132, 52, 172)), ("black", (28, 28, 28)),
        ("white", (250, 250, 250)),
    ]
    static let audiences = ["kids", "women", "men"]
    static let audienceTitle = ["Kids'", "Women's", "Men's"]
    static let brands = ["Trailhead", "Velora", "Northpeak", "Aquafin", "Stridewell", "Lumen", "Kestrel", "Bramble",
                         "Zephyr", "Ironoak", "Solace", "Rivet", "Nimbus", "Cobalt", "Fennec", "Quillon"]
    static let styles = ["classic", "sporty", "retro", "minimalist", "neon"]
    static let materials = ["recycled polyester", "merino wool", "ripstop nylon", "organic cotton", "breathable mesh",
                            "soft-touch fleece", "lightweight aluminium", "durable canvas"]
    static let syllables = ["ka", "lo", "mi", "ra", "ven", "to", "zu", "pe", "qui", "sa", "dor", "fi", "ne", "bo", "xu", "le"]

    /// A distinct model name for item `i` of `n`: base-16 syllables of a bijective scramble of `i`.
    static func modelName(_ i: Int, of n: Int) -> String {
        var digits = 3
        var space = 16 * 16 * 16
        while space < n { digits += 1; space *= 16 }
        let x = (i &* 40_503 &+ 12_345) % space  // odd multiplier: a bijection mod 16^digits
        var v = x
        var parts: [String] = []
        for _ in 0..<digits { parts.append(syllables[v % 16]); v /= 16 }
        let s = parts.joined()
        return s.prefix(1).uppercased() + s.dropFirst()
    }
}

/// A synthetic item's latent attributes.
struct SynthItem {
    var category: Int
    var color: Int
    var audience: Int
    var brand: Int
    var style: Int
    var popularity: Double
}

/// A synthetic user's latent profile.
struct SynthProfile {
    var audience: Int
    var colors: [Int]
    var brands: [Int]
    var style: Int
    var topics: [Int]
}

/// How the item of one purchase event was chosen, as `SynthOracle` needs it.
enum SynthChoice {
    /// Viewed and carted in the same session before the purchase: the item is this one.
    case known(Int)
    /// A direct purchase: `SynthShop.pick(category, strict: true)`, re-drawn up to six times
    /// while it lands in `rejected` (the session's views and everything touched before).
    case picked(category: Int, rejected: Set<Int>)
}

/// One event of a synthetic user, in time order.
struct SynthEvent {
    var item: Int
    var behavior: String
    var time: Int
    /// For purchases: how the item was chosen.
    var choice: SynthChoice?
}

/// The synthetic shop's items and its generative process (`synthesizeShop` writes it,
/// `SynthOracle` scores with it).
struct SynthShop {
    typealias W = SynthWorld
    let items: [SynthItem]
    /// `items.jsonl`'s text.
    let itemLines: String
    let seed: UInt64
    // Buckets for fast sampling: (category, audience, colour) → items, and coarser fallbacks.
    let buckets: [[Int32]], byCatAud: [[Int32]], byCat: [[Int32]]

    /// Draws the items (and their pictures, handed to `image` with the item id).
    init(options: SynthOptions, image: (String, RGBImage) throws -> Void) throws {
        seed = options.seed
        var rng = SeededRNG(seed: options.seed, key: ["synth", "items"])
        var items: [SynthItem] = []
        items.reserveCapacity(options.items)
        // Brands specialise: each topic has four brands, each brand two topics.
        func brandFor(topic: Int, _ r: inout SeededRNG) -> Int { (topic * 3 + r.nextInt(below: 4)) % W.brands.count }
        for i in 0..<options.items {
            let category = i < W.categories.count ? i : rng.nextInt(below: W.categories.count)
            var audience = rng.nextInt(below: 3)
            let cat = W.categories[category].name
            if cat == "yoga pants" || cat == "swimsuit", audience == 2, rng.nextFloat() < 0.5 { audience = 1 }
            items.append(SynthItem(
                category: category, color: rng.nextInt(below: W.colors.count), audience: audience,
                brand: brandFor(topic: W.categories[category].topic, &rng), style: rng.nextInt(below: W.styles.count),
                popularity: Double(0.9 * rng.nextNormal())))
        }
        var lines = ""
        lines.reserveCapacity(options.items * 300)
        for (i, it) in items.enumerated() {
            let id = "I" + zeroPadded(i + 1, 6)
            let color = W.colors[it.color].name
            let cat = W.categories[it.category].name
            // Where the colour shows: title (45%), description only (25%), image only (30%).
            let r = rng.nextFloat()
            let colorPlace = r < 0.45 ? 0 : (r < 0.70 ? 1 : 2)
            let audienceInTitle = rng.nextFloat() < 0.7
            let styleInTitle = rng.nextFloat() < 0.3
            var title = [W.brands[it.brand]]
            if audienceInTitle { title.append(W.audienceTitle[it.audience]) }
            if colorPlace == 0 { title.append(color.prefix(1).uppercased() + color.dropFirst()) }
            if styleInTitle { title.append(W.styles[it.style].prefix(1).uppercased() + W.styles[it.style].dropFirst()) }
            title.append(cat.split(separator: " ").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined(separator: " "))
            title.append(W.modelName(i, of: options.items))
            var desc = "A \(W.styles[it.style]) \(cat) for \(W.audiences[it.audience]) by \(W.brands[it.brand])"
            desc += colorPlace == 1 ? ", in \(color)." : "."
            desc += " Made of \(W.materials[rng.nextInt(below: W.materials.count)])."
            let topic = W.topics[W.categories[it.category].topic]
            lines += "{\"item_id\": \(jsonString(id)), \"title\": \(jsonString(title.joined(separator: " "))), "
                + "\"brand\": \(jsonString(W.brands[it.brand])), \"categories\": [\(jsonString(topic)), \(jsonString(cat))], "
                + "\"description\": \(jsonString(desc)), \"image\": \"images/\(id).png\"}\n"
            try image(id, synthImage(it, size: options.imageSize, rng: &rng))
        }
        self.items = items
        itemLines = lines

        let nb = W.categories.count * 3 * W.colors.count
        var buckets = [[Int32]](repeating: [], count: nb)
        var byCatAud = [[Int32]](repeating: [], count: W.categories.count * 3)
        var byCat = [[Int32]](repeating: [], count: W.categories.count)
        for (i, it) in items.enumerated() {
            buckets[(it.category * 3 + it.audience) * W.colors.count + it.color].append(Int32(i))
            byCatAud[it.category * 3 + it.audience].append(Int32(i))
            byCat[it.category].append(Int32(i))
        }
        self.buckets = buckets
        self.byCatAud = byCatAud
        self.byCat = byCat
    }

    /// The items an item of `category` for audience `aud` in colour `col` is drawn from (coarser
    /// when none match; empty only when the category has no items: then any item, uniformly).
    func pool(category: Int, audience aud: Int, color col: Int) -> [Int32] {
        var pool = buckets[(category * 3 + aud) * W.colors.count + col]
        if pool.isEmpty { pool = byCatAud[category * 3 + aud] }
        if pool.isEmpty { pool = byCat[category] }
        return pool
    }

    /// How much `profile` likes `item` before browsing noise: popularity, favourite brand, style.
    func appeal(_ item: Int, _ profile: SynthProfile) -> Double {
        let it = items[item]
        var s = it.popularity
        if profile.brands.contains(it.brand) { s += 1.5 }
        if it.style == profile.style { s += 1.0 }
        return s
    }

    /// An item of `category` for `profile`; `strict` follows the profile more closely (and has
    /// no browsing noise).
    func pick(_ category: Int, strict: Bool, profile: SynthProfile, _ r: inout SeededRNG) -> Int {
        let aud = r.nextFloat() < (strict ? 0.95 : 0.8) ? profile.audience : r.nextInt(below: 3)
        let col = r.nextFloat() < (strict ? 0.85 : 0.5)
            ? profile.colors[r.nextInt(below: 2)] : r.nextInt(below: W.colors.count)
        let pool = pool(category: category, audience: aud, color: col)
        if pool.isEmpty { return r.nextInt(below: items.count) }
        var best = -1
        var bestScore = -Double.infinity
        for _ in 0..<min(6, pool.count) {
            let i = Int(pool[r.nextInt(below: pool.count)])
            var s = appeal(i, profile)
            s += strict ? 0 : -log(-log(max(r.nextDouble(), 1e-12)))  // Gumbel noise when browsing
            if s > bestScore { bestScore = s; best = i }
        }
        return best
    }

    /// A direct purchase: an item the user has not seen (found elsewhere), so a strict pick is
    /// re-drawn up to six times while it lands in `rejected`.
    func directPurchase(_ category: Int, profile: SynthProfile, rejected: Set<Int>, _ r: inout SeededRNG) -> Int {
        var buy = pick(category, strict: true, profile: profile, &r)
        for _ in 0..<6 where rejected.contains(buy) { buy = pick(category, strict: true, profile: profile, &r) }
        return buy
    }

    /// User `u`'s profile and events.
    func user(_ u: Int) -> (profile: SynthProfile, events: [SynthEvent]) {
        var r = SeededRNG(seed: seed, key: ["synth", "user", String(u)])
        let audience = [0, 1, 1, 2, 2][r.nextInt(below: 5)]
        let colors = [r.nextInt(below: W.colors.count), r.nextInt(below: W.colors.count)]
        let favBrands = [r.nextInt(below: W.brands.count), r.nextInt(below: W.brands.count)]
        let style = r.nextInt(below: W.styles.count)
        var topics = [r.nextInt(below: W.topics.count)]
        if r.nextFloat() < 0.5 { topics.append(r.nextInt(below: W.topics.count)) }
        let profile = SynthProfile(audience: audience, colors: colors, brands: favBrands, style: style, topics: topics)

        var events: [SynthEvent] = []
        var t = 1_700_000_000 + r.nextInt(below: 60 * 86_400)
        let sessions = 3 + r.nextInt(below: 5)
        var lastPurchase: Int? = nil
        var touched = Set<Int>()
        for s in 0..<sessions {
            t += 86_400 + r.nextInt(below: 3 * 86_400)
            let topic = r.nextFloat() < 0.85 ? topics[r.nextInt(below: topics.count)] : r.nextInt(below: W.topics.count)
            var category = W.categoriesOfTopic[topic][r.nextInt(below: W.categoriesOfTopic[topic].count)]
            if let last = lastPurchase, W.categories[last].topic == topic, r.nextFloat() < 0.7 {
                category = W.complement(last)
            }
            // Session kind: 0 browse then buy (40%), 1 buy directly (45%), 2 browse only (15%, never
            // the last two sessions).
            let x = r.nextFloat()
            let kind = x < 0.4 ? 0 : (x < 0.85 || s >= sessions - 2 ? 1 : 2)
            var session: [(Int, String, SynthChoice?)] = []
            var viewed: [Int] = []
            for _ in 0..<(kind == 1 ? 1 + r.nextInt(below: 2) : 2 + r.nextInt(below: 3)) {
                viewed.append(pick(category, strict: false, profile: profile, &r))
            }
            for v in viewed { session.append((v, "view", nil)) }
            switch kind {
            case 0:
                let buy = pick(category, strict: true, profile: profile, &r)
                session.insert((buy, "view", nil), at: r.nextInt(below: session.count + 1))
                if r.nextFloat() < 0.5, let other = viewed.first, other != buy { session.append((other, "cart", nil)) }
                session.append((buy, "cart", nil))
                session.append((buy, "purchase", .known(buy)))
                lastPurchase = items[buy].category
            case 1:
                let rejected = touched.union(viewed)
                let buy = directPurchase(category, profile: profile, rejected: rejected, &r)
                session.append((buy, "purchase", .picked(category: category, rejected: rejected)))
                lastPurchase = items[buy].category
            default:
                if r.nextFloat() < 0.5 { session.append((viewed[0], "cart", nil)) }
            }
            for (item, behavior, choice) in session {
                touched.insert(item)
                t += 20 + r.nextInt(below: 300)
                events.append(SynthEvent(item: item, behavior: behavior, time: t, choice: choice))
            }
        }
        return (profile, events)
    }
}

/// Writes a synthetic shop to `url` (which must not exist or be empty): `items.jsonl`,
/// `interactions.csv`, `dataset.json` (view / cart / purchase) and one PNG per item.
///
/// Items have latent category, colour, audience (kids / women / men), brand and style. Titles
/// name the brand, the category and a unique model name, and some of audience, colour and style;
/// descriptions add more; for about 30% of items the colour shows only in the image (shape and
/// border by category, fill by colour). Users have a consistent audience, two favourite colours,
/// two favourite brands, a style and one or two favourite topics; their sessions view, add to cart
/// and purchase items that follow the intent (topic, and the complement of the last purchase:
/// helmet → bike shorts), the profile and the colour taste. Byte-identical for equal options.
///
/// - Throws: `DataError.invalidArgument` for bad sizes or a non-empty `url`, `DataError.io` or
///   `ImageError` when writing fails.
public func synthesizeShop(to url: URL, options: SynthOptions) throws -> SynthReport {
    try options.validate()
    let fm = FileManager.default
    if let existing = try? fm.contentsOfDirectory(atPath: url.path), !existing.isEmpty {
        throw DataError.invalidArgument("\(url.path) exists and is not empty; choose a new folder or delete it first")
    }
    let images = url.appendingPathComponent("images")
    do { try fm.createDirectory(at: images, withIntermediateDirectories: true) } catch {
        throw DataError.io(path: images.path, reason: "cannot create folder (\(error.localizedDescription))")
    }
    let shop = try SynthShop(options: options) { id, picture in
        try picture.writePNG(to: images.appendingPathComponent("\(id).png"))
    }
    try writeAtomically(shop.itemLines, to: url.appendingPathComponent("items.jsonl"))
    try writeAtomically(DatasetConfig.standard.jsonText(), to: url.appendingPathComponent("dataset.json"))

    let csvURL = url.appendingPathComponent("interactions.csv")
    let tmp = url.appendingPathComponent(".interactions.csv.tmp")
    _ = fm.createFile(atPath: tmp.path, contents: nil)
    guard let out = FileHandle(forWritingAtPath: tmp.path) else {
        throw DataError.io(path: tmp.path, reason: "cannot create file")
    }
    var buffer = "user_id,item_id,behavior,timestamp\n"
    var events = 0
    let digits = String(options.users).count
    for u in 0..<options.users {
        let uid = "U" + zeroPadded(u + 1, digits)
        for e in shop.user(u).events {
            buffer += uid + ",I" + zeroPadded(e.item + 1, 6) + "," + e.behavior + "," + String(e.time) + "\n"
            events += 1
        }
        if buffer.utf8.count > 1 << 20 {
            out.write(Data(buffer.utf8))
            buffer.removeAll(keepingCapacity: true)
        }
    }
    out.write(Data(buffer.utf8))
    try out.close()
    if rename(tmp.path, csvURL.path) != 0 {
        throw DataError.io(path: csvURL.path, reason: String(cString: strerror(errno)))
    }
    return SynthReport(items: options.items, users: options.users, events: events)
}

extension SynthOptions {
    /// Checks the sizes.
    func validate() throws {
        guard users >= 1 else { throw DataError.invalidArgument("--users must be at least 1") }
        guard items >= 11 else { throw DataError.invalidArgument("--items must be at least 11 (candidate sets hold 11 items)") }
        guard (8...512).contains(imageSize) else { throw DataError.invalidArgument("image size must be 8...512") }
    }
}

/// The picture of an item: a light background, a shape (and border style) by category, filled
/// with the item's colour (slightly jittered), outlined in dark grey.
func synthImage(_ it: SynthItem, size n: Int, rng: inout SeededRNG) -> RGBImage {
    let c = SynthWorld.colors[it.color].rgb
    let jitter = { (v: UInt8, r: inout SeededRNG) -> UInt8 in UInt8(clamping: Int(v) + r.nextInt(below: 17) - 8) }
    let fill = (jitter(c.0, &rng), jitter(c.1, &rng), jitter(c.2, &rng))
    let shape = it.category % 9
    let variant = it.category / 9
    var px = [UInt8](repeating: 236, count: n * n * 3)
    let h = Double(n) / 2
    for y in 0..<n {
        for x in 0..<n {
            let dx = (Double(x) + 0.5 - h) / h, dy = (Double(y) + 0.5 - h) / h
            var d: Double  // <= 1 inside the shape
            switch shape {
            case 0: d = (dx * dx + dy * dy).squareRoot() / 0.8                      // disc
            case 1: d = max(abs(dx), abs(dy)) / 0.7                                 // square
            case 2: d = max(dy / 0.7, (abs(dx) * 1.6 - dy * 0.8) / 0.9)             // triangle
            case 3: d = (abs(dx) + abs(dy)) / 0.85                                  // diamond
            case 4: d = max(abs(dx) / 0.85, abs(dy) / 0.35)                         // wide bar
            case 5: d = max(abs(dx) / 0.35, abs(dy) / 0.85)                         // tall bar
            case 6: let r = (dx * dx + dy * dy).squareRoot(); d = abs(r - 0.55) / 0.25  // ring
            case 7: d = min(max(abs(dx) / 0.8, abs(dy) / 0.25), max(abs(dx) / 0.25, abs(dy) / 0.8))  // cross
            default: d = max(abs(dx) / 0.8, abs(dy) / 0.55)                         // rectangle
            }
            let o = (y * n + x) * 3
            if d <= 1 {
                var f = fill
                // Pattern by category group: solid, horizontal stripes, dots.
                if variant == 1 && (y / max(1, n / 8)) % 2 == 1 { f = (UInt8(Int(f.0) * 3 / 4), UInt8(Int(f.1) * 3 / 4), UInt8(Int(f.2) * 3 / 4)) }
                if variant == 2 && (x / max(1, n / 8) + y / max(1, n / 8)) % 2 == 1 { f = (UInt8(Int(f.0) * 3 / 4), UInt8(Int(f.1) * 3 / 4), UInt8(Int(f.2) * 3 / 4)) }
                if d > 0.88 { f = (60, 60, 60) }
                px[o] = f.0; px[o + 1] = f.1; px[o + 2] = f.2
            }
        }
    }
    return RGBImage(width: n, height: n, pixels: px)
}

/// Writes text to a temporary name and renames it into place.
func writeAtomically(_ text: String, to url: URL) throws {
    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
    do {
        try Data(text.utf8).write(to: tmp)
    } catch {
        throw DataError.io(path: url.path, reason: "cannot write (\(error.localizedDescription))")
    }
    if rename(tmp.path, url.path) != 0 {
        throw DataError.io(path: url.path, reason: String(cString: strerror(errno)))
    }
}

/// `n` in decimal, left-padded with zeros to `width` digits (faster than `String(format:)`).
func zeroPadded(_ n: Int, _ width: Int) -> String {
    let s = String(n)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}
