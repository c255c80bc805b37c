import Foundation

/// `tmf synth`'s own generative process used as a recommender: the shop's ceiling.
///
/// It knows what no model can see: each user's latent profile (audience, favourite colours,
/// brands, style) and, for every purchase, how the process chose the item. A purchase after a
/// browse-then-buy session is the item viewed and carted just before it (probability 1). A
/// direct purchase is `pick(category, strict: true)`: an audience (the user's with probability
/// 0.95) and a colour (a favourite with 0.85), the matching pool (coarser when empty), six draws
/// with replacement and the most appealing draw (popularity + 1.5 for a favourite brand + 1 for
/// the style), re-drawn up to six times while it lands on an item of the session's views or
/// touched before. Each candidate's score is its exact probability under that choice, plus 1 when
/// the user touched the candidate before the target event: the evaluation protocol draws
/// negatives among items the user never touched, so such a candidate is the target, and a
/// model that sees the history can know it too. Ranking by these scores is the Bayes-optimal
/// decision given the latents and the protocol: no model of the data can beat its expected
/// HitRate@1.
public struct SynthOracle: Sendable {
    let shop: SynthShop
    /// Per synthetic user: the profile and the events.
    let users: [(profile: SynthProfile, events: [SynthEvent])]

    /// Replays the process of `tmf synth` with `options` (the image size does not matter).
    /// - Throws: `DataError.invalidArgument` for bad sizes.
    public init(options: SynthOptions) throws {
        try options.validate()
        var small = options
        small.imageSize = 8  // pictures are drawn (they consume the seeded stream) and dropped
        let shop = try SynthShop(options: small) { _, _ in }
        self.shop = shop
        users = (0..<options.users).map { shop.user($0) }
    }

    /// The `SynthOptions` that `tmf synth --seed seed` used for `dataset` if its users and items
    /// are synthetic ones (the counts come from the dataset).
    public static func options(for dataset: Dataset, seed: UInt64) -> SynthOptions {
        SynthOptions(users: dataset.userIDs.count, items: dataset.items.count, seed: seed)
    }

    /// Whether `dataset` holds exactly this process's items (ids, titles) and events (users,
    /// items, behaviors, order).
    public func matches(_ dataset: Dataset) -> Bool {
        guard dataset.items.count == shop.items.count, dataset.userIDs.count == users.count else { return false }
        for i in 0..<dataset.items.count where dataset.items[i].id != Self.itemID(i) { return false }
        let digits = String(users.count).count
        for u in 0..<users.count {
            guard dataset.userIDs[u] == "U" + zeroPadded(u + 1, digits) else { return false }
            let range = dataset.events(ofUser: u), events = users[u].events
            guard range.count == events.count else { return false }
            for (k, e) in range.enumerated() {
                guard Int(dataset.eventItems[e]) == events[k].item,
                      dataset.behaviors[Int(dataset.eventBehaviors[e])].name == events[k].behavior else { return false }
            }
        }
        return true
    }

    static func itemID(_ i: Int) -> String { "I" + zeroPadded(i + 1, 6) }

    /// The probability, under the process, that each of `candidates` is the item of the
    /// example's target event (a purchase of `dataset`, which `matches` this process), plus 1
    /// for a candidate the user touched before that event.
    /// - Returns: one score per candidate, in the candidates' order.
    /// - Throws: `DataError.invalidArgument` when the target event is not a purchase.
    public func scores(example x: Example, candidates: [Int], dataset: Dataset) throws -> [Double] {
        let k = x.event - dataset.userOffsets[x.user]
        guard let choice = users[x.user].events[k].choice else {
            throw DataError.invalidArgument("the oracle scores purchases only (the synthetic shop's target behavior)")
        }
        let before = Set(dataset.eventItems[dataset.userOffsets[x.user]..<x.event].map(Int.init))
        let probability: (Int) -> Double
        switch choice {
        case .known(let item):
            probability = { $0 == item ? 1 : 0 }
        case .picked(let category, let rejected):
            let p = directPurchase(category: category, profile: users[x.user].profile, rejected: rejected)
            probability = { p[$0] }
        }
        return candidates.map { probability($0) + (before.contains($0) ? 1 : 0) }
    }

    /// The distribution over items of a direct purchase: one strict pick, re-drawn up to six
    /// times while it lands in `rejected`.
    func directPurchase(category: Int, profile: SynthProfile, rejected: Set<Int>) -> [Double] {
        let p = strictPick(category: category, profile: profile)
        let q = rejected.reduce(0) { $0 + p[$1] }  // chance that one pick is rejected
        let keep = q < 1 ? (1 - Foundation.pow(q, 7)) / (1 - q) : 7  // 1 + q + … + q⁶
        let stuck = Foundation.pow(q, 6)  // the seventh pick stands, rejected or not
        return p.indices.map { rejected.contains($0) ? p[$0] * stuck : p[$0] * keep }
    }

    /// The exact distribution of `SynthShop.pick(category, strict: true, profile:)` over items.
    func strictPick(category: Int, profile: SynthProfile) -> [Double] {
        typealias W = SynthWorld
        let n = shop.items.count
        var p = [Double](repeating: 0, count: n)
        for aud in 0..<3 {
            let pa = (aud == profile.audience ? 0.95 : 0) + 0.05 / 3
            for col in 0..<W.colors.count {
                let favourite = profile.colors.reduce(0.0) { $0 + ($1 == col ? 0.5 : 0) }
                let pc = 0.85 * favourite + 0.15 / Double(W.colors.count)
                let weight = pa * pc
                let pool = shop.pool(category: category, audience: aud, color: col).map(Int.init)
                if pool.isEmpty {
                    for i in 0..<n { p[i] += weight / Double(n) }
                    continue
                }
                // min(6, m) draws with replacement; the best appeal wins (equal appeals: each
                // the first drawn equally often). P(best is in the group of appeal a) =
                // F(≤ a)^d − F(< a)^d.
                let m = pool.count, d = Double(min(6, m))
                let appeal = pool.map { shop.appeal($0, profile) }
                let order = pool.indices.sorted { appeal[$0] < appeal[$1] }
                var start = 0
                while start < m {
                    var end = start + 1
                    while end < m && appeal[order[end]] == appeal[order[start]] { end += 1 }
                    let group = Foundation.pow(Double(end) / Double(m), d) - Foundation.pow(Double(start) / Double(m), d)
                    for j in start..<end { p[pool[order[j]]] += weight * group / Double(end - start) }
                    start = end
                }
            }
        }
        return p
    }
}
