/// Counters of the scheduler's prefix (prompt) cache, for /metrics. Hits and misses count
/// admitted requests that looked (echo requests do not); `hitTokens` the prompt positions reused.
public struct PrefixCacheStatus: Sendable, Equatable, Codable {
    public var hits = 0
    public var misses = 0
    public var hitTokens = 0
    /// KV bytes and entries held now.
    public var bytes = 0
    public var entries = 0

    public init(hits: Int = 0, misses: Int = 0, hitTokens: Int = 0, bytes: Int = 0, entries: Int = 0) {
        self.hits = hits
        self.misses = misses
        self.hitTokens = hitTokens
        self.bytes = bytes
        self.entries = entries
    }
}
