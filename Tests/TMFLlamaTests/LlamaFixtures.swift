import Foundation
import TMFCheckpoint
import TMFLlama
import TMFTensor
import TMFTestSupport
import XCTest

/// Fixtures/llama (see its README): tiny random models and transformers' outputs.
enum LlamaFixtures {
    static let root = fixturesURL.appendingPathComponent("llama")

    static func folder(_ name: String) -> URL { root.appendingPathComponent(name) }

    static func model(_ name: String) throws -> LlamaModel { try LlamaModel.load(directory: folder(name)) }

    static func expected(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(contentsOf: root.appendingPathComponent("\(name)-expected.safetensors"))
    }

    struct Case {
        var inputIds: [[Int]], paddedIds: [[Int]], mask: [[Bool]], positions: [[Int]], greedy: [[Int]]
        var labels: [[Int]]?
    }

    static func testCase(_ name: String) throws -> Case {
        let data = try Data(contentsOf: root.appendingPathComponent("cases.json"))
        let all = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let c = all[name] as! [String: Any]
        func ints(_ k: String) -> [[Int]] { (c[k] as! [[NSNumber]]).map { $0.map(\.intValue) } }
        return Case(inputIds: ints("input_ids"), paddedIds: ints("padded_ids"),
                    mask: ints("attention_mask").map { $0.map { $0 != 0 } }, positions: ints("position_ids"),
                    greedy: ints("greedy"), labels: c["labels"] == nil ? nil : ints("labels"))
    }
}

/// max |a − b| / max |b| over the elements where `keep` is true (default all).
func relativeError(_ a: [Float], _ b: [Float], keep: ((Int) -> Bool)? = nil) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in a.indices where keep?(i) ?? true {
        maxDiff = max(maxDiff, abs(a[i] - b[i]))
        maxRef = max(maxRef, abs(b[i]))
    }
    return maxRef == 0 ? maxDiff : maxDiff / maxRef
}

/// Keeps the elements of a (B, T, C) tensor whose (b, t) is unmasked.
func unmasked(_ mask: [[Bool]], width: Int) -> (Int) -> Bool {
    let t = mask[0].count
    return { i in let row = i / width; return mask[row / t][row % t] }
}
