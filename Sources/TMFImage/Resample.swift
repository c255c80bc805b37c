import Foundation

/// Convolution filters of Pillow's `Image.resize`, with Pillow's integer codes
/// (`PIL.Image.Resampling`). `NEAREST` (0) is not offered: Pillow resizes with it through a
/// different (affine) code path.
public enum ResampleFilter: Int, Sendable, Equatable, CaseIterable {
    case lanczos = 1
    case bilinear = 2
    case bicubic = 3
    case box = 4
    case hamming = 5

    /// Half-width of the filter at scale 1, in input pixels.
    var support: Double {
        switch self {
        case .box: return 0.5
        case .bilinear, .hamming: return 1
        case .bicubic: return 2
        case .lanczos: return 3
        }
    }

    /// The filter's kernel, evaluated in double precision exactly as Pillow's C code does
    /// (same operation order, so the fixed-point weights round identically).
    func weight(_ t: Double) -> Double {
        switch self {
        case .box:
            return (t > -0.5 && t <= 0.5) ? 1 : 0
        case .bilinear:
            let x = abs(t)
            return x < 1 ? 1 - x : 0
        case .hamming:
            let x = abs(t)
            if x == 0 { return 1 }
            if x >= 1 { return 0 }
            let px = x * Double.pi
            // Pillow writes the constants as C floats.
            return sin(px) / px * (Double(Float(0.54)) + Double(Float(0.46)) * cos(px))
        case .bicubic:
            // Keys' cubic convolution with a = -0.5.
            let a = -0.5
            let x = abs(t)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        case .lanczos:
            if t >= -3 && t < 3 { return Self.sinc(t) * Self.sinc(t / 3) }
            return 0
        }
    }

    private static func sinc(_ t: Double) -> Double {
        if t == 0 { return 1 }
        let px = t * Double.pi
        return sin(px) / px
    }
}

/// Fixed-point weights of one resampling pass (one output row or column each).
private struct PassWeights {
    /// Maximum taps per output sample.
    let taps: Int
    /// First input index of each output sample.
    var first: [Int]
    /// Number of input samples used by each output sample.
    var count: [Int]
    /// `outSize * taps` weights scaled by `2^precisionBits`.
    var weights: [Int32]

    /// Bits of fraction in the fixed-point weights (32 - 8 - 2: room for 8-bit data, sign
    /// and overshoot of negative lobes).
    static let precisionBits = 22

    /// Pillow's antialiasing weights: the filter is stretched by the downscale factor, each
    /// output sample's taps are normalised to sum to one, then rounded half away from zero
    /// to fixed point.
    init(inSize: Int, outSize: Int, filter: ResampleFilter) {
        // Pillow passes the (0, inSize) box as C floats.
        let in0 = Double(Float(0)), in1 = Double(Float(inSize))
        let scale = (in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = filter.support * filterScale
        let taps = Int(support.rounded(.up)) * 2 + 1
        let inverse = 1 / filterScale
        let one = Double(1 << Self.precisionBits)
        self.taps = taps
        first = [Int](repeating: 0, count: outSize)
        count = [Int](repeating: 0, count: outSize)
        weights = [Int32](repeating: 0, count: outSize * taps)
        var k = [Double](repeating: 0, count: taps)
        for o in 0..<outSize {
            let center = in0 + (Double(o) + 0.5) * scale
            // (int) casts truncate toward zero, like Swift's Int(Double).
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            let n = hi - lo
            var sum = 0.0
            for x in 0..<n {
                let w = filter.weight((Double(x + lo) - center + 0.5) * inverse)
                k[x] = w
                sum += w
            }
            for x in 0..<n {
                let w = sum != 0 ? k[x] / sum : k[x]
                weights[o * taps + x] = Int32(w < 0 ? -0.5 + w * one : 0.5 + w * one)
            }
            first[o] = lo
            count[o] = n
        }
    }
}

/// Pillow's `clip8`: drop the fraction (arithmetic shift) and clamp to 0...255.
@inline(__always)
private func clip8(_ sum: Int) -> UInt8 {
    let v = sum >> PassWeights.precisionBits
    return v < 0 ? 0 : (v > 255 ? 255 : UInt8(v))
}

extension RGBImage {
    /// Resizes exactly as Pillow's `Image.resize((width, height), resample=filter)` on an RGB
    /// image (no `box`, no `reducing_gap`): two separable passes, each rounded and clipped to
    /// 8 bits; a pass is skipped when that dimension does not change. Like Pillow 13
    /// (python-pillow/Pillow#9549), the vertical pass runs first when the height shrinks, by
    /// more than twice as many pixels as the width does
    /// (`height - outHeight > 2 * (width - outWidth)`); otherwise the horizontal pass runs
    /// first, as in earlier Pillow versions. The output pixels equal Pillow 13's byte for byte
    /// (and earlier versions' whenever the horizontal pass runs first).
    ///
    /// - Parameters:
    ///   - width: output width, at least 1.
    ///   - height: output height, at least 1.
    ///   - filter: the resampling filter (default bicubic, as CLIP uses).
    /// - Returns: an image of shape `[height, width, 3]`.
    public func resized(width outW: Int, height outH: Int, filter: ResampleFilter = .bicubic) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resize target must be at least 1x1")
        precondition(width > 0 && height > 0, "cannot resize an empty image")
        let needH = outW != width, needV = outH != height
        if !needH && !needV { return self }
        if !needH {
            let v = PassWeights(inSize: height, outSize: outH, filter: filter)
            return RGBImage(width: width, height: outH, pixels: verticalPass(pixels, width: width, rowOffset: 0, weights: v))
        }
        let h = PassWeights(inSize: width, outSize: outW, filter: filter)
        if !needV {
            return RGBImage(width: outW, height: height, pixels: horizontalPass(pixels, width: width, rows: 0..<height, weights: h))
        }
        let v = PassWeights(inSize: height, outSize: outH, filter: filter)
        if outH < height && height - outH > 2 * (width - outW) {
            // Height shrinks much more: vertical first, fewer rows for the horizontal pass.
            let tall = verticalPass(pixels, width: width, rowOffset: 0, weights: v)
            return RGBImage(width: outW, height: outH, pixels: horizontalPass(tall, width: width, rows: 0..<outH, weights: h))
        }
        // Horizontal first, over only the input rows the vertical pass reads.
        let rowFirst = v.first[0]
        let rowEnd = v.first[outH - 1] + v.count[outH - 1]
        let wide = horizontalPass(pixels, width: width, rows: rowFirst..<rowEnd, weights: h)
        return RGBImage(width: outW, height: outH, pixels: verticalPass(wide, width: outW, rowOffset: rowFirst, weights: v))
    }

    /// Crops the centre `height × width` region as transformers' `center_crop` does: offsets
    /// `(old - new) / 2` rounded down; where the image is smaller than the crop it is first
    /// padded with zeros (black), `ceil((new - old) / 2)` before it.
    ///
    /// - Returns: an image of shape `[height, width, 3]`.
    public func centerCropped(width cropW: Int, height cropH: Int) -> RGBImage {
        precondition(cropW > 0 && cropH > 0, "crop size must be at least 1x1")
        if cropW == width && cropH == height { return self }
        // Position of the crop's top-left corner in the original image (may be negative
        // where transformers pads).
        var top = floorDiv(height - cropH, 2)
        var left = floorDiv(width - cropW, 2)
        if top < 0 || left < 0 || top + cropH > height || left + cropW > width {
            let padTop = (max(cropH, height) - height + 1) / 2
            let padLeft = (max(cropW, width) - width + 1) / 2
            // transformers pads to `max(crop, size)` with `ceil((new - old) / 2)` zeros before the
            // image, shifts the crop by that pad and clamps its start to 0. Output row i then
            // shows image row `max(0, top + padTop) + i - padTop` (outside the image: zero).
            top = max(0, floorDiv(height - cropH, 2) + padTop) - padTop
            left = max(0, floorDiv(width - cropW, 2) + padLeft) - padLeft
        }
        var out = [UInt8](repeating: 0, count: cropW * cropH * 3)
        for y in 0..<cropH {
            let sy = y + top
            if sy < 0 || sy >= height { continue }
            for x in 0..<cropW {
                let sx = x + left
                if sx < 0 || sx >= width { continue }
                let s = (sy * width + sx) * 3, d = (y * cropW + x) * 3
                out[d] = pixels[s]; out[d + 1] = pixels[s + 1]; out[d + 2] = pixels[s + 2]
            }
        }
        return RGBImage(width: cropW, height: cropH, pixels: out)
    }
}

/// Python's `//` for integers.
@inline(__always)
private func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// One horizontal pass over `rows` of an RGB image `width` pixels wide.
/// - Returns: `rows.count × weights.first.count` RGB pixels.
private func horizontalPass(_ src: [UInt8], width: Int, rows: Range<Int>, weights h: PassWeights) -> [UInt8] {
    let outW = h.first.count
    var out = [UInt8](repeating: 0, count: rows.count * outW * 3)
    let half = 1 << (PassWeights.precisionBits - 1)
    src.withUnsafeBufferPointer { src in
        h.weights.withUnsafeBufferPointer { wts in
            out.withUnsafeMutableBufferPointer { dst in
                for (r, y) in rows.enumerated() {
                    let srcRow = y * width * 3
                    let dstRow = r * outW * 3
                    for o in 0..<outW {
                        let lo = h.first[o], n = h.count[o], kw = o * h.taps
                        var s0 = half, s1 = half, s2 = half
                        for x in 0..<n {
                            let w = Int(wts[kw + x])
                            let p = srcRow + (lo + x) * 3
                            s0 += Int(src[p]) * w
                            s1 += Int(src[p + 1]) * w
                            s2 += Int(src[p + 2]) * w
                        }
                        dst[dstRow + o * 3] = clip8(s0)
                        dst[dstRow + o * 3 + 1] = clip8(s1)
                        dst[dstRow + o * 3 + 2] = clip8(s2)
                    }
                }
            }
        }
    }
    return out
}

/// One vertical pass over an RGB image `width` pixels wide whose first row is input row
/// `rowOffset`.
/// - Returns: `weights.first.count × width` RGB pixels.
private func verticalPass(_ src: [UInt8], width: Int, rowOffset: Int, weights v: PassWeights) -> [UInt8] {
    let outH = v.first.count
    let rowBytes = width * 3
    var out = [UInt8](repeating: 0, count: outH * rowBytes)
    let half = 1 << (PassWeights.precisionBits - 1)
    src.withUnsafeBufferPointer { src in
        v.weights.withUnsafeBufferPointer { wts in
            out.withUnsafeMutableBufferPointer { dst in
                for o in 0..<outH {
                    let lo = v.first[o] - rowOffset, n = v.count[o], kw = o * v.taps
                    let dstRow = o * rowBytes
                    for i in 0..<rowBytes {
                        var s = half
                        for y in 0..<n {
                            s += Int(src[(lo + y) * rowBytes + i]) * Int(wts[kw + y])
                        }
                        dst[dstRow + i] = clip8(s)
                    }
                }
            }
        }
    }
    return out
}
