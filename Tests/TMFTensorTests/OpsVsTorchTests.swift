import Foundation
import XCTest
import TMFTensor
import TMFTestSupport

/// Every op's forward and backward against PyTorch (Fixtures/ops/ops.json, made by
/// Scripts/make_ops_fixtures.py), and against finite differences.
final class OpsVsTorchTests: XCTestCase {
    struct Blob: Decodable { let shape: [Int]; let data: [Float] }
    struct Case: Decodable {
        let name: String
        let params: [String: JSONValue]
        let inputs: [String: Blob]
        let output: Blob
        let upstream: Blob
        let grads: [String: Blob]
    }
    struct Fixture: Decodable { let cases: [Case] }

    enum JSONValue: Decodable {
        case number(Double), bool(Bool), array([JSONValue])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let b = try? c.decode(Bool.self) { self = .bool(b) }
            else if let d = try? c.decode(Double.self) { self = .number(d) }
            else { self = .array(try c.decode([JSONValue].self)) }
        }
        var int: Int { if case let .number(d) = self { return Int(d) }; fatalError("not a number") }
        var float: Float { if case let .number(d) = self { return Float(d) }; fatalError("not a number") }
        var bool: Bool { if case let .bool(b) = self { return b }; fatalError("not a bool") }
        var ints: [Int] { if case let .array(a) = self { return a.map(\.int) }; fatalError("not an array") }
        var boolRows: [[Bool]] {
            if case let .array(a) = self { return a.map { if case let .array(r) = $0 { return r.map(\.bool) }; fatalError() } }
            fatalError("not an array")
        }
    }

    static let fixture: Fixture = {
        let url = fixturesURL.appendingPathComponent("ops/ops.json")
        return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }()

    /// The Swift op for a fixture case, given its inputs in the fixture's order of names.
    func op(_ c: Case) -> (names: [String], fn: ([Tensor]) -> Tensor) {
        let p = c.params
        let tA = p["transposeA"]?.bool ?? false, tB = p["transposeB"]?.bool ?? false
        switch c.name {
        case let n where n.hasPrefix("matmul"):
            return (["a", "b"], { Tensor.matmul($0[0], $0[1], transposeA: tA, transposeB: tB) })
        case "linear": return (["x", "w", "bias"], { Tensor.linear($0[0], weight: $0[1], bias: $0[2]) })
        case let n where n.hasPrefix("add_"): return (["a", "b"], { $0[0] + $0[1] })
        case let n where n.hasPrefix("sub_"): return (["a", "b"], { $0[0] - $0[1] })
        case let n where n.hasPrefix("mul_"): return (["a", "b"], { $0[0] * $0[1] })
        case let n where n.hasPrefix("div_"): return (["a", "b"], { $0[0] / $0[1] })
        case "scale": return (["x"], { $0[0].scale(p["s"]!.float) })
        case "adding": return (["x"], { $0[0] + p["s"]!.float })
        case let n where n.hasPrefix("sum_axis"):
            return (["x"], { $0[0].sum(axis: p["axis"]!.int, keepDim: p["keepDim"]?.bool ?? false) })
        case "mean_last": return (["x"], { $0[0].mean(axis: p["axis"]!.int) })
        case "sum_all": return (["x"], { $0[0].sum() })
        case "mean_all": return (["x"], { $0[0].mean() })
        case "reshape": return (["x"], { $0[0].reshaped(p["shape"]!.ints) })
        case "permute": return (["x"], { $0[0].permuted(p["order"]!.ints) })
        case "transpose": return (["x"], { $0[0].transposed(p["d0"]!.int, p["d1"]!.int) })
        case "slice": return (["x"], { $0[0].slice(axis: p["axis"]!.int, p["start"]!.int..<p["end"]!.int) })
        case "concat": return (["a", "b", "c"], { Tensor.concat($0, axis: p["axis"]!.int) })
        case "split":
            return (["x"], { xs in
                let parts = xs[0].split(axis: p["axis"]!.int, sizes: p["sizes"]!.ints)
                return Tensor.concat(parts.enumerated().map { $0.element.scale(Float($0.offset + 1)) }, axis: 0)
            })
        case "gather": return (["table"], { $0[0].gatherRows(p["indices"]!.ints) })
        case "scatter_add": return (["src"], { $0[0].scatterAddRows(p["indices"]!.ints, rows: p["rows"]!.int) })
        case "softmax", "softmax_wide": return (["x"], { $0[0].softmax() })
        case "log_softmax": return (["x"], { $0[0].logSoftmax() })
        case "masked_softmax":
            return (["x"], { $0[0].attentionMasked(causalOffset: p["causalOffset"]!.int, keyMask: p["keyMask"]!.boolRows).softmax() })
        case "rmsnorm": return (["x", "w"], { Tensor.rmsNorm($0[0], weight: $0[1], eps: p["eps"]!.float) })
        case "layernorm": return (["x", "w", "b"], { Tensor.layerNorm($0[0], weight: $0[1], bias: $0[2], eps: p["eps"]!.float) })
        case "silu", "silu_wide": return (["x"], { $0[0].silu() })
        case "gelu": return (["x"], { $0[0].gelu() })
        case "gelu_tanh": return (["x"], { $0[0].gelu(approximateTanh: true) })
        case "quick_gelu": return (["x"], { $0[0].quickGELU() })
        case "exp", "exp_wide": return (["x"], { $0[0].exp() })
        case "log": return (["x"], { $0[0].log() })
        case "sqrt": return (["x"], { $0[0].sqrt() })
        case "relu": return (["x"], { $0[0].relu() })
        case "sigmoid": return (["x"], { $0[0].sigmoid() })
        case "tanh": return (["x"], { $0[0].tanh() })
        case "square": return (["x"], { $0[0].square() })
        case "rope", "rope_batchpos":
            let rope = RotaryEmbedding(headDim: c.inputs["x"]!.shape[3], theta: p["theta"]!.float)
            return (["x"], { $0[0].rotaryEmbedded(rope, positions: p["positions"]!.ints) })
        case "cross_entropy": return (["logits"], { Tensor.crossEntropy($0[0], targets: p["targets"]!.ints) })
        default:
            XCTFail("no Swift op for fixture case \(c.name)")
            return ([], { $0[0] })
        }
    }

    func testEveryCaseForwardAndBackwardMatchesTorch() {
        XCTAssertGreaterThan(Self.fixture.cases.count, 50)
        for c in Self.fixture.cases {
            let (names, fn) = op(c)
            XCTAssertEqual(Set(names), Set(c.inputs.keys), c.name)
            let inputs = names.map { Tensor(c.inputs[$0]!.data, shape: c.inputs[$0]!.shape, requiresGrad: true) }
            let out = fn(inputs)
            XCTAssertEqual(out.shape, c.output.shape, "\(c.name) shape")
            assertClose(out.scalars, c.output.data, rtol: 1e-5, atol: 1e-6, "\(c.name) forward")
            let up = Tensor(c.upstream.data, shape: c.upstream.shape)
            (out * up).sum().backward()
            for (name, x) in zip(names, inputs) {
                guard let g = x.grad else { XCTFail("\(c.name): no gradient for \(name)"); continue }
                assertClose(g.scalars, c.grads[name]!.data, rtol: 1e-4, atol: 1e-5, "\(c.name) grad \(name)")
            }
        }
    }

    func testEveryCaseAgainstFiniteDifferences() {
        for c in Self.fixture.cases {
            let (names, fn) = op(c)
            // Finite differences in Float32 need smooth, well-scaled functions: skip the kinks.
            if ["relu"].contains(c.name) { continue }
            let inputs = names.map { Tensor(c.inputs[$0]!.data, shape: c.inputs[$0]!.shape) }
            gradCheck(inputs, eps: 1e-2, rtol: 3e-2, atol: 3e-3) { fn($0) }
        }
    }
}
