/// The element types a safetensors file can declare, in the safetensors order of increasing
/// alignment (the order the reference writer uses, descending, to lay tensors out).
///
/// Only `f32`, `f16`, `bf16` and `f64` convert to Float32; the others are known (so a file using
/// them is reported as "cannot convert", not "unknown") and their raw bytes stay readable.
public enum SafeTensorsDType: String, CaseIterable, Sendable, Comparable {
    case bool = "BOOL"
    case f4 = "F4"
    case f6E2M3 = "F6_E2M3"
    case f6E3M2 = "F6_E3M2"
    case u8 = "U8"
    case i8 = "I8"
    case f8E5M2 = "F8_E5M2"
    case f8E4M3 = "F8_E4M3"
    case f8E8M0 = "F8_E8M0"
    case f8E4M3FNUZ = "F8_E4M3FNUZ"
    case f8E5M2FNUZ = "F8_E5M2FNUZ"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case c64 = "C64"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Size of one element in bits (4 and 6 for the packed micro-scaling formats).
    public var bitSize: Int {
        switch self {
        case .f4: return 4
        case .f6E2M3, .f6E3M2: return 6
        case .bool, .u8, .i8, .f8E5M2, .f8E4M3, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .c64, .f64, .i64, .u64: return 64
        }
    }

    /// Whether `SafeTensorsFile.tensor(named:)` can convert this type to Float32.
    public var convertsToFloat32: Bool {
        switch self {
        case .f32, .f16, .bf16, .f64: return true
        default: return false
        }
    }

    /// Whether `SafeTensorsWriter` can encode Float32 values as this type.
    public var isWritableFromFloat32: Bool {
        self == .f32 || self == .f16 || self == .bf16
    }

    /// Position in the safetensors declaration order.
    var rank: Int { Self.allCases.firstIndex(of: self)! }

    /// Safetensors declaration order (BOOL < … < F16 < BF16 < … < F32 < … < F64 < I64 < U64).
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rank < rhs.rank }

    /// Bytes taken by `elements` elements, or nil on overflow or when the bits do not fill
    /// whole bytes.
    func byteCount(elements: Int) -> Int? {
        let (bits, overflow) = elements.multipliedReportingOverflow(by: bitSize)
        if overflow || bits % 8 != 0 { return nil }
        return bits / 8
    }
}
