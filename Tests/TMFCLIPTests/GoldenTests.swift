import Foundation
import TMFCheckpoint
import TMFCLIP
import TMFTensor
import TMFTestSupport
import XCTest

/// The tiny checkpoints and golden outputs of Scripts/make_clip_fixtures.py.
enum CLIPFixture: String, CaseIterable {
    case quickGELU = "tiny-quickgelu"
    case gelu = "tiny-gelu"

    var url: URL { fixturesURL.appendingPathComponent("clip/\(rawValue)") }

    struct Tokens: Decodable {
        var input_ids: [[Int]]
        var attention_mask: [[Int]]
    }

    func model() throws -> CLIPModel { try CLIPModel.load(directory: url) }
    func golden() throws -> SafeTensorsFile { try SafeTensorsFile(contentsOf: url.appendingPathComponent("golden.safetensors")) }
    func tokens() throws -> Tokens {
        try JSONDecoder().decode(Tokens.self, from: Data(contentsOf: url.appendingPathComponent("golden.json")))
    }
}

/// Largest |a − b| / max(|b|) over all elements: the error relative to the output's scale.
func maxRelativeError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "\(a.shape) vs \(b.shape)")
    let scale = b.scalars.map(abs).max() ?? 1
    return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / max(scale, 1e-12)
}

final class GoldenTests: XCTestCase {
    func testImageEmbeddingsMatchTransformers() throws {
        for fixture in CLIPFixture.allCases {
            let model = try fixture.model()
            let golden = try fixture.golden()
            let pixels = try golden.tensor(named: "pixel_values")
            let expected = try golden.tensor(named: "image_embeds")
            let got = try model.imageEmbeddings(pixels)
            XCTAssertEqual(got.shape, expected.shape)
            let err = maxRelativeError(got, expected)
            print("\(fixture.rawValue): image embeddings, max |Δ| / max |transformers| = \(err)")
            XCTAssertLessThan(err, 1e-4, "\(fixture.rawValue) image embeddings")
            assertClose(got.scalars, expected.scalars, rtol: 1e-4, atol: 1e-5, fixture.rawValue)
        }
    }

    func testTextEmbeddingsMatchTransformers() throws {
        for fixture in CLIPFixture.allCases {
            let model = try fixture.model()
            let tokens = try fixture.tokens()
            let expected = try fixture.golden().tensor(named: "text_embeds")
            let got = try model.textEmbeddings(tokens.input_ids, attentionMask: tokens.attention_mask)
            XCTAssertEqual(got.shape, expected.shape)
            let err = maxRelativeError(got, expected)
            print("\(fixture.rawValue): text embeddings, max |Δ| / max |transformers| = \(err)")
            XCTAssertLessThan(err, 1e-4, "\(fixture.rawValue) text embeddings")
            assertClose(got.scalars, expected.scalars, rtol: 1e-4, atol: 1e-5, fixture.rawValue)
        }
    }

    /// One sequence at a time gives the batch's rows (no leakage across the batch or padding).
    func testBatchedEqualsOneByOne() throws {
        let fixture = CLIPFixture.gelu
        let model = try fixture.model()
        let tokens = try fixture.tokens()
        let batch = try model.textEmbeddings(tokens.input_ids, attentionMask: tokens.attention_mask)
        for i in tokens.input_ids.indices {
            let one = try model.textEmbeddings([tokens.input_ids[i]], attentionMask: [tokens.attention_mask[i]])
            assertClose(one.scalars, batch.slice(axis: 0, i..<(i + 1)).scalars, rtol: 1e-5, atol: 1e-6, "row \(i)")
        }
        let pixels = try fixture.golden().tensor(named: "pixel_values")
        let images = try model.imageEmbeddings(pixels)
        let first = try model.imageEmbeddings(pixels.slice(axis: 0, 0..<1))
        assertClose(first.scalars, images.slice(axis: 0, 0..<1).scalars, rtol: 1e-5, atol: 1e-6)
    }

    func testPoolingRules() throws {
        let legacy = try CLIPFixture.quickGELU.model().text  // eos_token_id == 2: argmax of ids
        XCTAssertEqual(legacy.pooledPositions([[0, 17, 42, 99, 1], [5, 9, 9, 3, 2]]), [3, 1])
        let modern = try CLIPFixture.gelu.model().text       // eos_token_id == 119: first eos
        XCTAssertEqual(modern.pooledPositions([[118, 5, 119, 119], [119, 3, 4, 5], [118, 1, 2, 3]]), [2, 0, 0])
    }

    func testEmbeddingsAreNotNormalised() throws {
        let model = try CLIPFixture.quickGELU.model()
        let e = try model.textEmbeddings([[0, 3, 99]])
        let norm = e.scalars.map { $0 * $0 }.reduce(0, +).squareRoot()
        XCTAssertNotEqual(norm, 1, accuracy: 1e-3)
    }
}

final class MaskTests: XCTestCase {
    /// The left-padded golden row depends on its padding mask: without the mask the padding
    /// tokens are attended to and the embedding moves away from transformers'.
    func testPaddingMaskMatters() throws {
        let fixture = CLIPFixture.gelu
        let model = try fixture.model()
        let tokens = try fixture.tokens()
        let expected = try fixture.golden().tensor(named: "text_embeds").slice(axis: 0, 2..<3)
        let masked = try model.textEmbeddings([tokens.input_ids[2]], attentionMask: [tokens.attention_mask[2]])
        let unmasked = try model.textEmbeddings([tokens.input_ids[2]])
        XCTAssertLessThan(maxRelativeError(masked, expected), 1e-4)
        XCTAssertGreaterThan(maxRelativeError(unmasked, expected), 1e-2)
    }
}
