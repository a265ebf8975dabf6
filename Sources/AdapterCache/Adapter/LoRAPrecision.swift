/// Element type of a decoded adapter's arena (`LoRAAdapter`).
///
/// `.f32` is what the decoder produces and what training and exact comparisons use. `.f16` (IEEE
/// half, `B` stored transposed) is the serving form: half the RAM and half the bytes the gathered
/// LoRA kernels read per token, at a relative rounding of at most 2⁻¹¹ per weight.
public enum LoRAPrecision: String, Sendable, Codable, CaseIterable {
    case f32
    case f16

    /// Bytes per stored weight.
    public var byteWidth: Int { self == .f32 ? 4 : 2 }
}
