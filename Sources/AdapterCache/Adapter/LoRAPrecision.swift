/// Element type of a decoded adapter's arena (`LoRAAdapter`).
///
/// `.f32` is what the decoder produces and what training and exact comparisons use. `.f16` (IEEE
/// half, `B` stored transposed) is the serving form of the strict mode: half the RAM and half the
/// bytes the gathered LoRA kernels read per token, at a relative rounding of at most 2⁻¹¹ per weight.
/// `.int8` (`A` and `Bᵀ` as int8 rows, each with one f32 scale = max |row| / 127) is the fastest
/// mode's: a quarter of the f32 bytes, at a rounding of at most half a step (max |row| / 254) per
/// weight. With eight decode streams on eight adapters, the adapters' bytes are what a step waits for.
public enum LoRAPrecision: String, Sendable, Codable, CaseIterable {
    case f32
    case f16
    case int8

    /// Bytes per stored weight (an int8 arena's row scales come on top, see `LoRAAdapter`).
    public var byteWidth: Int {
        switch self {
        case .f32: 4
        case .f16: 2
        case .int8: 1
        }
    }
}
