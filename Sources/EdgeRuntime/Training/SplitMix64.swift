/// A small seeded PRNG (SplitMix64) so LoRA initialisation and data shuffles are reproducible from
/// the job's seed on every platform (Swift's SystemRandomNumberGenerator is not seedable).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi) with 24 random bits, as f32.
    public mutating func uniform(_ lo: Float, _ hi: Float) -> Float {
        let u = Float(next() >> 40) * (1.0 / 16_777_216.0)
        return lo + (hi - lo) * u
    }
}
