import Foundation

/// The one seeded random generator used everywhere in tmf (initialisation, dropout, candidate
/// sampling, curriculum draws, data shuffling). xoshiro256** seeded through splitmix64; its whole
/// state is four `UInt64`s, so it can be saved in a checkpoint and restored exactly.
public struct SeededRNG: RandomNumberGenerator, Sendable, Equatable, Codable {
    /// The generator state (four words); assign to restore a saved generator.
    public var state: [UInt64]

    /// A generator for `seed`. Equal seeds give equal streams on every machine.
    public init(seed: UInt64) {
        var s = seed
        var words = [UInt64]()
        for _ in 0..<4 { words.append(SeededRNG.splitmix64(&s)) }
        if words.allSatisfy({ $0 == 0 }) { words[0] = 1 }
        state = words
    }

    /// A generator for `seed` and a key (e.g. user id and split name): independent, stable
    /// streams per key, the same across runs, processes and machines.
    public init(seed: UInt64, key: [String]) {
        var h: UInt64 = seed ^ 0x9E37_79B9_7F4A_7C15
        for part in key {
            h = SeededRNG.mix(h ^ SeededRNG.stableHash(part))
        }
        self.init(seed: h)
    }

    /// Restores a saved state. Throws nothing; a wrong-sized state is a programmer error.
    public init(state: [UInt64]) {
        precondition(state.count == 4, "SeededRNG state has four words")
        self.state = state
    }

    /// FNV-1a over the UTF-8 bytes, finished with a splitmix round: stable across processes,
    /// unlike `Hasher`.
    public static func stableHash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return mix(h)
    }

    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    static func splitmix64(_ s: inout UInt64) -> UInt64 {
        s = s &+ 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Next 64 random bits.
    public mutating func next() -> UInt64 {
        let result = SeededRNG.rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = SeededRNG.rotl(state[3], 45)
        return result
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    public mutating func nextFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    public mutating func nextDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in 0..<n (n > 0), without modulo bias.
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0, "nextInt(below:) needs a positive bound")
        return Int(next(upperBound: UInt64(n)))
    }

    /// Standard normal sample (Box-Muller).
    public mutating func nextNormal() -> Float {
        var u1 = nextDouble()
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = nextDouble()
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }
}
