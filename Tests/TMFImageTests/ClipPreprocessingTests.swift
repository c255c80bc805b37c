import Foundation
import TMFImage
import TMFTestSupport
import XCTest

/// Resampling against Pillow's `Image.resize` (0 difference) and preprocessing against
/// transformers' `CLIPImageProcessorPil` `pixel_values` (within 1e-5).
final class ClipPreprocessingTests: XCTestCase {
    func testResizeMatchesPillowExactly() throws {
        let manifest = try ImageManifest.load()
        XCTAssertGreaterThanOrEqual(manifest.resizes.count, 19)
        for entry in manifest.resizes {
            let source = try RGBImage(contentsOfPNG: decodeURL(entry.source))
            let filter = try XCTUnwrap(ResampleFilter(rawValue: entry.filter))
            let got = source.resized(width: entry.width, height: entry.height, filter: filter)
            let want = try RGBImage(contentsOfPNG: imagesURL.appendingPathComponent("resize/\(entry.name).png"))
            assertSameImage(got, want, "resize \(entry.name)")
        }
    }

    private func preprocessor(_ config: ImageManifest.ClipConfig) throws -> ClipImagePreprocessor {
        ClipImagePreprocessor(size: .shortestEdge(config.size.shortest_edge),
                              cropHeight: config.crop_size.height, cropWidth: config.crop_size.width,
                              resample: try XCTUnwrap(ResampleFilter(rawValue: config.resample ?? 3)))
    }

    func testPixelValuesMatchTransformers() throws {
        let manifest = try ImageManifest.load()
        XCTAssertGreaterThanOrEqual(manifest.clip.count, 15)
        var worst: Float = 0
        for entry in manifest.clip {
            let pre = try preprocessor(try XCTUnwrap(manifest.clip_configs[entry.config]))
            let want = try readFloats(imagesURL.appendingPathComponent("clip/\(entry.name).f32"))
            let got = try pre.pixelValues(contentsOfPNG: decodeURL(entry.source))
            XCTAssertEqual(entry.shape.count, 3)
            XCTAssertEqual(got.count, entry.shape.reduce(1, *), entry.name)
            XCTAssertEqual(want.count, got.count, entry.name)
            let image = try RGBImage(contentsOfPNG: decodeURL(entry.source), options: PNGDecodingOptions(alpha: .compositeOnWhite))
            let size = pre.outputSize(width: image.width, height: image.height)
            XCTAssertEqual([3, size.height, size.width], entry.shape, entry.name)
            var maxDiff: Float = 0
            for i in 0..<min(got.count, want.count) { maxDiff = max(maxDiff, abs(got[i] - want[i])) }
            XCTAssertLessThanOrEqual(maxDiff, 1e-5, "\(entry.name): max |difference| \(maxDiff)")
            worst = max(worst, maxDiff)
        }
        // The 8-bit pixels are identical, so only float rounding could differ.
        XCTAssertEqual(worst, 0, "max |difference| over all cases")
    }

    func testBatchIsTheConcatenation() throws {
        let pre = ClipImagePreprocessor(size: .shortestEdge(32), cropHeight: 32, cropWidth: 32)
        let names = ["rgb8_300x200", "rgb8_1x1", "rgba8_40x30"]
        let urls = names.map(decodeURL)
        let batch = try pre.batchPixelValues(contentsOfPNGs: urls)
        XCTAssertEqual(batch.count, 3 * 3 * 32 * 32)
        let singles = try urls.flatMap { try pre.pixelValues(contentsOfPNG: $0) }
        XCTAssertEqual(batch, singles)
        XCTAssertEqual(try pre.batchPixelValues([]), [])
        // Without cropping, differently shaped outputs cannot share a batch.
        var uncropped = pre
        uncropped.doCenterCrop = false
        XCTAssertThrowsError(try uncropped.batchPixelValues(contentsOfPNGs: urls))
    }

    func testResizedSizeFollowsTransformers() {
        let pre = ClipImagePreprocessor(size: .shortestEdge(224))
        // int(224 * long / short), the short side to 224.
        XCTAssertTrue(pre.resizedSize(width: 300, height: 200) == (224, 336))
        XCTAssertTrue(pre.resizedSize(width: 61, height: 97) == (356, 224))
        XCTAssertTrue(pre.resizedSize(width: 3, height: 7) == (522, 224))
        XCTAssertTrue(pre.resizedSize(width: 640, height: 481) == (224, 298))
        XCTAssertTrue(pre.resizedSize(width: 224, height: 224) == (224, 224))
        XCTAssertTrue(pre.outputSize(width: 640, height: 481) == (224, 224))
    }

    func testCenterCropOffsetsAndPadding() {
        // 5x4 image whose red channel is x + 10 y.
        var px = [UInt8]()
        for y in 0..<4 { for x in 0..<5 { px += [UInt8(x + 10 * y), 0, 0] } }
        let image = RGBImage(width: 5, height: 4, pixels: px)
        // (5 - 2) // 2 = 1, (4 - 1) // 2 = 1.
        XCTAssertEqual(image.centerCropped(width: 2, height: 1).pixels, [11, 0, 0, 12, 0, 0])
        // Wider than the image: 8 - 5 = 3 columns of padding, ceil(3 / 2) = 2 before it.
        let padded = image.centerCropped(width: 8, height: 2)
        XCTAssertEqual(stride(from: 0, to: 24, by: 3).map { padded.pixels[$0] }, [0, 0, 10, 11, 12, 13, 14, 0])
    }

    func testConfigFromCheckpointFolder() throws {
        let folder = imagesURL.appendingPathComponent("clip_config")
        let pre = try ClipImagePreprocessor(checkpointDirectory: folder)
        XCTAssertEqual(pre, ClipImagePreprocessor(size: .shortestEdge(40), cropHeight: 24, cropWidth: 36))
        // A folder without the file gives CLIP's defaults.
        let defaults = try ClipImagePreprocessor(checkpointDirectory: imagesURL.appendingPathComponent("decode"))
        XCTAssertEqual(defaults, ClipImagePreprocessor())
        XCTAssertEqual(defaults.size, .shortestEdge(224))
        XCTAssertTrue(defaults.outputSize(width: 10, height: 10) == (224, 224))
    }

    func testConfigVariantsAndErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tmf-clipcfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("preprocessor_config.json")
        func load(_ json: String) throws -> ClipImagePreprocessor {
            try json.write(to: file, atomically: true, encoding: .utf8)
            return try ClipImagePreprocessor(checkpointDirectory: dir)
        }
        // Older checkpoints write plain integers.
        let old = try load(#"{"size": 336, "crop_size": 336, "resample": 2, "do_center_crop": false}"#)
        XCTAssertEqual(old.size, .shortestEdge(336))
        XCTAssertEqual(old.cropHeight, 336)
        XCTAssertEqual(old.resample, .bilinear)
        XCTAssertFalse(old.doCenterCrop)
        let exact = try load(#"{"size": {"height": 20, "width": 30}}"#)
        XCTAssertEqual(exact.size, .exact(height: 20, width: 30))
        for bad in [#"{"size": -3}"#, #"{"resample": 0}"#, #"{"image_mean": [1, 2]}"#, "not json", "[1]",
                    #"{"size": {"shortest_edge": 10, "longest_edge": 20}}"#, #"{"do_resize": "yes"}"#] {
            XCTAssertThrowsError(try load(bad), bad) { error in
                guard case .invalidPreprocessorConfig(let path, _)? = error as? ImageError else {
                    return XCTFail("\(bad): \(error)")
                }
                XCTAssertEqual(path, file.path)
            }
        }
    }
}
