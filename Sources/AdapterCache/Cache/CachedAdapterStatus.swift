/// One cached adapter version as `edgectl adapter list/info` and `GET /v1/adapters` show it.
public struct CachedAdapterStatus: Sendable, Codable, Equatable {
    public var name: String
    public var version: String
    /// sha256 of the artifact file (the disk tier's content address).
    public var sha256: String
    /// Compressed bytes on disk.
    public var size: Int64
    /// Decoded bytes in RAM, when resident.
    public var ramBytes: Int64?
    /// "ram" (decoded and on disk) or "disk".
    public var tier: String
    public var pinned: Bool
    /// Trained on this device: never evicted from disk.
    public var local: Bool
    public var leases: Int
    /// ISO 8601 UTC.
    public var lastUsed: String
    public var created: String
    public var baseModel: String?
    public var signed: Bool
    public var rank: Int?
    public var targets: [String]?

    enum CodingKeys: String, CodingKey {
        case name, version, sha256, size, ramBytes = "ram_bytes", tier, pinned, local, leases, lastUsed = "last_used", created
        case baseModel = "base_model", signed, rank, targets
    }
}
