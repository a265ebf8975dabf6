/// What the disk tier knows about one stored artifact; persisted in `{cache}/index.json`.
struct CacheRecord: Codable, Sendable, Equatable {
    var sha256: String
    var name: String
    var version: String
    var size: Int64
    var baseModel: String?
    var created: String
    var signature: ArtifactSignature?
    var rank: Int?
    var targets: [String]?
    var local: Bool
    var pinned: Bool
    /// Seconds since 1970 of the last acquire or pull.
    var lastUsed: Double
    /// LRU order at the time the index was written (larger is more recent).
    var order: UInt64

    enum CodingKeys: String, CodingKey {
        case sha256, name, version, size, baseModel = "base_model", created, signature, rank, targets, local, pinned
        case lastUsed = "last_used", order
    }
}

/// `{cache}/index.json`.
struct CacheIndexFile: Codable {
    var format: Int
    var entries: [CacheRecord]
    /// NAME → VERSION a bare NAME resolves to instead of the newest (after a rollback); absent in
    /// indexes written before rollbacks existed.
    var current: [String: String]?
}
