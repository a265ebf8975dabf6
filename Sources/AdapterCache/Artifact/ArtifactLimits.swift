/// Size caps applied to anything that arrives from outside (store downloads, files given to
/// `verify`). The defaults fit adapters of multi-billion-parameter models at high rank with room
/// to spare while keeping a hostile file from exhausting memory or disk.
public struct ArtifactLimits: Sendable, Equatable {
    /// Compressed artifact, as downloaded.
    public var maxArtifactBytes: Int64 = 1 << 30
    /// Everything inside after zstd (bomb protection).
    public var maxDecompressedBytes: Int = 2 << 30
    /// Decompressed bytes per compressed byte above `ratioFloorBytes`. LoRA weights are noise-like
    /// and compress 1–3× (an untrained adapter with zero B matrices about 2–3×), so 32× leaves a
    /// wide margin while a zstd bomb (zeros compress thousands of times) stops at a few MiB.
    public var maxCompressionRatio: Int = 32
    /// Below this many decompressed bytes the ratio is not checked (tiny adapters are mostly JSON
    /// and tar padding, which compress well).
    public var ratioFloorBytes: Int = 4 << 20
    /// Any single tar member.
    public var maxMemberBytes: Int = (3 << 30) / 2
    /// adapter_config.json and manifest.json.
    public var maxJSONBytes: Int = 16 << 20

    public init() {}
}
