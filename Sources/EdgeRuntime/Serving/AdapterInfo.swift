/// One locally known adapter, as `GET /v1/adapters` lists it (JSON keys are snake_case).
public struct AdapterInfo: Sendable, Equatable, Codable {
    public var name: String
    public var version: String
    /// sha256 (hex) of the artifact.
    public var sha256: String
    /// Compressed artifact bytes on disk, decoded bytes in RAM (0 when not in RAM).
    public var diskBytes: Int
    public var ramBytes: Int
    /// "ram" (decoded and on disk), "disk".
    public var tier: String
    /// Explicitly pinned (never evicted from disk).
    public var pinned: Bool
    /// "pulled" from the store or "trained" on this device (trained ones are never evicted from disk).
    public var source: String
    /// Base-model digest the adapter was made for.
    public var baseModel: String
    public var rank: Int
    /// Unix seconds when it entered the cache.
    public var createdAt: Int

    public init(name: String, version: String, sha256: String, diskBytes: Int, ramBytes: Int, tier: String, pinned: Bool, source: String, baseModel: String, rank: Int, createdAt: Int) {
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.diskBytes = diskBytes
        self.ramBytes = ramBytes
        self.tier = tier
        self.pinned = pinned
        self.source = source
        self.baseModel = baseModel
        self.rank = rank
        self.createdAt = createdAt
    }

    enum CodingKeys: String, CodingKey {
        case name, version, sha256, tier, pinned, source, rank
        case diskBytes = "disk_bytes", ramBytes = "ram_bytes", baseModel = "base_model", createdAt = "created_at"
    }
}

/// Progress of `pullAdapter`, streamed to the client as SSE or NDJSON.
public struct AdapterPullProgress: Sendable, Equatable, Codable {
    public enum Phase: String, Sendable, Codable {
        /// Reading the store's index.json.
        case resolving
        case downloading
        /// Digest (and signature) check.
        case verifying
        /// Already in the cache, or the download was verified and stored: the last event.
        case done
    }

    public var phase: Phase
    /// Set once resolved.
    public var name: String
    public var version: String?
    public var completedBytes: Int
    /// nil until the size is known.
    public var totalBytes: Int?
    /// With `.done`: the adapter as it now sits in the cache.
    public var adapter: AdapterInfo?

    public init(phase: Phase, name: String, version: String? = nil, completedBytes: Int = 0, totalBytes: Int? = nil, adapter: AdapterInfo? = nil) {
        self.phase = phase
        self.name = name
        self.version = version
        self.completedBytes = completedBytes
        self.totalBytes = totalBytes
        self.adapter = adapter
    }

    enum CodingKeys: String, CodingKey {
        case phase = "status", name, version, adapter
        case completedBytes = "completed", totalBytes = "total"
    }
}
