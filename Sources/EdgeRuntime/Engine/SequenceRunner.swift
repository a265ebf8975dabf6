/// Drives one sequence through a model without the scheduler (the CLI's `run`, `eval` and `bench`,
/// and tests): chunked prefill, then one token per step. Not thread-safe; one owner.
public final class SequenceRunner {
    public let model: LlamaModel
    public let adapters: AdapterMix
    public let cache: SequenceCache
    /// Prompt tokens per forward call: bounds the activation memory of a long prompt.
    public let prefillChunk: Int

    public init(model: LlamaModel, adapters: AdapterMix = .none, capacity: Int? = nil, prefillChunk: Int = 64) {
        self.model = model
        self.adapters = adapters
        self.cache = model.makeCache(capacity: capacity)
        self.prefillChunk = max(1, prefillChunk)
    }

    public var position: Int { cache.length }

    /// Feeds `tokens`; returns the logits after the last one ([vocab]), or with `allLogits` one row
    /// per token ([tokens.count × vocab]).
    public func feed(_ tokens: [Int32], allLogits: Bool = false) throws(EngineError) -> [Float] {
        guard !tokens.isEmpty else { throw .invalidRequest("nothing to feed: the token list is empty") }
        let needed = cache.length + tokens.count
        guard needed <= cache.capacity else {
            throw .contextOverflow(needed: needed, capacity: cache.capacity, contextLength: model.hyperparameters.contextLength)
        }
        var collected: [Float] = []
        var start = 0
        while start < tokens.count {
            let end = min(tokens.count, start + prefillChunk)
            let isLast = end == tokens.count
            let selection: LlamaModel.LogitsSelection = allLogits ? .all : (isLast ? .last : .none)
            let out = try model.forward([.init(cache: cache, tokens: Array(tokens[start..<end]), adapters: adapters, logits: selection)])
            if allLogits { collected += out[0] } else if isLast { collected = out[0] }
            start = end
        }
        return collected
    }

    /// Greedy continuation of `count` tokens after logits `last` (from `feed`). Stops early at a
    /// token in `stop` (not included) or when the cache is full.
    public func greedy(after last: [Float], count: Int, stop: Set<Int32> = []) throws(EngineError) -> [Int32] {
        var logits = last
        var out: [Int32] = []
        while out.count < count {
            let next = Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) })
            if stop.contains(next) { break }
            out.append(next)
            if out.count == count || cache.length >= cache.capacity { break }
            logits = try feed([next])
        }
        return out
    }
}
