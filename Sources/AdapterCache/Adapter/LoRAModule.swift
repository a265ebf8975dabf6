/// One adapted projection of one layer. The weights live in the owning `LoRAAdapter`'s arena:
/// `A` is `[rank, inFeatures]` row-major at `aOffset` elements, `B` is `[outFeatures, rank]` (f32
/// arena) or `Bᵀ` `[rank, outFeatures]` (f16 arena) row-major at `bOffset` elements, both 64-byte
/// aligned. The delta the engine adds is
/// `scale · B · (A · x)` for an input row `x` of `inFeatures` values.
public struct LoRAModule: Sendable, Hashable {
    public let layer: Int
    public let projection: LoRAProjection
    public let rank: Int
    public let inFeatures: Int
    public let outFeatures: Int
    /// `alpha / rank`, or `alpha / sqrt(rank)` with rsLoRA, after rank/alpha patterns.
    public let scale: Float
    public let aOffset: Int
    public let bOffset: Int
    /// The safetensors key of `lora_A` (errors name it).
    public let keyA: String
    public let keyB: String
}
