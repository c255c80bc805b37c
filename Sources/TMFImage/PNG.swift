import CPNG
import Foundation

/// Errors reading or writing images. Each message names the file, says what is wrong and
/// what to do about it.
public enum ImageError: Error, LocalizedError, Equatable {
    /// The file could not be read for another reason (permissions, a directory, an I/O error).
    case unreadable(path: String, reason: String)
    /// The image is larger than the configured pixel limit (checked from the header, before
    /// any pixel memory is allocated).
    case tooLarge(path: String, width: Int, height: Int, limit: Int)
    /// Writing failed.
    case unwritable(path: String, reason: String)
    /// No file at this path.
    case fileNotFound(path: String)
    /// The file has zero bytes.
    case emptyFile(path: String)
    /// The file does not start with the PNG signature (for example a JPEG or a text file).
    case notPNG(path: String)
    /// The file ends before the image data does.
    case truncated(path: String)
    /// The PNG structure or compressed data is damaged (bad CRC, bad zlib stream, bad header).
    case corrupt(path: String, reason: String)
    /// A preprocessing request that cannot be honoured.
    case unsupported(String)
    /// A `preprocessor_config.json` that is malformed or asks for something unsupported.
    case invalidPreprocessorConfig(path: String, reason: String)

    /// One line: what is wrong, with which file, and what to do.
    public var errorDescription: String? {
        switch self {
        case let .unreadable(path, reason):
            return "cannot read image \(path): \(reason); re-export it as a PNG file"
        case let .tooLarge(path, w, h, limit):
            return "image \(path) is \(w)x\(h) pixels, over the limit of \(limit) pixels; downscale it first"
        case let .unwritable(path, reason):
            return "cannot write image \(path): \(reason)"
        case let .fileNotFound(path):
            return "image \(path) does not exist; check the path (dataset images are relative to the dataset folder)"
        case let .emptyFile(path):
            return "image \(path) is empty (0 bytes); re-export it as a PNG file"
        case let .notPNG(path):
            return "image \(path) is not a PNG file (wrong signature); convert it to PNG"
        case let .truncated(path):
            return "image \(path) is truncated (the file ends before the image data); re-export or re-download it"
        case let .corrupt(path, reason):
            return "image \(path) is corrupt (\(reason)); re-export it as a PNG file"
        case let .unsupported(what):
            return "unsupported image preprocessing: \(what)"
        case let .invalidPreprocessorConfig(path, reason):
            return "bad preprocessor config \(path): \(reason); fix the file or remove it to use CLIP's defaults"
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `r, g, b`.
public struct RGBImage: Sendable, Equatable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// `height * width * 3` bytes.
    public var pixels: [UInt8]

    /// Wraps `pixels` (shape `[height, width, 3]`); their count must be `width * height * 3`.
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
            throw ImageError.unwritable(path: url.path, reason: cMessage(err))
        }
        if rename(tmp.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: tmp)
            throw ImageError.unwritable(path: url.path, reason: String(cString: strerror(errno)))
        }
    }
}
