import CKernels

/// How the 16-bit patterns of a half-precision weight encode numbers.
public enum HalfPrecision: Sendable, Equatable, CaseIterable {
    /// bfloat16: the top half of a Float32 (widened exactly by a 16-bit shift).
    case bf16
    /// IEEE binary16 (widened exactly; with F16C on x86).
    case f16

    var code: Int32 { self == .bf16 ? Int32(TMF_HALF_BF16) : Int32(TMF_HALF_F16) }
}

/// Products of a frozen half-precision weight with Float32 activations, for linear layers whose
/// weight stays in bf16 or f16 (as a safetensors file stores it) instead of being widened to
/// Float32 in memory. No autograd tape: the caller records the op.
///
/// The weight `W` is row-major `[outFeatures, inFeatures]`, as PyTorch's `nn.Linear` stores it.
/// Rounding depends on the path the CPU runs (`path(for:)`):
/// - `.avx512BF16` (bf16 weights on CPUs with AVX512-BF16): the activation operand (`x`, or
///   `dy` for the input gradient) is rounded to bf16, to nearest with ties to even; weight ×
///   activation products are exact and every sum is Float32. bf16 subnormals count as zero.
/// - `.avx512`, `.avx2`, `.portable`: the weight is widened to Float32 exactly and the
///   activations are not rounded: Float32 products and sums (fused on the SIMD paths).
///
/// Each output's summation order depends only on the path and the reduced length, so results
/// are bit-identical for every kernel thread count (`Kernels.setThreads`) and every row count.
/// `TMF_KERNELS=portable` in the environment (read once) forces the portable C path in these
/// kernels (the other C kernels keep choosing from the CPU).
public enum HalfMatMul {
    /// The code paths of the kernels.
    public enum Path: Int32, Sendable, CaseIterable, CustomStringConvertible {
        /// Plain C.
        case portable = 1
        /// AVX2 + FMA + F16C, weights widened to Float32.
        case avx2 = 2
        /// AVX-512F + BW, weights widened to Float32.
        case avx512 = 3
        /// AVX512-BF16 `vdpbf16ps` (bf16 weights; f16 weights take `.avx512`).
        case avx512BF16 = 4
        /// The `.avx512BF16` code with `vdpbf16ps` emulated by two exact fused multiply-adds per
        /// pair, so that CPUs without AVX512-BF16 can test it. Never chosen automatically.
        case avx512BF16Emulated = 5

        /// Whether this path rounds the activation operand (`x`, or `dy` for the input gradient)
        /// to bf16 before its products, as `vdpbf16ps` needs; the others widen the weights and
        /// keep the activations in Float32.
        public var roundsActivations: Bool { self == .avx512BF16 || self == .avx512BF16Emulated }

        public var description: String {
            switch self {
            case .portable: return "portable"
            case .avx2: return "avx2"
            case .avx512: return "avx512"
            case .avx512BF16: return "avx512-bf16"
            case .avx512BF16Emulated: return "avx512-bf16 (emulated)"
            }
        }
    }

    /// The path the kernels take now for weights of `precision`.
    public static func path(for precision: HalfPrecision) -> Path {
        Path(rawValue: tmf_half_path(precision.code)) ?? .portable
    }

    /// Whether this CPU can run `path` (only `.portable` under `TMF_KERNELS=portable`).
    public static func isSupported(_ path: Path) -> Bool {
        tmf_half_path_supported(path.rawValue) != 0
    }

    /// For tests and benchmarks: makes every later call take `path` (`nil`: choose from the CPU
    /// again). Returns false, changing nothing, when this CPU cannot run it. Process-wide; do
    /// not call while these kernels run on another thread.
    @discardableResult
    public static func forcePath(_ path: Path?) -> Bool {
        tmf_half_set_path(path?.rawValue ?? Int32(TMF_HALF_PATH_AUTO)) != 0
    }

    /// `y[rows, outFeatures] = x[rows, inFeatures] · Wᵀ`, or `y += x · Wᵀ` when `accumulate`
    /// (the product is computed as without it, then added to `y` with one Float32 rounding).
    ///
    /// - Parameters:
    ///   - x: `[rows, inFeatures]`, row-major; must not overlap `y`.
    ///   - weight: `W`, `[outFeatures, inFeatures]` row-major 16-bit patterns.
    ///   - rows: rows of `x` (1 when decoding: then each weight is read once).
    ///   - y: `[rows, outFeatures]`, row-major.
    public static func forward(_ x: UnsafeBufferPointer<Float>, weight: UnsafeBufferPointer<UInt16>,
                               _ precision: HalfPrecision, rows: Int, inFeatures: Int, outFeatures: Int,
                               into y: UnsafeMutableBufferPointer<Float>, accumulate: Bool = false) {
        precondition(rows >= 0 && inFeatures >= 0 && outFeatures >= 0, "negative dimension")
        precondition(weight.count == outFeatures * inFeatures,
                     "weight holds \(weight.count) values, not \(outFeatures) × \(inFeatures)")
        precondition(x.count == rows * inFeatures, "x holds \(x.count) values, not \(rows) × \(inFeatures)")
        precondition(y.count == rows * outFeatures, "y holds \(y.count) values, not \(rows) × \(outFeatures)")
        guard rows > 0 && outFeatures > 0 else { return }
        guard inFeatures > 0 else {  // empty sums
            if !accumulate { y.update(repeating: 0) }
            return
        }
        tmf_half_matmul(precision.code, weight.baseAddress, x.baseAddress, y.baseAddress, rows, inFeatures,
                        outFeatures, accumulate ? 1 : 0)
    }

    /// The input gradient through a frozen weight: `dx[rows, inFeatures] = dy[rows, outFeatures] · W`,
    /// or `dx += dy · W` when `accumulate` (computed as without it, then added with one
    /// Float32 rounding).
    ///
    /// - Parameters:
    ///   - dy: `[rows, outFeatures]`, row-major; must not overlap `dx`.
    ///   - weight: `W`, `[outFeatures, inFeatures]` row-major 16-bit patterns.
    ///   - dx: `[rows, inFeatures]`, row-major.
    public static func inputGradient(_ dy: UnsafeBufferPointer<Float>, weight: UnsafeBufferPointer<UInt16>,
                                     _ precision: HalfPrecision, rows: Int, inFeatures: Int, outFeatures: Int,
                                     into dx: UnsafeMutableBufferPointer<Float>, accumulate: Bool = false) {
        precondition(rows >= 0 && inFeatures >= 0 && outFeatures >= 0, "negative dimension")
        precondition(weight.count == outFeatures * inFeatures,
                     "weight holds \(weight.count) values, not \(outFeatures) × \(inFeatures)")
        precondition(dy.count == rows * outFeatures, "dy holds \(dy.count) values, not \(rows) × \(outFeatures)")
        precondition(dx.count == rows * inFeatures, "dx holds \(dx.count) values, not \(rows) × \(inFeatures)")
        guard rows > 0 && inFeatures > 0 else { return }
        guard outFeatures > 0 else {  // empty sums
            if !accumulate { dx.update(repeating: 0) }
            return
        }
        tmf_half_matmul_input_grad(precision.code, weight.baseAddress, dy.baseAddress, dx.baseAddress, rows,
                                   inFeatures, outFeatures, accumulate ? 1 : 0)
    }

    /// `x · Wᵀ` for `x` of shape `[..., inFeatures]`: a new tensor `[..., outFeatures]` (no tape).
    /// `W` is `[outFeatures, inFeatures]` with `inFeatures = x.shape.last`.
    public static func forward(_ x: Tensor, weight: UnsafeBufferPointer<UInt16>, _ precision: HalfPrecision,
                               outFeatures: Int) -> Tensor {
        precondition(x.rank >= 1, "forward needs x of shape [..., in], got a scalar")
        let leading = Array(x.shape.dropLast()), rows = Tensor.elementCount(leading)
        let y = Tensor(uninitialized: leading + [outFeatures])
        forward(UnsafeBufferPointer(x.storage.buffer), weight: weight, precision, rows: rows,
                inFeatures: x.shape[x.rank - 1], outFeatures: outFeatures, into: y.storage.buffer)
        return y
    }

    /// `dy · W` for `dy` of shape `[..., outFeatures]`: a new tensor `[..., inFeatures]` (no
    /// tape). `W` is `[outFeatures, inFeatures]` with `outFeatures = dy.shape.last`.
    public static func inputGradient(_ dy: Tensor, weight: UnsafeBufferPointer<UInt16>, _ precision: HalfPrecision,
                                     inFeatures: Int) -> Tensor {
        precondition(dy.rank >= 1, "inputGradient needs dy of shape [..., out], got a scalar")
        let leading = Array(dy.shape.dropLast()), rows = Tensor.elementCount(leading)
        let dx = Tensor(uninitialized: leading + [inFeatures])
        inputGradient(UnsafeBufferPointer(dy.storage.buffer), weight: weight, precision, rows: rows,
                      inFeatures: inFeatures, outFeatures: dy.shape[dy.rank - 1], into: dx.storage.buffer)
        return dx
    }

    /// Rows `rows` of a `[out, inFeatures]` weight widened to Float32 into `into` (exact), row-major.
    public static func widen(_ weight: UnsafeBufferPointer<UInt16>, _ precision: HalfPrecision, rows: Range<Int>,
                             inFeatures: Int, into: UnsafeMutablePointer<Float>) {
        precondition(rows.lowerBound >= 0 && rows.upperBound * inFeatures <= weight.count, "rows \(rows) outside the weight")
        tmf_half_widen(precision.code, weight.baseAddress! + rows.lowerBound * inFeatures, into, rows.count * inFeatures)
    }

    /// How many parts the kernel splits this shape into at the current thread count (tests).
    static func plannedParts(inputGradient: Bool, rows: Int, inFeatures: Int, outFeatures: Int) -> Int {
        Int(tmf_half_planned_parts(inputGradient ? 1 : 0, rows, inFeatures, outFeatures))
    }
}
