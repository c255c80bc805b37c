import Foundation
import XCTest
import TMFCLIP
import TMFImage
import TMFTensor
import TMFTestSupport
import TMFTokenizer

/// `tmf embed` through the built binary on the bundled tiny CLIP (Fixtures/models/tiny-clip),
/// against the library and against transformers (check.json, written by Scripts/make_tiny_clip.py).
final class EmbedCommandTests: XCTestCase {
    static let clip = fixturesURL.appendingPathComponent("models/tiny-clip")

    struct Check: Decodable {
        var images: [String]
        var texts: [String]
        var image_embeds: [[Float]]
        var text_embeds: [[Float]]
    }

    func check() throws -> Check {
        try JSONDecoder().decode(Check.self, from: Data(contentsOf: Self.clip.appendingPathComponent("check.json")))
    }

    func embeddings(_ r: CLIResult, file: StaticString = #filePath, line: UInt = #line) throws -> [[Float]] {
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr, "", file: file, line: line)
        struct Output: Decodable { var embeddings: [[Float]] }
        return try JSONDecoder().decode(Output.self, from: Data(r.stdout.utf8)).embeddings
    }

    /// The library's embeddings, one input at a time.
    func libraryImage(_ path: String) throws -> [Float] {
        let model = try CLIPModel.load(directory: Self.clip)
        let pixels = try ClipImagePreprocessor(checkpointDirectory: Self.clip).pixelValues(contentsOfPNG: packageRoot.appendingPathComponent(path))
        let s = model.configuration.vision.imageSize
        return try model.imageEmbeddings(Tensor(pixels, shape: [1, 3, s, s])).scalars
    }

    func libraryText(_ text: String) throws -> [Float] {
        let model = try CLIPModel.load(directory: Self.clip)
        let e = try CLIPTokenizer(directory: Self.clip).encodePadded(text)
        return try model.textEmbeddings([e.inputIDs], attentionMask: [e.attentionMask]).scalars
    }

    func testImagesMatchLibraryAndTransformers() throws {
        let c = try check()
        let rows = try embeddings(try runTMF(["embed", "--clip", Self.clip.path, "--json", "--threads", "1", "--image"] + c.images))
        XCTAssertEqual(rows.count, c.images.count)
        XCTAssertEqual(rows.first?.count, 32)
        for (k, path) in c.images.enumerated() {
            assertClose(rows[k], try libraryImage(path), rtol: 1e-5, atol: 1e-5, "library, \(path)")
            assertClose(rows[k], c.image_embeds[k], rtol: 1e-4, atol: 1e-4, "transformers, \(path)")
        }
        // Batches of one give the same rows.
        let single = try embeddings(try runTMF(["embed", "--clip", Self.clip.path, "--json", "--batch-size", "1", "--image"] + c.images))
        for k in rows.indices { assertClose(single[k], rows[k], rtol: 1e-5, atol: 1e-5) }
    }

    func testTextsMatchLibraryAndTransformers() throws {
        let c = try check()
        // Repeated --text options and several values after one are the same.
        let args = ["--text", c.texts[0], "--text"] + c.texts.dropFirst()
        let rows = try embeddings(try runTMF(["embed", "--clip", Self.clip.path, "--json", "--threads", "1"] + args))
        XCTAssertEqual(rows.count, c.texts.count)
        for (k, text) in c.texts.enumerated() {
            assertClose(rows[k], try libraryText(text), rtol: 1e-5, atol: 1e-5, "library, \(text.debugDescription)")
            assertClose(rows[k], c.text_embeds[k], rtol: 1e-4, atol: 1e-4, "transformers, \(text.debugDescription)")
        }
    }

    func testPlainOutput() throws {
        let c = try check()
        let r = try runTMF(["embed", "--clip", Self.clip.path, "--image", c.images[0], c.images[1]])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].hasPrefix(c.images[0] + "\t"), String(lines[0]))
        XCTAssertTrue(lines[0].contains("dim 32"), String(lines[0]))
        let t = try runTMF(["embed", "--clip", Self.clip.path, "--text", "red shoe"])
        XCTAssertTrue(t.stdout.hasPrefix("\"red shoe\"\t"), t.stdout)
    }

    func testBadInput() throws {
        let clip = Self.clip.path
        let image = "Fixtures/shop/images/I000001.png"
        // Corrupt, truncated and non-PNG files, alone or after a good one: one clear line.
        for bad in ["corrupt_crc.png", "truncated.png", "not_png.jpg", "empty.png"] {
            let path = "Fixtures/images/errors/" + bad
            assertFailure(try runTMF(["embed", "--clip", clip, "--image", path]), mentions: path)
            assertFailure(try runTMF(["embed", "--clip", clip, "--json", "--image", image, path]), mentions: path)
        }
        assertFailure(try runTMF(["embed", "--clip", clip, "--image", "/nonexistent/x.png"]), mentions: "/nonexistent/x.png")
        assertFailure(try runTMF(["embed", "--clip", clip, "--image", "Fixtures"]), mentions: "Fixtures")
        assertFailure(try runTMF(["embed", "--clip", "/nonexistent/clip", "--text", "hi"]), mentions: "/nonexistent/clip")
        // A CLIP folder without vocab.json (the library's test checkpoints).
        assertFailure(try runTMF(["embed", "--clip", fixturesURL.appendingPathComponent("clip/tiny-quickgelu").path, "--text", "hi"]),
                      mentions: "vocab.json")
        // Argument errors: both, neither, no --clip.
        assertFailure(try runTMF(["embed", "--clip", clip, "--image", image, "--text", "hi"]), argumentError: true)
        assertFailure(try runTMF(["embed", "--clip", clip]), argumentError: true)
        assertFailure(try runTMF(["embed", "--text", "hi"]), argumentError: true)
    }
}
