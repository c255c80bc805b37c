import Foundation
import TMFImage
import TMFTestSupport
import XCTest

/// Broken inputs give one typed error each, with a message naming the file; nothing crashes.
final class ImageErrorTests: XCTestCase {
    private func decodeError(_ url: URL, options: PNGDecodingOptions = PNGDecodingOptions()) -> ImageError? {
        do {
            _ = try RGBImage(contentsOfPNG: url, options: options)
            return nil
        } catch let e as ImageError {
            return e
        } catch {
            XCTFail("untyped error \(error)")
            return nil
        }
    }

    private func kind(_ e: ImageError) -> String {
        switch e {
        case .fileNotFound: return "fileNotFound"
        case .emptyFile: return "emptyFile"
        case .notPNG: return "notPNG"
        case .truncated: return "truncated"
        case .corrupt: return "corrupt"
        case .tooLarge: return "tooLarge"
        case .unreadable: return "unreadable"
        case .unwritable: return "unwritable"
        case .unsupported: return "unsupported"
        case .invalidPreprocessorConfig: return "invalidPreprocessorConfig"
        }
    }

    func testBrokenFilesGiveTypedErrors() throws {
        let manifest = try ImageManifest.load()
        XCTAssertGreaterThanOrEqual(manifest.errors.count, 9)
        for entry in manifest.errors {
            let url = imagesURL.appendingPathComponent("errors/\(entry.file)")
            guard let e = decodeError(url) else {
                XCTFail("\(entry.file) decoded without error")
                continue
            }
            XCTAssertEqual(kind(e), entry.error, "\(entry.file): \(e.localizedDescription)")
            let message = e.errorDescription ?? ""
            XCTAssertTrue(message.contains(url.path), "\(entry.file): message lacks the path: \(message)")
            XCTAssertFalse(message.contains("\n"), "one line: \(message)")
            // The header-only reader agrees (except for the size limit, which it does not apply).
            if entry.error != "tooLarge" && entry.error != "corrupt" && entry.error != "truncated" {
                XCTAssertThrowsError(try RGBImage.pngSize(at: url), entry.file)
            }
        }
    }

    func testMissingFile() {
        let url = imagesURL.appendingPathComponent("errors/no-such-file.png")
        XCTAssertEqual(decodeError(url), .fileNotFound(path: url.path))
        XCTAssertTrue(decodeError(url)?.errorDescription?.contains("does not exist") ?? false)
    }

    func testDirectoryIsUnreadable() {
        guard let e = decodeError(imagesURL) else { return XCTFail("a directory decoded") }
        XCTAssertEqual(kind(e), "unreadable", e.localizedDescription)
    }

    func testPixelLimitIsConfigurable() {
        let url = decodeURL("rgb8_300x200")
        XCTAssertEqual(decodeError(url, options: PNGDecodingOptions(maxPixels: 1000)),
                       .tooLarge(path: url.path, width: 300, height: 200, limit: 1000))
        XCTAssertNil(decodeError(url, options: PNGDecodingOptions(maxPixels: 300 * 200)))
        XCTAssertNotNil(decodeError(url, options: PNGDecodingOptions(maxPixels: 300 * 200 - 1)))
        let huge = imagesURL.appendingPathComponent("errors/huge_header.png")
        XCTAssertEqual(decodeError(huge), .tooLarge(path: huge.path, width: 100_000, height: 100_000,
                                                    limit: PNGDecodingOptions.defaultMaxPixels))
        // The preprocessor passes its limit on.
        var pre = ClipImagePreprocessor()
        pre.maxPixels = 10
        XCTAssertThrowsError(try pre.pixelValues(contentsOfPNG: url)) { error in
            XCTAssertEqual(error as? ImageError, .tooLarge(path: url.path, width: 300, height: 200, limit: 10))
        }
    }
}
