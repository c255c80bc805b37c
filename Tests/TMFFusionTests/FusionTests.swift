import Foundation
import XCTest
import TMFFusion
import TMFTensor
import TMFTestSupport

final class FusionTests: XCTestCase {
    /// AMSA on a hand-computable sequence: two orthogonal unit rows attend with weights
    /// softmax([1, 0]/√2) and softmax([0, 1]/√2).
    func testAttentionByHand() {
        let v = Tensor([1, 0, 0, 1], shape: [2, 2])
        let out = plainAttention(query: v, key: v, value: v).scalars
        let a = Float(Foundation.exp(1 / 2.0.squareRoot())), w0 = a / (a + 1), w1 = 1 / (a + 1)
        assertClose(out, [w0, w1, w1, w0], rtol: 1e-6)
    }

    func testMultiHeadWithOneHeadPerHalfEqualsTwoSingleHeads() {
        var rng = SeededRNG(seed: 1)
        let q = Tensor.normal([3, 4], rng: &rng), k = Tensor.normal([5, 4], rng: &rng), v = Tensor.normal([5, 6], rng: &rng)
        let multi = plainAttention(query: q, key: k, value: v, heads: 2)
        let left = plainAttention(query: q.slice(axis: 1, 0..<2), key: k.slice(axis: 1, 0..<2), value: v.slice(axis: 1, 0..<3))
        let right = plainAttention(query: q.slice(axis: 1, 2..<4), key: k.slice(axis: 1, 2..<4), value: v.slice(axis: 1, 3..<6))
        assertClose(multi.scalars, Tensor.concat([left, right], axis: 1).scalars, rtol: 1e-5)
    }

    func testShapesAndDepths() throws {
        let c = FusionConfiguration(modalityWidth: 8, graphWidth: 4, llmWidth: 16, adaptorHidden: 12)
        let f = try FusionModule(configuration: c, seed: 3)
        var rng = SeededRNG(seed: 2)
        let img = Tensor.normal([5, 8], rng: &rng), txt = Tensor.normal([5, 8], rng: &rng), g = Tensor.normal([5, 4], rng: &rng)
        XCTAssertEqual(f.itemTokens(image: img, text: txt, graph: g, depth: .full).shape, [5, 16])
        XCTAssertEqual(f.itemTokens(image: img, text: txt, graph: g, depth: .amsa).shape, [5, 16])
        XCTAssertNotEqual(f.fuse(image: img, text: txt, graph: g, depth: .full).scalars,
                          f.fuse(image: img, text: txt, graph: g, depth: .amsa).scalars)
        XCTAssertEqual(f.behaviorTokens(Tensor.normal([3, 4], rng: &rng)).shape, [3, 16])
        XCTAssertEqual(f.namedParameters.count, 10)
        // Ψ_f, Ψ_i, Ψ_b, read off the modules, keep the checkpoint's names and order.
        let adaptor = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
        XCTAssertEqual(f.fusionParameters.map(\.0), ["fusion.projection.weight", "fusion.projection.bias"])
        XCTAssertEqual(f.itemAdaptorParameters.map(\.0), adaptor.map { "item_adaptor." + $0 })
        XCTAssertEqual(f.behaviorAdaptorParameters.map(\.0), adaptor.map { "behavior_adaptor." + $0 })
        XCTAssertEqual(f.namedParameters.map(\.0),
                       (f.fusionParameters + f.itemAdaptorParameters + f.behaviorAdaptorParameters).map(\.0))
        // Seeded: the same seed gives the same weights.
        let f2 = try FusionModule(configuration: c, seed: 3)
        XCTAssertEqual(f.projection.weight.tensor.scalars, f2.projection.weight.tensor.scalars)
        XCTAssertThrowsError(try FusionModule(configuration: FusionConfiguration(modalityWidth: 6, graphWidth: 4, llmWidth: 8, heads: 4), seed: 1))
    }

    /// Full fusion backward (inputs and every parameter) against finite differences.
    func testFusionGradientsByFiniteDifferences() throws {
        let c = FusionConfiguration(modalityWidth: 4, graphWidth: 2, llmWidth: 3, adaptorHidden: 5, heads: 2)
        let f = try FusionModule(configuration: c, seed: 5)
        var rng = SeededRNG(seed: 6)
        let img = Tensor.normal([3, 4], rng: &rng), txt = Tensor.normal([3, 4], rng: &rng), g = Tensor.normal([3, 2], rng: &rng)
        for depth in FusionDepth.allCases {
            let params = f.namedParameters.map(\.1)
            gradCheck([img, txt, g] + params, eps: 1e-2, rtol: 3e-2, atol: 3e-3) { xs in
                f.itemTokens(image: xs[0], text: xs[1], graph: xs[2], depth: depth)
            }
        }
        let b = Tensor.normal([2, 2], rng: &rng)
        gradCheck([b] + f.behaviorAdaptorParameters.map(\.1)) { xs in f.behaviorTokens(xs[0]) }
    }

    /// CMA divides by √d with the paper's d = 2·d_v + d_g (Eq. 7-8); a configuration decoded
    /// from an older tmf.json (no `cmaScaleWidth`) keeps √d_v.
    func testCMAScaleIsThePapers() throws {
        let c = FusionConfiguration(modalityWidth: 8, graphWidth: 4, llmWidth: 16)
        XCTAssertEqual(c.cmaScaleWidth, 20)
        let f = try FusionModule(configuration: c, seed: 3)
        var rng = SeededRNG(seed: 2)
        let img = Tensor.normal([5, 8], rng: &rng), txt = Tensor.normal([5, 8], rng: &rng), g = Tensor.normal([5, 4], rng: &rng)
        let q = f.fuse(image: img, text: txt, graph: g, depth: .amsa)
        // Eq. 7-8 written out with 1/√20.
        func attend(_ a: Tensor, _ k: Tensor, _ v: Tensor) -> Tensor {
            Tensor.matmul(Tensor.matmul(a, k, transposeB: true).scale(1 / Float(20).squareRoot()).softmax(), v)
        }
        let expected = attend(attend(q, img, txt), txt, img)
        assertClose(f.fuse(image: img, text: txt, graph: g, depth: .full).scalars, expected.scalars, rtol: 1e-5)
        var json = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        json = json.replacingOccurrences(of: "\"cmaScaleWidth\":20,", with: "").replacingOccurrences(of: ",\"cmaScaleWidth\":20", with: "")
        let old = try JSONDecoder().decode(FusionConfiguration.self, from: Data(json.utf8))
        XCTAssertNil(old.cmaScaleWidth)
        let g2 = try FusionModule(configuration: old, seed: 3)
        func attendV(_ a: Tensor, _ k: Tensor, _ v: Tensor) -> Tensor {
            Tensor.matmul(Tensor.matmul(a, k, transposeB: true).scale(1 / Float(8).squareRoot()).softmax(), v)
        }
        assertClose(g2.fuse(image: img, text: txt, graph: g, depth: .full).scalars, attendV(attendV(q, img, txt), txt, img).scalars,
                    rtol: 1e-5)
    }
}
