import CPNG
import Foundation

/// What to do with transparency (an alpha channel, or a `tRNS` chunk) when decoding to RGB.
public enum AlphaHandling: Sendable, Equatable {
    /// Drop it, keeping each pixel's colour: PIL's `Image.open(p).convert("RGB")`.
    case drop
    /// Composite onto opaque white, with PIL's integer `Image.alpha_composite` arithmetic:
    /// what transformers (5.x) `convert_to_rgb` does before CLIP preprocessing.
    case compositeOnWhite
}

/// Options for `RGBImage(contentsOfPNG:options:)`.
public struct PNGDecodingOptions: Sendable, Equatable {
    /// The default pixel limit: 64 megapixels.
    public static let defaultMaxPixels = 64_000_000

    /// Images with more than `maxPixels` pixels (width × height, read from the header) are
    /// refused with `ImageError.tooLarge` before any pixel memory is allocated.
    public var maxPixels: Int
    /// How transparency becomes RGB.
    public var alpha: AlphaHandling

    /// - Parameters:
    ///   - maxPixels: the pixel limit (width × height), default 64 megapixels; must not be negative.
    ///   - alpha: transparency handling, default `.drop` (PIL's `convert("RGB")`).
    public init(maxPixels: Int = PNGDecodingOptions.defaultMaxPixels, alpha: AlphaHandling = .drop) {
        precondition(maxPixels >= 0, "maxPixels must not be negative")
        self.maxPixels = maxPixels
        self.alpha = alpha
    }
}

extension RGBImage {
    /// Decodes a PNG file to 8-bit RGB exactly as Pillow's `Image.open(path).convert("RGB")`
    /// (with `.drop`) does, byte for byte, for every PNG colour type and bit depth, interlaced
    /// or not:
    /// - 16-bit RGB / RGBA / gray+alpha samples keep their high byte;
    /// - 16-bit gray values are clamped to 255 (PIL's `I;16` → `RGB`), not scaled;
    /// - 1/2/4-bit gray is scaled to 0...255; palette indices past the palette give black;
    /// - alpha and `tRNS` are dropped, or composited onto white with `.compositeOnWhite`
    ///   (matching PIL's `convert("RGBA")` + `alpha_composite` on white, including PIL's
    ///   `tRNS` matching rules).
    ///
    /// - Parameters:
    ///   - url: a file URL.
    ///   - options: pixel limit and alpha handling.
    /// - Returns: an image with `pixels` of shape `[height, width, 3]`.
    /// - Throws: `ImageError.fileNotFound`, `.emptyFile`, `.notPNG`, `.truncated`, `.corrupt`,
    ///   `.tooLarge` or `.unreadable`.
    public init(contentsOfPNG url: URL, options: PNGDecodingOptions = PNGDecodingOptions()) throws {
        let path = url.path
        var raw = tmf_png_image()
        var err = [CChar](repeating: 0, count: 512)
        var sysErrno: Int32 = 0
        let status = tmf_png_read(path, UInt64(options.maxPixels), &raw, &sysErrno, &err, err.count)
        defer { tmf_png_free(&raw) }
        if status != 0 {
            throw Self.error(status: status, path: path, sysErrno: sysErrno, message: cMessage(err),
                             width: Int(raw.width), height: Int(raw.height), limit: options.maxPixels)
        }
        self = Self.convert(raw, alpha: options.alpha)
    }

    /// Reads only the header of a PNG file.
    /// - Returns: the image's `(width, height)` in pixels.
    /// - Throws: the same `ImageError` cases as `init(contentsOfPNG:options:)` (except `.tooLarge`).
    public static func pngSize(at url: URL) throws -> (width: Int, height: Int) {
        var w: UInt32 = 0, h: UInt32 = 0
        var err = [CChar](repeating: 0, count: 512)
        var sysErrno: Int32 = 0
        let status = tmf_png_read_info(url.path, &w, &h, &sysErrno, &err, err.count)
        if status != 0 {
            throw error(status: status, path: url.path, sysErrno: sysErrno, message: cMessage(err),
                        width: 0, height: 0, limit: 0)
        }
        return (Int(w), Int(h))
    }

    private static func error(status: Int32, path: String, sysErrno: Int32, message: String,
                              width: Int, height: Int, limit: Int) -> ImageError {
        switch Int(status) {
        case TMF_PNG_OPEN_FAILED:
            return sysErrno == ENOENT ? .fileNotFound(path: path) : .unreadable(path: path, reason: message)
        case TMF_PNG_NOT_PNG: return .notPNG(path: path)
        case TMF_PNG_EMPTY: return .emptyFile(path: path)
        case TMF_PNG_TRUNCATED: return .truncated(path: path)
        case TMF_PNG_TOO_LARGE: return .tooLarge(path: path, width: width, height: height, limit: limit)
        case TMF_PNG_CORRUPT: return .corrupt(path: path, reason: message.isEmpty ? "undecodable data" : message)
        default: return .unreadable(path: path, reason: message.isEmpty ? "error \(status)" : message)
        }
    }

    /// PIL's conversion of the stored samples to RGB (see `init(contentsOfPNG:options:)`).
    private static func convert(_ raw: tmf_png_image, alpha handling: AlphaHandling) -> RGBImage {
        let width = Int(raw.width), height = Int(raw.height)
        let count = width * height
        let channels = Int(raw.channels)
        let depth = Int(raw.bit_depth)
        let colorType = Int(raw.color_type)
        var rgb = [UInt8](repeating: 0, count: count * 3)
        // Alpha per pixel (255 = opaque); only filled when compositing.
        let composite = handling == .compositeOnWhite && hasTransparency(raw)
        var alpha = [UInt8](repeating: 255, count: composite ? count : 0)
        guard count > 0, let base = raw.pixels else { return RGBImage(width: width, height: height, pixels: rgb) }

        // The 8-bit value PIL gives a stored sample of this image.
        let samples8: (Int) -> UInt8
        if depth == 16 {
            let p = base.assumingMemoryBound(to: UInt16.self)
            if colorType == 0 {
                samples8 = { i in p[i] > 255 ? 255 : UInt8(p[i]) }      // I;16 -> RGB clamps
            } else {
                samples8 = { i in UInt8(p[i] >> 8) }                     // ;16B raw modes keep the high byte
            }
        } else {
            let p = base.assumingMemoryBound(to: UInt8.self)
            if colorType == 0 && depth < 8 {
                let scale = UInt8(255 / ((1 << depth) - 1))                // 1 -> 255, 2 -> 85, 4 -> 17
                samples8 = { i in p[i] &* scale }
            } else {
                samples8 = { i in p[i] }
            }
        }

        switch colorType {
        case 3: // palette
            let p = base.assumingMemoryBound(to: UInt8.self)
            withUnsafeBytes(of: raw.palette) { palBytes in
                withUnsafeBytes(of: raw.palette_alpha) { alphaBytes in
                    for i in 0..<count {
                        let index = Int(p[i])
                        rgb[3 * i] = palBytes[3 * index]
                        rgb[3 * i + 1] = palBytes[3 * index + 1]
                        rgb[3 * i + 2] = palBytes[3 * index + 2]
                        if composite { alpha[i] = alphaBytes[index] }
                    }
                }
            }
        case 0, 4: // gray, gray + alpha
            for i in 0..<count {
                let g = samples8(i * channels)
                rgb[3 * i] = g; rgb[3 * i + 1] = g; rgb[3 * i + 2] = g
                if composite && channels == 2 { alpha[i] = samples8(i * 2 + 1) }
            }
            if composite && channels == 1 && raw.has_trns_color != 0 {
                // PIL keeps the tRNS value unscaled ("1" mode: 0 or 255) and compares its low
                // byte with the converted 8-bit gray.
                let t: UInt8 = depth == 1 ? (raw.trns_gray != 0 ? 255 : 0) : UInt8(raw.trns_gray & 0xff)
                for i in 0..<count where rgb[3 * i] == t { alpha[i] = 0 }
            }
        default: // RGB, RGBA
            for i in 0..<count {
                rgb[3 * i] = samples8(i * channels)
                rgb[3 * i + 1] = samples8(i * channels + 1)
                rgb[3 * i + 2] = samples8(i * channels + 2)
                if composite && channels == 4 { alpha[i] = samples8(i * 4 + 3) }
            }
            if composite && channels == 3 && raw.has_trns_color != 0 {
                // The low byte of each stored tRNS sample against the converted 8-bit pixel.
                let tr = UInt8(raw.trns_red & 0xff), tg = UInt8(raw.trns_green & 0xff), tb = UInt8(raw.trns_blue & 0xff)
                for i in 0..<count where rgb[3 * i] == tr && rgb[3 * i + 1] == tg && rgb[3 * i + 2] == tb {
                    alpha[i] = 0
                }
            }
        }
        if composite {
            for i in 0..<count {
                let a = alpha[i]
                for c in 0..<3 { rgb[3 * i + c] = compositeOnWhite(rgb[3 * i + c], alpha: a) }
            }
        }
        return RGBImage(width: width, height: height, pixels: rgb)
    }

    /// Whether PIL would see transparency: an alpha channel or a `tRNS` chunk
    /// (transformers' `"A" in getbands() or info.get("transparency") is not None`).
    private static func hasTransparency(_ raw: tmf_png_image) -> Bool {
        raw.color_type == 4 || raw.color_type == 6 || raw.has_trns_color != 0 || raw.num_trans > 0
    }
}

/// One channel of PIL's `alpha_composite(white, src)`: 7 extra bits of fixed-point precision
/// and PIL's rounded division by 255.
@inline(__always)
func compositeOnWhite(_ value: UInt8, alpha: UInt8) -> UInt8 {
    if alpha == 0 { return 255 }
    let a = UInt32(alpha)
    let outA255: UInt32 = a * 255 + 255 * (255 - a)           // = 255 * 255 over an opaque background
    let coef1 = a * 255 * 255 * 128 / outA255
    let coef2 = 255 * 128 - coef1
    let t = UInt32(value) * coef1 + 255 * coef2 + (0x80 << 7)
    return UInt8(truncatingIfNeeded: (((t >> 8) + t) >> 8) >> 7)
}

/// The NUL-terminated message a C function wrote into `buffer`.
func cMessage(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}
