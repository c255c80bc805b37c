import Foundation
import TMFImage
import TMFTestSupport
import XCTest

/// Decoding against Pillow: `Image.open(p).convert("RGB")` and transformers' `convert_to_rgb`
/// (composite on white), byte for byte.
final class PNGDecodingTests: XCTestCase {
    func testDecodeMatchesPillowConvertRGB() throws {
        let manifest = try ImageManifest.load()
        XCTAssertGreaterThanOrEqual(manifest.images.count, 30)
        for entry in manifest.images {
            let got = try RGBImage(contentsOfPNG: decodeURL(entry.name))
            XCTAssertEqual(got.width, entry.width, entry.name)
            XCTAssertEqual(got.height, entry.height, entry.name)
            let want = try RGBImage(contentsOfPNG: imagesURL.appendingPathComponent("expected/\(entry.name).rgb.png"))
            assertSameImage(got, want, "\(entry.name) (PIL mode \(entry.pil_mode)) convert(\"RGB\")")
        }
    }

    func testCompositeOnWhiteMatchesTransformersConvertToRGB() throws {
        let manifest = try ImageManifest.load()
        let options = PNGDecodingOptions(alpha: .compositeOnWhite)
        for entry in manifest.images {
            let got = try RGBImage(contentsOfPNG: decodeURL(entry.name), options: options)
            let want = try RGBImage(contentsOfPNG: imagesURL.appendingPathComponent("expected/\(entry.name).white.png"))
            assertSameImage(got, want, "\(entry.name) (PIL mode \(entry.pil_mode)) composite on white")
        }
    }

    /// Values checked by hand, independent of the expected PNGs (which this decoder also reads).
    func testKnownPixelValues() throws {
        XCTAssertEqual(try RGBImage(contentsOfPNG: decodeURL("rgb8_1x1")).pixels, [200, 100, 50])
        XCTAssertEqual(try RGBImage(contentsOfPNG: decodeURL("rgb8_interlaced_1x1")).pixels, [1, 2, 3])
        // 16-bit gray: PIL clamps to 255 rather than scaling.
        let g16 = try RGBImage(contentsOfPNG: decodeURL("gray16_trns_6x3"))
        XCTAssertEqual(stride(from: 0, to: 18, by: 3).map { g16.pixels[$0] }, [0, 7, 255, 255, 7, 255])
        // ... and its tRNS value 7 makes those two pixels white when compositing.
        let g16w = try RGBImage(contentsOfPNG: decodeURL("gray16_trns_6x3"), options: PNGDecodingOptions(alpha: .compositeOnWhite))
        XCTAssertEqual(stride(from: 0, to: 18, by: 3).map { g16w.pixels[$0] }, [0, 255, 255, 255, 255, 255])
        // 16-bit RGB keeps the high byte: (256, 512, 768) -> (1, 2, 3).
        XCTAssertEqual(Array(try RGBImage(contentsOfPNG: decodeURL("rgb16_trns_4x2")).pixels[0..<6]), [1, 2, 3, 0, 0, 0])
        // 2-bit gray scales by 85.
        XCTAssertEqual(Array(try RGBImage(contentsOfPNG: decodeURL("gray2_13x9")).pixels.enumerated()
            .filter { $0.offset % 3 == 0 }.map(\.element)[0..<4]), [0, 85, 170, 255])
    }

    func testPNGSizeReadsTheHeaderOnly() throws {
        let size = try RGBImage.pngSize(at: decodeURL("rgb8_300x200"))
        XCTAssertEqual(size.width, 300)
        XCTAssertEqual(size.height, 200)
        let huge = try RGBImage.pngSize(at: imagesURL.appendingPathComponent("errors/huge_header.png"))
        XCTAssertEqual(huge.width, 100_000)
    }

    func testWritePNGRoundTrips() throws {
        let source = try RGBImage(contentsOfPNG: decodeURL("rgb8_portrait_61x97"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-image-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("out.png")
        try source.writePNG(to: url)
        XCTAssertEqual(try RGBImage(contentsOfPNG: url), source)
    }
}
