import Foundation

/// CLIP image preprocessing, numerically identical to transformers' PIL-backed
/// `CLIPImageProcessor` (`CLIPImageProcessorPil` in transformers 5, the default
/// `CLIPImageProcessor` in 4.x): convert to RGB, resize the shortest edge to `size` with
/// Pillow's resampling (8-bit in, 8-bit out), center-crop to `crop_size`, rescale by 1/255,
/// normalise with the mean and std, channel-first.
///
/// The resized 8-bit pixels equal Pillow's byte for byte, so the floats match transformers'
/// `pixel_values` to float32 rounding.
public struct ClipImagePreprocessor: Sendable, Equatable {
    /// The resize target.
    public enum Size: Sendable, Equatable {
        /// Scale so the shorter side is this long; the longer side is
        /// `Int(shortest * long / short)` (truncated), as `get_resize_output_image_size` with
        /// `default_to_square=False`.
        case shortestEdge(Int)
        /// Resize to exactly this size, ignoring the aspect ratio.
        case exact(height: Int, width: Int)
    }

    /// OpenAI CLIP's per-channel mean (R, G, B).
    public static let clipMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    /// OpenAI CLIP's per-channel standard deviation (R, G, B).
    public static let clipStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// Whether to resize (`do_resize`).
    public var doResize: Bool
    /// The resize target (`size`).
    public var size: Size
    /// Pillow's resampling filter for the resize (`resample`; CLIP uses bicubic).
    public var resample: ResampleFilter
    /// Whether to center-crop after resizing (`do_center_crop`).
    public var doCenterCrop: Bool
    /// Crop height in pixels (`crop_size.height`).
    public var cropHeight: Int
    /// Crop width in pixels (`crop_size.width`).
    public var cropWidth: Int
    /// Whether to multiply by `rescaleFactor` (`do_rescale`).
    public var doRescale: Bool
    /// Multiplies the 8-bit values (in double precision, then rounded to float32, as numpy does).
    public var rescaleFactor: Double
    /// Whether to subtract `mean` and divide by `std` (`do_normalize`).
    public var doNormalize: Bool
    /// Per-channel mean, 3 values.
    public var mean: [Float]
    /// Per-channel standard deviation, 3 values.
    public var std: [Float]
    /// How transparent PNGs become RGB when read from a file. transformers 5 composites onto
    /// white (the default); transformers 4.x dropped the alpha channel (`.drop`).
    public var alpha: AlphaHandling
    /// Pixel limit for decoding files (see `PNGDecodingOptions.maxPixels`).
    public var maxPixels: Int

    /// A preprocessor with CLIP's defaults: shortest edge 224, bicubic, center crop 224×224,
    /// rescale 1/255, OpenAI CLIP mean/std, alpha composited onto white.
    public init(
        size: Size = .shortestEdge(224),
        cropHeight: Int = 224,
        cropWidth: Int = 224,
        resample: ResampleFilter = .bicubic,
        doResize: Bool = true,
        doCenterCrop: Bool = true,
        doRescale: Bool = true,
        rescaleFactor: Double = 1.0 / 255.0,
        doNormalize: Bool = true,
        mean: [Float] = ClipImagePreprocessor.clipMean,
        std: [Float] = ClipImagePreprocessor.clipStd,
        alpha: AlphaHandling = .compositeOnWhite,
        maxPixels: Int = PNGDecodingOptions.defaultMaxPixels
    ) {
        precondition(mean.count == 3 && std.count == 3, "mean and std need 3 values (R, G, B)")
        self.size = size
        self.cropHeight = cropHeight
        self.cropWidth = cropWidth
        self.resample = resample
        self.doResize = doResize
        self.doCenterCrop = doCenterCrop
        self.doRescale = doRescale
        self.rescaleFactor = rescaleFactor
        self.doNormalize = doNormalize
        self.mean = mean
        self.std = std
        self.alpha = alpha
        self.maxPixels = maxPixels
    }

    /// Reads `preprocessor_config.json` from a CLIP checkpoint folder if it is there; otherwise
    /// returns the defaults of `init()`.
    /// - Throws: `ImageError.invalidPreprocessorConfig` if the file exists but is malformed or
    ///   asks for something unsupported.
    public init(checkpointDirectory: URL) throws {
        let file = checkpointDirectory.appendingPathComponent("preprocessor_config.json")
        if FileManager.default.fileExists(atPath: file.path) {
            try self.init(configFile: file)
        } else {
            self.init()
        }
    }

    /// Reads a Hugging Face `preprocessor_config.json`: `size` (an int, `{"shortest_edge": n}`
    /// or `{"height": h, "width": w}`), `crop_size` (an int or `{"height", "width"}`),
    /// `do_resize`, `do_center_crop`, `do_rescale`, `rescale_factor`, `do_normalize`,
    /// `image_mean`, `image_std`, `resample` (Pillow's codes 1–5; 0, nearest, is refused).
    /// Missing keys keep CLIP's defaults; other keys are ignored (`do_convert_rgb` too: images
    /// are always converted to RGB).
    /// - Throws: `ImageError.invalidPreprocessorConfig`.
    public init(configFile: URL) throws {
        let path = configFile.path
        func bad(_ reason: String) -> ImageError { .invalidPreprocessorConfig(path: path, reason: reason) }
        let raw: RawPreprocessorConfig
        do {
            raw = try JSONDecoder().decode(RawPreprocessorConfig.self, from: Data(contentsOf: configFile))
        } catch let error as DecodingError {
            throw bad(Self.describe(error))
        } catch {
            throw bad("cannot read it (\(error.localizedDescription))")
        }
        self.init()
        func positive(_ value: Int?, _ key: String) throws -> Int {
            guard let v = value, v > 0 else { throw bad("\(key) must be a positive integer") }
            return v
        }
        switch raw.size {
        case nil: break
        case let .int(n)?:
            size = .shortestEdge(try positive(n, "size"))
        case let .dict(d)?:
            if let longest = d["longest_edge"], longest != nil { throw bad("size.longest_edge is not supported") }
            if let s = d["shortest_edge"], s != nil {
                size = .shortestEdge(try positive(s, "size.shortest_edge"))
            } else if let h = d["height"], let w = d["width"] {
                size = .exact(height: try positive(h, "size.height"), width: try positive(w, "size.width"))
            } else {
                throw bad("size needs shortest_edge, or height and width")
            }
        }
        switch raw.crop_size {
        case nil: break
        case let .int(n)?:
            cropHeight = try positive(n, "crop_size"); cropWidth = cropHeight
        case let .dict(d)?:
            guard let h = d["height"], let w = d["width"] else { throw bad("crop_size needs height and width") }
            cropHeight = try positive(h, "crop_size.height"); cropWidth = try positive(w, "crop_size.width")
        }
        if let r = raw.resample {
            guard let f = ResampleFilter(rawValue: r) else {
                throw bad("resample \(r) is not supported; use Pillow's 1 (lanczos), 2 (bilinear), 3 (bicubic), 4 (box) or 5 (hamming)")
            }
            resample = f
        }
        rescaleFactor = raw.rescale_factor ?? rescaleFactor
        doResize = raw.do_resize ?? doResize
        doCenterCrop = raw.do_center_crop ?? doCenterCrop
        doRescale = raw.do_rescale ?? doRescale
        doNormalize = raw.do_normalize ?? doNormalize
        for (key, value) in [("image_mean", raw.image_mean), ("image_std", raw.image_std)] {
            guard let v = value else { continue }
            let three: [Double]
            switch v {
            case let .one(x): three = [x, x, x]
            case let .many(xs):
                guard xs.count == 3 else { throw bad("\(key) must be a number or 3 numbers") }
                three = xs
            }
            if key == "image_mean" { mean = three.map(Float.init) } else { std = three.map(Float.init) }
        }
        if std.contains(where: { $0 == 0 }) { throw bad("image_std must not contain 0") }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case let .typeMismatch(_, context), let .valueNotFound(_, context), let .keyNotFound(_, context):
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            return key.isEmpty ? "not a JSON object" : "\(key) has the wrong type"
        case .dataCorrupted:
            return "not valid JSON"
        @unknown default:
            return "cannot decode it"
        }
    }

    /// The `(height, width)` the resize step gives an image of this size.
    public func resizedSize(width: Int, height: Int) -> (height: Int, width: Int) {
        guard doResize else { return (height, width) }
        switch size {
        case let .exact(h, w):
            return (h, w)
        case let .shortestEdge(target):
            let (short, long) = width <= height ? (width, height) : (height, width)
            let newLong = Int(Double(target * long) / Double(short))
            return width <= height ? (newLong, target) : (target, newLong)
        }
    }

    /// The `(height, width)` of the output for an input of this size (the crop size when
    /// center-cropping).
    public func outputSize(width: Int, height: Int) -> (height: Int, width: Int) {
        doCenterCrop ? (cropHeight, cropWidth) : resizedSize(width: width, height: height)
    }

    /// The 8-bit image after resizing and center-cropping (before rescaling).
    /// - Returns: an image of `outputSize(width:height:)`.
    public func resizedAndCropped(_ image: RGBImage) -> RGBImage {
        var img = image
        if doResize {
            let (h, w) = resizedSize(width: image.width, height: image.height)
            img = img.resized(width: w, height: h, filter: resample)
        }
        if doCenterCrop { img = img.centerCropped(width: cropWidth, height: cropHeight) }
        return img
    }

    /// Preprocesses one image.
    /// - Returns: `pixel_values` for it, shape `[3, H, W]` channel-first (R plane, G, B),
    ///   with `(H, W) = outputSize(width:height:)`.
    public func pixelValues(_ image: RGBImage) -> [Float] {
        let img = resizedAndCropped(image)
        var out = [Float](repeating: 0, count: 3 * img.width * img.height)
        writePixelValues(img, into: &out, at: 0)
        return out
    }

    /// Decodes a PNG (with `alpha` and `maxPixels`) and preprocesses it.
    /// - Returns: shape `[3, H, W]`.
    /// - Throws: the `ImageError`s of `RGBImage(contentsOfPNG:options:)`.
    public func pixelValues(contentsOfPNG url: URL) throws -> [Float] {
        pixelValues(try RGBImage(contentsOfPNG: url, options: PNGDecodingOptions(maxPixels: maxPixels, alpha: alpha)))
    }

    /// Preprocesses a batch.
    /// - Returns: one flat array of shape `[N, 3, H, W]` (N = `images.count`).
    /// - Throws: `ImageError.unsupported` if the outputs differ in size (only possible
    ///   without center cropping).
    public func batchPixelValues(_ images: [RGBImage]) throws -> [Float] {
        let processed = images.map(resizedAndCropped)
        guard let first = processed.first else { return [] }
        let plane = first.width * first.height
        var out = [Float](repeating: 0, count: processed.count * 3 * plane)
        for (n, img) in processed.enumerated() {
            guard img.width == first.width, img.height == first.height else {
                throw ImageError.unsupported("images of different output sizes (\(first.width)x\(first.height), \(img.width)x\(img.height)) cannot form one batch; enable center cropping")
            }
            writePixelValues(img, into: &out, at: n * 3 * plane)
        }
        return out
    }

    /// Decodes and preprocesses a batch of PNG files.
    /// - Returns: shape `[N, 3, H, W]`.
    /// - Throws: the first file's `ImageError`, or `.unsupported` as `batchPixelValues(_:)`.
    public func batchPixelValues(contentsOfPNGs urls: [URL]) throws -> [Float] {
        let options = PNGDecodingOptions(maxPixels: maxPixels, alpha: alpha)
        return try batchPixelValues(urls.map { try RGBImage(contentsOfPNG: $0, options: options) })
    }

    /// Rescales and normalises `img` (already resized/cropped) into `out[offset...]` as
    /// `[3, H, W]`, with numpy's arithmetic: `float32(float64(u8) * factor)`, then float32
    /// `(x - mean) / std`.
    private func writePixelValues(_ img: RGBImage, into out: inout [Float], at offset: Int) {
        let plane = img.width * img.height
        for c in 0..<3 {
            // The 256 possible values of this channel.
            var table = [Float](repeating: 0, count: 256)
            for u in 0..<256 {
                var v = doRescale ? Float(Double(u) * rescaleFactor) : Float(u)
                if doNormalize { v = (v - mean[c]) / std[c] }
                table[u] = v
            }
            img.pixels.withUnsafeBufferPointer { px in
                for i in 0..<plane { out[offset + c * plane + i] = table[Int(px[i * 3 + c])] }
            }
        }
    }
}

/// The keys of a Hugging Face `preprocessor_config.json` that matter here, as written.
private struct RawPreprocessorConfig: Decodable {
    /// An integer, or an object of optional integers.
    enum SizeValue: Decodable {
        case int(Int)
        case dict([String: Int?])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(Int.self) { self = .int(n) } else { self = .dict(try c.decode([String: Int?].self)) }
        }
    }
    /// A number, or a list of numbers.
    enum Numbers: Decodable {
        case one(Double)
        case many([Double])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let x = try? c.decode(Double.self) { self = .one(x) } else { self = .many(try c.decode([Double].self)) }
        }
    }
    var size: SizeValue?
    var crop_size: SizeValue?
    var resample: Int?
    var rescale_factor: Double?
    var do_resize: Bool?
    var do_center_crop: Bool?
    var do_rescale: Bool?
    var do_normalize: Bool?
    var image_mean: Numbers?
    var image_std: Numbers?
}
