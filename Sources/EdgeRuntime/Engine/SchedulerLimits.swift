/// Bounds of the continuous-batching scheduler (config.toml `[engine]` maps onto these).
public struct SchedulerLimits: Sendable, Equatable {
    /// Sequences advanced together in one step.
    public var maxRunning: Int
    /// Requests admitted but waiting for a running slot; past it `generate` answers 429.
    public var maxQueued: Int
    /// KV cache bytes all running sequences (and kept prefixes) may hold together; 0 = unbounded.
    /// A sequence holds what its cache has allocated: its prompt rounded up to `kvGrowthPositions`
    /// when admitted, growing as it decodes (never past `min(context, prompt + maxTokens)`). When a
    /// sequence must grow and the budget is spent, the most recently admitted one is preempted.
    public var kvBudgetBytes: Int
    /// Positions a sequence's KV cache is rounded up to when admitted and grows by while decoding
    /// (the granularity of what it is charged; growing within its reserved range copies nothing).
    public var kvGrowthPositions: Int
    /// Prompt tokens one sequence feeds per step. A fixed size (never shortened by batch-mates),
    /// so a sequence's numbers do not depend on what else runs.
    public var prefillChunk: Int
    /// Rows per step: prompt chunks beyond it wait for the next step (decode rows always run).
    public var maxBatchTokens: Int
    /// KV bytes the prefix (prompt) cache may keep for later requests; 0 disables it. Within a KV
    /// budget, kept prefixes also count against the budget and are evicted before anything waits.
    public var prefixCacheBytes: Int

    public init(maxRunning: Int = 16, maxQueued: Int = 64, kvBudgetBytes: Int = 0, prefillChunk: Int = 64, maxBatchTokens: Int = 256,
                prefixCacheBytes: Int = 256 << 20, kvGrowthPositions: Int = 256) {
        self.maxRunning = max(1, maxRunning)
        self.maxQueued = max(0, maxQueued)
        self.kvBudgetBytes = max(0, kvBudgetBytes)
        self.prefillChunk = max(1, prefillChunk)
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.prefixCacheBytes = max(0, prefixCacheBytes)
        self.kvGrowthPositions = max(1, kvGrowthPositions)
    }
}
