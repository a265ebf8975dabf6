/// A snapshot of the engine and the adapter cache: /healthz, /metrics, STATUS= and `edgectl status`.
/// Counters are monotonic since start (Prometheus counters); the rest are current values.
public struct BackendStatus: Sendable, Equatable, Codable {
    /// Sequences in the running batch / waiting for admission.
    public var running: Int
    public var queued: Int
    /// KV cache bytes in use and the configured budget (0 = unbounded).
    public var kvBytesUsed: Int
    public var kvBytesBudget: Int
    /// Adapters decoded in RAM, ready to run.
    public var adaptersInRAM: [String]
    /// Per cache tier ("ram", "disk"): hits, misses, bytes held, byte budget, evictions.
    public var cacheTiers: [CacheTierStatus]
    /// Tokens computed by the engine since start (prefill / decode), for throughput metrics.
    public var promptTokensTotal: Int
    public var generatedTokensTotal: Int
    /// The scheduler's prompt-prefix cache.
    public var prefixCache: PrefixCacheStatus
    /// Sequences preempted to let an older one grow its KV cache (freed, requeued, recomputed).
    public var kvPreemptionsTotal: Int

    public init(
        running: Int = 0, queued: Int = 0, kvBytesUsed: Int = 0, kvBytesBudget: Int = 0,
        adaptersInRAM: [String] = [], cacheTiers: [CacheTierStatus] = [],
        promptTokensTotal: Int = 0, generatedTokensTotal: Int = 0, prefixCache: PrefixCacheStatus = PrefixCacheStatus(),
        kvPreemptionsTotal: Int = 0
    ) {
        self.running = running
        self.queued = queued
        self.kvBytesUsed = kvBytesUsed
        self.kvBytesBudget = kvBytesBudget
        self.adaptersInRAM = adaptersInRAM
        self.cacheTiers = cacheTiers
        self.promptTokensTotal = promptTokensTotal
        self.generatedTokensTotal = generatedTokensTotal
        self.prefixCache = prefixCache
        self.kvPreemptionsTotal = kvPreemptionsTotal
    }
}

public struct CacheTierStatus: Sendable, Equatable, Codable {
    /// "ram" or "disk".
    public var tier: String
    public var hits: Int
    public var misses: Int
    public var bytes: Int
    public var budgetBytes: Int
    public var evictions: Int
    /// Per-adapter hits in this tier (adapter name → hits), for metrics labelled by adapter.
    public var hitsByAdapter: [String: Int]

    public init(tier: String, hits: Int = 0, misses: Int = 0, bytes: Int = 0, budgetBytes: Int = 0, evictions: Int = 0, hitsByAdapter: [String: Int] = [:]) {
        self.tier = tier
        self.hits = hits
        self.misses = misses
        self.bytes = bytes
        self.budgetBytes = budgetBytes
        self.evictions = evictions
        self.hitsByAdapter = hitsByAdapter
    }
}
