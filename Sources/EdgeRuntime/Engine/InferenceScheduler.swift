import Foundation

/// Continuous batching over one model: every step advances all running sequences together —
/// prompt chunks and single decode tokens in one `LlamaModel.forward` — whatever adapters they use.
///
/// Concurrency contract: `submit`, `status` and cancellation (dropping a stream) may be called from
/// any thread or task; they only touch the queue, flags and counters under `lock`. The model runs
/// on one dedicated thread (never the Swift cooperative pool or an event loop); that thread alone
/// owns the running set, the KV caches and the samplers.
public final class InferenceScheduler: @unchecked Sendable {
    public let model: LlamaModel
    public let limits: SchedulerLimits
    /// The model's end-of-generation tokens (stop unless `ignoreEOS`). Settable once the tokenizer
    /// has loaded (`setEndOfGeneration`); each sequence takes the set current at its admission.
    public var endOfGeneration: Set<Int32> {
        lock.lock()
        defer { lock.unlock() }
        return stopSet
    }
    // Guarded by `lock`.
    private var stopSet: Set<Int32>
    private let makeDetokenizer: @Sendable () -> any IncrementalDetokenizer

    private let lock = NSCondition()
    // Guarded by `lock`.
    private var queue: [Sequence] = []
    private var runningCount = 0
    private var kvReserved = 0
    private var stopping = false
    private var promptTokensTotal = 0
    private var generatedTokensTotal = 0
    private var prefixStats = PrefixCacheStatus()
    /// Uptime (ns) of the last `submit`, for the idle-time trainer; 0 = none yet.
    private var lastSubmitNanos: UInt64 = 0
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    // Owned by the engine thread.
    private var running: [Sequence] = []
    private let prefixCache: PrefixCache

    /// One request in flight.
    final class Sequence: @unchecked Sendable {
        let request: GenerationRequest
        let adapters: AdapterMix
        let release: @Sendable () -> Void
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        let kvBytes: Int
        let capacity: Int
        let enqueued = ContinuousClock.now
        var admitted = ContinuousClock.now
        // Guarded by the scheduler lock.
        var cancelled = false
        // Engine thread only.
        var detokenizer: any IncrementalDetokenizer
        var sampler: TokenSampler
        var cache: SequenceCache?
        var endOfGeneration: Set<Int32> = []
        var promptDone = 0
        /// Prompt positions taken from the prefix cache instead of computed.
        var cachedPrompt = 0
        var generated = 0
        var pending: Int32?
        var promptLogprobs: [PromptTokenLogprob] = []
        var queueTime: Duration = .zero
        var done = false

        init(request: GenerationRequest, adapters: AdapterMix, release: @escaping @Sendable () -> Void,
             continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation, capacity: Int, kvBytes: Int,
             detokenizer: any IncrementalDetokenizer) {
            self.request = request
            self.adapters = adapters
            self.release = release
            self.continuation = continuation
            self.capacity = capacity
            self.kvBytes = kvBytes
            self.detokenizer = detokenizer
            self.sampler = TokenSampler(parameters: request.sampling, prompt: request.prompt)
        }
    }

    public init(model: LlamaModel, limits: SchedulerLimits = SchedulerLimits(), endOfGeneration: Set<Int32>,
                makeDetokenizer: @escaping @Sendable () -> any IncrementalDetokenizer) {
        self.model = model
        self.limits = limits
        self.stopSet = endOfGeneration
        self.makeDetokenizer = makeDetokenizer
        prefixCache = PrefixCache(byteLimit: limits.kvBudgetBytes > 0 ? min(limits.prefixCacheBytes, limits.kvBudgetBytes) : limits.prefixCacheBytes)
        // The thread holds the scheduler until `shutdown()`: the daemon's scheduler lives as long
        // as the process; tools and tests call `shutdown()` when done.
        let t = Thread { self.engineLoop() }
        t.name = "edge-runtime engine"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    /// Stops the engine thread: queued and running sequences end with `.cancelled`. Idempotent;
    /// returns once the thread has left its loop.
    public func shutdown() {
        lock.lock()
        let wasStopping = stopping
        stopping = true
        let hadThread = thread != nil
        thread = nil
        lock.broadcast()
        lock.unlock()
        if !wasStopping && hadThread { finished.wait() }
    }

    /// Admits a request. `adapters` are already bound to this model; `release` is called once the
    /// sequence has ended (to drop adapter leases). Throws `EngineError.atCapacity` when the queue
    /// is full, `.contextOverflow` for a prompt that cannot fit, `.shutDown` when stopping.
    public func submit(_ request: GenerationRequest, adapters: AdapterMix = .none,
                       release: @escaping @Sendable () -> Void = {}) throws(EngineError) -> AsyncThrowingStream<GenerationEvent, Error> {
        let hp = model.hyperparameters
        guard !request.prompt.isEmpty else { throw .invalidRequest("the prompt is empty") }
        for t in request.prompt where t < 0 || Int(t) >= hp.vocabularySize { throw .invalidToken(id: t, vocabularySize: hp.vocabularySize) }
        guard request.prompt.count < hp.contextLength else {
            throw .contextOverflow(needed: request.prompt.count + 1, capacity: hp.contextLength, contextLength: hp.contextLength)
        }
        let capacity = min(hp.contextLength, request.prompt.count + max(1, request.maxTokens))
        let kvBytes = SequenceCache.byteCount(hyperparameters: hp, capacity: capacity)
        if limits.kvBudgetBytes > 0, kvBytes > limits.kvBudgetBytes {
            throw .invalidRequest("the request needs \(kvBytes) bytes of KV cache (\(capacity) positions), more than the whole budget of \(limits.kvBudgetBytes) bytes: lower max_tokens or shorten the prompt")
        }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        let seq = Sequence(request: request, adapters: adapters, release: release, continuation: continuation,
                           capacity: capacity, kvBytes: kvBytes, detokenizer: makeDetokenizer())
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { throw .shutDown }
        // Queued requests that will start at the next step (a free running slot and room in the
        // KV budget) do not count against the queue bound; the rest, and this one if it cannot
        // start, do.
        var slots = max(0, limits.maxRunning - runningCount)
        var kvFree = limits.kvBudgetBytes > 0 ? limits.kvBudgetBytes - kvReserved : Int.max
        var waiting = 0
        for q in queue + [seq] {
            if waiting == 0, slots > 0, q.kvBytes <= kvFree {
                slots -= 1
                kvFree -= q.kvBytes
            } else {
                waiting += 1
            }
        }
        guard waiting <= limits.maxQueued else {
            let why = slots == 0 ? "\(runningCount) running" : "KV cache budget of \(limits.kvBudgetBytes) bytes in use (\(kvReserved) reserved)"
            throw .atCapacity(reason: "\(why), \(queue.count) queued", retryAfterSeconds: 1 + queue.count / limits.maxRunning)
        }
        queue.append(seq)
        lastSubmitNanos = DispatchTime.now().uptimeNanoseconds
        continuation.onTermination = { [weak self, weak seq] _ in
            guard let self, let seq else { return }
            self.lock.lock()
            seq.cancelled = true
            self.lock.broadcast()
            self.lock.unlock()
        }
        lock.broadcast()
        return stream
    }

    /// Replaces the end-of-generation tokens for sequences admitted from now on.
    public func setEndOfGeneration(_ tokens: Set<Int32>) {
        lock.lock()
        stopSet = tokens
        lock.unlock()
    }

    public struct Status: Sendable, Equatable {
        public var running: Int
        public var queued: Int
        public var kvBytesUsed: Int
        public var kvBytesBudget: Int
        public var promptTokensTotal: Int
        public var generatedTokensTotal: Int
        public var prefixCache: PrefixCacheStatus
    }

    /// What the idle-time trainer polls between optimiser steps: whether any request runs or waits,
    /// and the uptime (ns, DispatchTime) of the last submission (0 = none since start-up).
    public func activity() -> (busy: Bool, lastSubmitUptimeNanos: UInt64) {
        lock.lock()
        defer { lock.unlock() }
        return (runningCount > 0 || !queue.isEmpty, lastSubmitNanos)
    }

    public func status() -> Status {
        lock.lock()
        defer { lock.unlock() }
        return Status(running: runningCount, queued: queue.count, kvBytesUsed: kvReserved, kvBytesBudget: limits.kvBudgetBytes,
                      promptTokensTotal: promptTokensTotal, generatedTokensTotal: generatedTokensTotal, prefixCache: prefixStats)
    }

    // MARK: - Engine thread

    private func engineLoop() {
        while true {
            lock.lock()
            while !stopping && running.isEmpty && queue.isEmpty { lock.wait() }
            if stopping {
                let all = running + queue
                queue.removeAll()
                lock.unlock()
                for s in all { finish(s, .cancelled) }
                running.removeAll()
                prefixCache.removeAll()
                finished.signal()
                return
            }
            // Cancelled or expired sequences leave first, freeing KV for admission.
            let now = ContinuousClock.now
            var ended: [(Sequence, FinishReason?)] = []
            running.removeAll { s in
                if s.cancelled { ended.append((s, nil)); return true }
                if let d = s.request.deadline, now >= d { ended.append((s, .cancelled)); return true }
                return false
            }
            queue.removeAll { s in
                if s.cancelled { ended.append((s, nil)); return true }
                if let d = s.request.deadline, now >= d { ended.append((s, .cancelled)); return true }
                return false
            }
            for (s, _) in ended where s.cache != nil { kvReserved -= s.kvBytes }
            var admitted: [Sequence] = []
            while running.count + admitted.count < limits.maxRunning, let next = queue.first {
                // Kept prefixes give way to running sequences: evict them (LRU) before waiting.
                if limits.kvBudgetBytes > 0 {
                    while kvReserved + prefixCache.bytes + next.kvBytes > limits.kvBudgetBytes, prefixCache.evictOne() > 0 {}
                    guard kvReserved + prefixCache.bytes + next.kvBytes <= limits.kvBudgetBytes else { break }
                }
                queue.removeFirst()
                kvReserved += next.kvBytes
                next.endOfGeneration = stopSet
                admitted.append(next)
            }
            runningCount = running.count + admitted.count
            prefixStats.bytes = prefixCache.bytes
            prefixStats.entries = prefixCache.entries.count
            lock.unlock()

            for (s, reason) in ended {
                s.cache = nil
                if let reason { finish(s, reason, freeKV: false) } else { s.done = true; s.continuation.finish(); s.release() }
            }
            for s in admitted {
                s.admitted = ContinuousClock.now
                s.queueTime = s.admitted - s.enqueued
                let cache = model.makeCache(capacity: s.capacity)
                reusePrefix(s, into: cache)
                s.cache = cache
                running.append(s)
            }
            if !running.isEmpty { step() }
        }
    }

    /// One forward over every running sequence, then sampling and events.
    private func step() {
        var steps: [LlamaModel.Step] = []
        var members: [Sequence] = []
        var rows = 0
        // Decode rows first (they always fit), then prompt chunks while the row budget lasts.
        for s in running where s.promptDone >= s.request.prompt.count {
            guard let token = s.pending, let cache = s.cache else { continue }
            steps.append(.init(cache: cache, tokens: [token], adapters: s.adapters, logits: .last))
            members.append(s)
            rows += 1
        }
        for s in running where s.promptDone < s.request.prompt.count {
            guard let cache = s.cache else { continue }
            let end = prefillEnd(s)
            if rows > 0 && rows + (end - s.promptDone) > limits.maxBatchTokens { continue }
            let completes = end == s.request.prompt.count
            let selection: LlamaModel.LogitsSelection = s.request.echo ? .all : (completes ? .last : .none)
            steps.append(.init(cache: cache, tokens: Array(s.request.prompt[s.promptDone..<end]), adapters: s.adapters, logits: selection))
            members.append(s)
            rows += end - s.promptDone
        }
        guard !steps.isEmpty else { return }
        let outputs: [[Float]]
        do {
            outputs = try model.forward(steps)
        } catch {
            for s in members { fail(s, error) }
            running.removeAll { $0.done }
            return
        }
        let vocab = model.hyperparameters.vocabularySize
        var promptTokens = 0, generatedTokens = 0
        for (i, s) in members.enumerated() {
            let logits = outputs[i]
            if s.promptDone < s.request.prompt.count {
                let count = steps[i].tokens.count
                if s.request.echo { collectPromptLogprobs(s, logits: logits, start: s.promptDone, count: count) }
                s.promptDone += count
                promptTokens += count
                if s.promptDone < s.request.prompt.count { continue }
                if s.request.echo {
                    s.continuation.yield(.promptLogprobs(s.promptLogprobs))
                    s.promptLogprobs = []
                }
            }
            let last = logits.count > vocab ? Array(logits[(logits.count - vocab)...]) : logits
            if s.pending != nil { generatedTokens += 1 }
            emitNext(s, logits: last)
        }
        lock.lock()
        promptTokensTotal += promptTokens
        generatedTokensTotal += generatedTokens
        lock.unlock()
        running.removeAll { $0.done }
    }

    /// Logprobs of prompt tokens: the row after token j predicts token j + 1.
    private func collectPromptLogprobs(_ s: Sequence, logits: [Float], start: Int, count: Int) {
        let vocab = model.hyperparameters.vocabularySize
        let prompt = s.request.prompt
        logits.withUnsafeBufferPointer { all in
            for j in 0..<count {
                let p = start + j
                if p == 0 { s.promptLogprobs.append(PromptTokenLogprob(id: prompt[0], logprob: nil)) }
                guard p + 1 < prompt.count else { continue }
                let row = UnsafeBufferPointer(rebasing: all[(j * vocab)..<((j + 1) * vocab)])
                let summary = Logprobs.summarize(row, token: prompt[p + 1], top: s.request.topLogprobs)
                s.promptLogprobs.append(PromptTokenLogprob(id: prompt[p + 1], logprob: summary.logprob,
                                                           topLogprobs: summary.top.map { TokenLogprob(id: $0.id, logprob: $0.logprob) }))
            }
        }
    }

    private func emitNext(_ s: Sequence, logits: [Float]) {
        if s.request.maxTokens <= 0 { finish(s, .length); return }
        let token = s.sampler.sample(logits)
        let stop = s.request.stopTokenIDs.contains(token) || (!s.request.ignoreEOS && s.endOfGeneration.contains(token))
        if stop { finish(s, .stop); return }
        s.sampler.accept(token)
        var event = GeneratedToken(id: token, text: s.detokenizer.feed(token))
        if s.request.logprobs || s.request.topLogprobs > 0 {
            let summary = logits.withUnsafeBufferPointer { Logprobs.summarize($0, token: token, top: s.request.topLogprobs) }
            event.logprob = summary.logprob
            event.topLogprobs = summary.top.map { TokenLogprob(id: $0.id, logprob: $0.logprob) }
        }
        s.generated += 1
        s.continuation.yield(.token(event))
        if s.generated >= s.request.maxTokens || (s.cache?.length ?? s.capacity) >= s.capacity {
            finish(s, .length)
        } else {
            s.pending = token
        }
    }

    private func finish(_ s: Sequence, _ reason: FinishReason, freeKV: Bool = true) {
        guard !s.done else { return }
        s.done = true
        let summary = GenerationSummary(finishReason: reason, promptTokens: s.request.prompt.count,
                                        cachedPromptTokens: s.cachedPrompt, completionTokens: s.generated,
                                        queueTime: s.queueTime, engineTime: s.cache == nil ? .zero : ContinuousClock.now - s.admitted)
        // KV is freed (or kept as a prefix) before the client sees the end, so a client that
        // submits again right away finds the room this sequence held.
        if freeKV {
            keepPrefix(s)
            releaseKV(s)
        }
        s.continuation.yield(.finished(summary))
        s.continuation.finish()
        s.release()
    }

    // MARK: - Prefix cache

    /// End of the next prompt chunk: chunks are aligned to multiples of `prefillChunk` in absolute
    /// positions, so a prompt resumed from a cached prefix is cut exactly as a fresh one would be
    /// after the first (partial) chunk.
    private func prefillEnd(_ s: Sequence) -> Int {
        let chunk = limits.prefillChunk
        return min(s.request.prompt.count, (s.promptDone / chunk + 1) * chunk)
    }

    /// Positions of a prompt that a fresh prefill computes in multi-token chunks (the GEMM path):
    /// all but a last token that sits alone in its chunk (that one runs through the decode GEMV).
    private func gemmComputedPrefix(_ count: Int) -> Int {
        count > 1 && (count - 1) % limits.prefillChunk == 0 ? count - 1 : count
    }

    /// Starts `s` from the longest kept prefix with the same adapter set, when there is one.
    /// At least one prompt token is always computed (its logits start generation), and the first
    /// computed chunk is never a lone token where a fresh prefill would have a longer chunk, so
    /// every position goes through the same kernel it would without the cache.
    private func reusePrefix(_ s: Sequence, into cache: SequenceCache) {
        guard prefixCache.isEnabled, !s.request.echo else { return }
        let prompt = s.request.prompt
        var usable = 0
        var source: SequenceCache?
        if let hit = prefixCache.lookup(key: s.adapters.cacheKey, prompt: prompt) {
            source = hit.cache
            usable = min(hit.length, prompt.count - 1)
            let chunk = limits.prefillChunk
            let firstEnd = min(prompt.count, (usable / chunk + 1) * chunk)
            let freshChunkStart = (usable / chunk) * chunk
            let freshChunkEnd = min(prompt.count, freshChunkStart + chunk)
            if usable > 0, firstEnd - usable == 1, freshChunkEnd - freshChunkStart > 1 { usable -= 1 }
        }
        lock.lock()
        if usable > 0 {
            prefixStats.hits += 1
            prefixStats.hitTokens += usable
        } else {
            prefixStats.misses += 1
        }
        lock.unlock()
        guard usable > 0, let source else { return }
        cache.copyPrefix(from: source, count: usable)
        s.promptDone = usable
        s.cachedPrompt = usable
    }

    /// Keeps a finished sequence's prompt KV for later requests (engine thread, before its KV is
    /// released). A cache much larger than the prompt is compacted first so entries cost what
    /// they hold.
    private func keepPrefix(_ s: Sequence) {
        guard prefixCache.isEnabled, let cache = s.cache else { return }
        let keep = gemmComputedPrefix(min(s.promptDone, s.request.prompt.count))
        guard keep > 0, cache.length >= keep else { return }
        let tokens = Array(s.request.prompt[0..<keep])
        var stored = cache
        if cache.capacity > 2 * keep {
            stored = model.makeCache(capacity: keep)
            stored.copyPrefix(from: cache, count: keep)
        }
        prefixCache.insert(key: s.adapters.cacheKey, tokens: tokens, cache: stored)
        lock.lock()
        prefixStats.bytes = prefixCache.bytes
        prefixStats.entries = prefixCache.entries.count
        lock.unlock()
    }

    private func fail(_ s: Sequence, _ error: Error) {
        guard !s.done else { return }
        s.done = true
        s.continuation.finish(throwing: error)
        releaseKV(s)
        s.release()
    }

    private func releaseKV(_ s: Sequence) {
        guard s.cache != nil else { return }
        s.cache = nil
        lock.lock()
        kvReserved -= s.kvBytes
        runningCount = max(0, runningCount - 1)
        lock.unlock()
    }
}
