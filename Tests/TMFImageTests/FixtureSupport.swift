import Foundation
import TMFImage
import TMFTestSupport
import XCTest

/// Fixtures/images/, written by Scripts/make_image_fixtures.py (see its README.md).
let imagesURL = fixturesURL.appendingPathComponent("images")

/// The parts of Fixtures/images/manifest.json the tests use.
struct ImageManifest: Decodable {
    struct Image: Decodable { let name: String; let width: Int; let height: Int; let pil_mode: String }
    struct Resize: Decodable { let name: String; let source: String; let width: Int; let height: Int; let filter: Int }
    struct Clip: Decodable { let name: String; let source: String; let config: String; let shape: [Int] }
    struct ErrorCase: Decodable { let file: String; let error: String }
    struct Size: Decodable { let shortest_edge: Int }
    struct Crop: Decodable { let height: Int; let width: Int }
    struct ClipConfig: Decodable { let size: Size; let crop_size: Crop; let resample: Int? }
    let images: [Image]
    let resizes: [Resize]
    let clip: [Clip]
    let clip_configs: [String: ClipConfig]
    let errors: [ErrorCase]

    static func load() throws -> ImageManifest {
        try JSONDecoder().decode(ImageManifest.self, from: Data(contentsOf: imagesURL.appendingPathComponent("manifest.json")))
    }
}

func decodeURL(_ name: String) -> URL { imagesURL.appendingPathComponent("decode/\(name).png") }

/// Little-endian float32 file.
func readFloats(_ url: URL) throws -> [Float] {
    let data = try Data(contentsOf: url)
    return data.withUnsafeBytes { raw in
        (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
    }
}

/// Asserts two images are identical, reporting the size, the number of differing bytes and the
/// largest difference.
func assertSameImage(_ got: RGBImage, _ want: RGBImage, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard got.width == want.width, got.height == want.height else {
        XCTFail("\(what): size \(got.width)x\(got.height), want \(want.width)x\(want.height)", file: file, line: line)
        return
    }
    var differing = 0, maxDiff = 0, first = -1
    for i in 0..<got.pixels.count where got.pixels[i] != want.pixels[i] {
        differing += 1
        maxDiff = max(maxDiff, abs(Int(got.pixels[i]) - Int(want.pixels[i])))
        if first < 0 { first = i }
    }
    if differing > 0 {
        let p = first / 3
        XCTFail("\(what): \(differing) bytes differ (max \(maxDiff)); first at x=\(p % got.width) y=\(p / got.width) channel \(first % 3): \(got.pixels[first]) vs \(want.pixels[first])", file: file, line: line)
    }
}
