/// Bit-exact conversions between Float32 and the 16-bit float formats, matching PyTorch's CPU
/// `.to(torch.float16)` / `.to(torch.bfloat16)` and `.float()` (checked against fixtures made by
/// torch, see `Fixtures/safetensors/README.md`).
public enum HalfConversion {
    /// IEEE binary16 bits of `value`, rounded to nearest, ties to even. Values beyond the
    /// largest half (65504) round to ±infinity as IEEE rounding dictates; a NaN stays a NaN with its
    /// sign, the quiet bit set and the top 10 bits of its payload (what the x86 F16C instruction
    /// torch uses does).
    @inlinable
    public static func float16Bits(_ value: Float) -> UInt16 {
        let x = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x7F_FFFF
        if exponent == 0xFF {
            if mantissa != 0 { return sign | 0x7E00 | UInt16(truncatingIfNeeded: mantissa >> 13) }
            return sign | 0x7C00
        }
        let e = exponent - 127 + 15  // biased half exponent
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            // Half subnormal (or zero): value = m * 2^-24 with m = full significand >> (14 - e).
            if exponent == 0 { return sign }  // float32 subnormals are far below 2^-25
            let shift = 14 - e
            if shift > 24 { return sign }
            let m = mantissa | 0x80_0000
            var result = m >> UInt32(shift)
            let remainder = m & ((1 << UInt32(shift)) - 1)
            let half: UInt32 = 1 << UInt32(shift - 1)
            if remainder > half || (remainder == half && result & 1 == 1) { result += 1 }
            return sign | UInt16(truncatingIfNeeded: result)
        }
        var result = UInt32(e) << 10 | mantissa >> 13
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && result & 1 == 1) { result += 1 }  // may carry to inf
        return sign | UInt16(truncatingIfNeeded: result)
    }

    /// Float32 value of IEEE binary16 `bits` (exact; a NaN keeps sign and payload, quiet bit set).
    @inlinable
    public static func float(fromFloat16Bits bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        var mantissa = UInt32(bits & 0x3FF)
        if exponent == 0x1F {
            if mantissa == 0 { return Float(bitPattern: sign | 0x7F80_0000) }
            return Float(bitPattern: sign | 0x7FC0_0000 | mantissa << 13)
        }
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: sign) }
            // Normalise the subnormal: shift until the implicit bit appears.
            var e: UInt32 = 127 - 15 + 1
            while mantissa & 0x400 == 0 { mantissa <<= 1; e -= 1 }
            return Float(bitPattern: sign | e << 23 | (mantissa & 0x3FF) << 13)
        }
        return Float(bitPattern: sign | (exponent + 127 - 15) << 23 | mantissa << 13)
    }

    /// bfloat16 bits of `value`: the top 16 bits rounded to nearest, ties to even (so the
    /// largest floats round to ±infinity). Every NaN becomes 0xFFFF, which is what torch's
    /// vectorised CPU conversion writes (its scalar path would write 0x7FC0).
    @inlinable
    public static func bfloat16Bits(_ value: Float) -> UInt16 {
        if value.isNaN { return 0xFFFF }
        let x = value.bitPattern
        let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Float32 value of bfloat16 `bits` (exact).
    @inlinable
    public static func float(fromBFloat16Bits bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }
}
