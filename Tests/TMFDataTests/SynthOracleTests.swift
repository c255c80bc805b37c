import Foundation
@testable import TMFData
import TMFTensor
import TMFTestSupport
import XCTest

/// `SynthOracle`: the exact probabilities of `tmf synth`'s choices, checked against the process
/// itself by sampling, and its use on the bundled shop.
final class SynthOracleTests: XCTestCase {
    /// The closed-form distribution of a direct purchase equals the frequencies of the process's
    /// own `directPurchase` (pick, then re-draws), for every direct purchase of a few users: on a
    /// large shop (pools of more than six items, so the six draws matter), a small one (pools of
    /// a few items, often the coarser fallbacks) and one so small that categories have no items
    /// (11 items: those picks are uniform over the shop).
    func testDirectPurchaseProbabilitiesMatchTheProcess() throws {
        for options in [SynthOptions(users: 4, items: 3000, seed: 5), SynthOptions(users: 6, items: 120, seed: 3),
                        SynthOptions(users: 6, items: 11, seed: 4)] {
            let oracle = try SynthOracle(options: options)
            var checked = 0
            for (u, user) in oracle.users.enumerated() {
                for event in user.events {
                    guard case .picked(let category, let rejected)? = event.choice else { continue }
                    let exact = oracle.directPurchase(category: category, profile: user.profile, rejected: rejected)
                    XCTAssertEqual(exact.reduce(0, +), 1, accuracy: 1e-9)
                    var counts = [Int](repeating: 0, count: exact.count)
                    var r = SeededRNG(seed: 99, key: ["oracle-test", String(u), String(checked)])
                    let draws = 40_000
                    for _ in 0..<draws {
                        counts[oracle.shop.directPurchase(category, profile: user.profile, rejected: rejected, &r)] += 1
                    }
                    for i in exact.indices {
                        // Four binomial standard deviations (plus a floor for tiny probabilities).
                        let sd = (exact[i] * (1 - exact[i]) / Double(draws)).squareRoot()
                        XCTAssertEqual(Double(counts[i]) / Double(draws), exact[i], accuracy: 4 * sd + 2e-4,
                                       "item \(i), user \(u), category \(category), \(options.items) items")
                    }
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, 3, "direct purchases checked with \(options.items) items")
        }
    }

    /// On the bundled shop (`tmf synth --users 500 --items 300 --seed 1`): the oracle recognises
    /// it and no other seed; a purchase after a browse-then-buy session is the item carted just
    /// before it, with certainty; a candidate the user touched before is first; every test target
    /// has a positive probability.
    func testBundledShop() throws {
        let shop = try Dataset.load(from: fixturesURL.appendingPathComponent("shop"))
        let oracle = try SynthOracle(options: SynthOracle.options(for: shop, seed: 1))
        XCTAssertTrue(oracle.matches(shop))
        XCTAssertFalse(try SynthOracle(options: SynthOracle.options(for: shop, seed: 2)).matches(shop))
        var known = 0
        for x in SplitExamples(shop).test {
            let candidates = try shop.candidates(for: x, seed: 42)
            let p = try oracle.scores(example: x, candidates: candidates, dataset: shop)
            let truth = candidates.firstIndex(of: x.target)!
            XCTAssertGreaterThan(p[truth], 0)
            let before = x.event - 1
            if shop.behaviors[Int(shop.eventBehaviors[before])].name == "cart" && Int(shop.eventItems[before]) == x.target {
                XCTAssertEqual(p, candidates.map { $0 == x.target ? 2 : 0 })  // certain, and touched before
                known += 1
            }
            let touched = Set(shop.eventItems[shop.userOffsets[x.user]..<x.event].map(Int.init))
            if touched.contains(x.target) {
                XCTAssertGreaterThanOrEqual(p[truth], 1)
                XCTAssertEqual(p.filter { $0 >= p[truth] }.count, 1)
            } else {
                XCTAssertLessThanOrEqual(p.max()!, 1)
            }
        }
        XCTAssertGreaterThan(known, 100)
        // Not a purchase: a view is no example of the oracle's.
        let view = Example(user: 0, event: shop.userOffsets[0], target: Int(shop.eventItems[shop.userOffsets[0]]), split: .test, ordinal: 0)
        XCTAssertThrowsError(try oracle.scores(example: view, candidates: [view.target], dataset: shop))
    }
}
