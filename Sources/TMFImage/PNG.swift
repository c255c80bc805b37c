import CPNG
import Foundation

/// Errors reading or writing images. Messages name the file and what to do.
public enum ImageError: Error, LocalizedError, Equatable {
    /// The file could not be decoded (corrupt, truncated or not a PNG).
    case unreadable(path: String, reason: String)
    /// The image is larger than the configured pixel limit.
    case tooLarge(path: String, width: Int, height: Int, limit: Int)
    /// Writing failed.
    case unwritable(path: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .unreadable(path, reason):
            return "cannot read image \(path): \(reason); re-export it as a PNG file"
        case let .tooLarge(path, w, h, limit):
            return "image \(path) is \(w)x\(h) pixels, over the limit of \(limit) pixels; downscale it first"
        case let .unwritable(path, reason):
            return "cannot write image \(path): \(reason)"
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `r, g, b`.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// `height * width * 3` bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGB pixel count mismatch")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Writes the image as an 8-bit RGB PNG, atomically (temporary name, then rename).
    public func writePNG(to url: URL) throws {
        let tmp = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        var err = [CChar](repeating: 0, count: 256)
        let status = pixels.withUnsafeBufferPointer { buf in
            tmf_png_write8(tmp.path, buf.baseAddress, UInt32(width), UInt32(height), 3, &err, err.count)
        }
        if status != 0 {
            try? FileManager.default.removeItem(at: tmp)
            throw ImageError.unwritable(path: url.path, reason: String(cString: err))
        }
        if rename(tmp.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: tmp)
            throw ImageError.unwritable(path: url.path, reason: String(cString: strerror(errno)))
        }
    }
}
