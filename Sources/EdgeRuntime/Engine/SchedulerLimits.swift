/// Bounds of the continuous-batching scheduler (config.toml `[engine]` maps onto these).
public struct SchedulerLimits: Sendable, Equatable {
    /// Sequences advanced together in one step.
    public var maxRunning: Int
    /// Requests admitted but waiting for a running slot; past it `generate` answers 429.
    public var maxQueued: Int
    /// KV cache bytes all running sequences may reserve together; 0 = unbounded. A sequence
    /// reserves `min(context, prompt + maxTokens)` positions when it starts running.
    public var kvBudgetBytes: Int
    /// Prompt tokens one sequence feeds per step. A fixed size (never shortened by batch-mates),
    /// so a sequence's numbers do not depend on what else runs.
    public var prefillChunk: Int
    /// Rows per step: prompt chunks beyond it wait for the next step (decode rows always run).
    public var maxBatchTokens: Int
    /// KV bytes the prefix (prompt) cache may keep for later requests; 0 disables it. Within a KV
    /// budget, kept prefixes also count against the budget and are evicted before anything waits.
    public var prefixCacheBytes: Int

    public init(maxRunning: Int = 16, maxQueued: Int = 64, kvBudgetBytes: Int = 0, prefillChunk: Int = 64, maxBatchTokens: Int = 256,
                prefixCacheBytes: Int = 256 << 20) {
        self.maxRunning = max(1, maxRunning)
        self.maxQueued = max(0, maxQueued)
        self.kvBudgetBytes = max(0, kvBudgetBytes)
        self.prefillChunk = max(1, prefillChunk)
        self.maxBatchTokens = max(1, maxBatchTokens)
        self.prefixCacheBytes = max(0, prefixCacheBytes)
    }
}
