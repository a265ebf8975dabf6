/// Size caps applied to anything that arrives from outside (store downloads, files given to
/// `verify`). The defaults fit adapters of multi-billion-parameter models at high rank with room
/// to spare while keeping a hostile file from exhausting memory or disk.
public struct ArtifactLimits: Sendable, Equatable {
    /// Compressed artifact, as downloaded.
    public var maxArtifactBytes: Int64 = 1 << 30
    /// Everything inside after zstd (bomb protection).
    public var maxDecompressedBytes: Int = 2 << 30
    /// Any single tar member.
    public var maxMemberBytes: Int = (3 << 30) / 2
    /// adapter_config.json and manifest.json.
    public var maxJSONBytes: Int = 16 << 20

    public init() {}
}
