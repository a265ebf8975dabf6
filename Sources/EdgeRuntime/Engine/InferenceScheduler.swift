import Foundation
import Logging

/// Continuous batching over one model: every step advances all running sequences together —
/// prompt chunks and single decode tokens in one `LlamaModel.forward` — whatever adapters they use.
///
/// KV memory follows use, as in vLLM: a sequence's cache starts at its prompt plus a growth step
/// (`SchedulerLimits.kvGrowthPositions`) and grows while it decodes, up to prompt + max tokens and
/// the context length; admission counts the bytes caches hold now (and the prefix cache's), not
/// worst cases. When a running sequence must grow and the budget is spent, kept prefixes go first,
/// then the most recently admitted sequence is preempted: its KV is freed and it returns to the
/// front of the queue; once re-admitted its prompt and generated tokens are recomputed (the
/// generated ones through the decode kernels, so the numbers are the ones decoding produced) and
/// it resumes with its sampler, RNG and stream untouched, so its client sees one uninterrupted
/// stream identical to an un-preempted run. A sequence that cannot grow even with the whole budget
/// to itself ends with finish reason `length`.
///
/// Concurrency contract: `submit`, `status` and cancellation (dropping a stream) may be called from
/// any thread or task; they only touch the queue, flags and counters under `lock`. The model runs
/// on one dedicated thread (never the Swift cooperative pool or an event loop); that thread alone
/// owns the running set, the KV caches and the samplers, and is the only writer of `kvHeld`.
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
    /// Bytes held by the caches of running sequences (the prefix cache's bytes are apart).
    private var kvHeld = 0
    private var preemptions = 0
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
    private var admissions: UInt64 = 0
    private let logger: Logger?

    /// One request in flight.
    final class Sequence: @unchecked Sendable {
        let request: GenerationRequest
        let adapters: AdapterMix
        let release: @Sendable () -> Void
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        /// The most positions the sequence may hold: min(context, prompt + max tokens).
        let maxPositions: Int
        let enqueued = ContinuousClock.now
        var admitted = ContinuousClock.now
        // Guarded by the scheduler lock.
        var cancelled = false
        /// Bytes its cache holds now (0 while queued).
        var kvBytes = 0
        /// Positions and bytes its cache starts with when admitted (set while it is queued).
        var admitCapacity: Int
        var admitBytes: Int
        // Engine thread only.
        var detokenizer: any IncrementalDetokenizer
        var sampler: TokenSampler
        var cache: SequenceCache?
        var endOfGeneration: Set<Int32> = []
        var promptDone = 0
        /// Prompt positions counted in `promptTokensTotal` (recomputation after a preemption is not).
        var promptCounted = 0
        /// Prompt positions taken from the prefix cache instead of computed (first admission).
        var cachedPrompt = 0
        var generated = 0
        /// The tokens generated so far (what a preempted sequence recomputes).
        var output: [Int32] = []
        var pending: Int32?
        var promptLogprobs: [PromptTokenLogprob] = []
        var queueTime: Duration = .zero
        var done = false
        /// Admission order (larger = admitted later); preemption picks the largest.
        var serial: UInt64 = 0
        var preemptions = 0
        /// After a preemption: generated tokens whose KV is recomputed after the prompt
        /// (`output.count` when preempted, the last being the pending token) and how many are done.
        var replayEnd = 0
        var replayDone = 0

        init(request: GenerationRequest, adapters: AdapterMix, release: @escaping @Sendable () -> Void,
             continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation, maxPositions: Int,
             admitCapacity: Int, admitBytes: Int, detokenizer: any IncrementalDetokenizer) {
            self.request = request
            self.adapters = adapters
            self.release = release
            self.continuation = continuation
            self.maxPositions = maxPositions
            self.admitCapacity = admitCapacity
            self.admitBytes = admitBytes
            self.detokenizer = detokenizer
            self.sampler = TokenSampler(parameters: request.sampling, prompt: request.prompt)
        }

        /// Whether the prompt (and, after a preemption, the generated tokens) is in the cache.
        var isDecoding: Bool { promptDone >= request.prompt.count && replayDone >= replayEnd }
    }

    /// `logger` receives a line for each preemption and each sequence cut short by the KV budget.
    public init(model: LlamaModel, limits: SchedulerLimits = SchedulerLimits(), endOfGeneration: Set<Int32>,
                logger: Logger? = nil, makeDetokenizer: @escaping @Sendable () -> any IncrementalDetokenizer) {
        self.model = model
        self.limits = limits
        self.logger = logger
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
        let maxPositions = min(hp.contextLength, request.prompt.count + max(1, request.maxTokens))
        let firstBytes = model.kvBytes(positions: request.prompt.count + 1)
        if limits.kvBudgetBytes > 0, firstBytes > limits.kvBudgetBytes {
            throw .invalidRequest("the prompt needs \(firstBytes) bytes of KV cache (\(request.prompt.count + 1) positions), more than the whole budget of \(limits.kvBudgetBytes) bytes: shorten the prompt or raise kv_budget_bytes")
        }
        let (stream, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        let admitCapacity = startCapacity(needed: request.prompt.count + 1, maxPositions: maxPositions)
        let seq = Sequence(request: request, adapters: adapters, release: release, continuation: continuation,
                           maxPositions: maxPositions, admitCapacity: admitCapacity,
                           admitBytes: model.kvBytes(positions: admitCapacity), detokenizer: makeDetokenizer())
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { throw .shutDown }
        // Queued requests that will start at the next step (a free running slot and room in the
        // KV budget) do not count against the queue bound; the rest, and this one if it cannot
        // start, do.
        var slots = max(0, limits.maxRunning - runningCount)
        var kvFree = limits.kvBudgetBytes > 0 ? limits.kvBudgetBytes - kvHeld : Int.max
        var waiting = 0
        for q in queue + [seq] {
            if waiting == 0, slots > 0, q.admitBytes <= kvFree {
                slots -= 1
                kvFree -= q.admitBytes
            } else {
                waiting += 1
            }
        }
        guard waiting <= limits.maxQueued else {
            let why = slots == 0 ? "\(runningCount) running" : "KV cache budget of \(limits.kvBudgetBytes) bytes in use (\(kvHeld) held)"
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
        /// Sequences preempted (KV freed, requeued, recomputed later) since start-up.
        public var preemptions: Int
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
        return Status(running: runningCount, queued: queue.count, kvBytesUsed: kvHeld, kvBytesBudget: limits.kvBudgetBytes,
                      promptTokensTotal: promptTokensTotal, generatedTokensTotal: generatedTokensTotal, prefixCache: prefixStats,
                      preemptions: preemptions)
    }

    // MARK: - KV sizing

    /// Positions a cache starts with when it must hold `needed`: rounded up to the growth step,
    /// within `maxPositions` and (with a budget) what the whole budget holds.
    private func startCapacity(needed: Int, maxPositions: Int) -> Int {
        let step = limits.kvGrowthPositions
        var capacity = min(maxPositions, (needed + step - 1) / step * step)
        if limits.kvBudgetBytes > 0 {
            let fits = limits.kvBudgetBytes / model.kvBytes(positions: 1)
            capacity = min(capacity, max(needed, fits))
        }
        return max(1, min(capacity, model.hyperparameters.contextLength))
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
            for (s, _) in ended {
                kvHeld -= s.kvBytes
                s.kvBytes = 0
            }
            var admitted: [Sequence] = []
            var tooBig: [Sequence] = []
            while running.count + admitted.count < limits.maxRunning, let next = queue.first {
                if limits.kvBudgetBytes > 0 {
                    // Only a preempted sequence can need more than the whole budget (its context
                    // grew): it can never run again.
                    if next.admitBytes > limits.kvBudgetBytes {
                        queue.removeFirst()
                        tooBig.append(next)
                        continue
                    }
                    // Kept prefixes give way to running sequences: evict them (LRU) before waiting.
                    while kvHeld + prefixCache.bytes + next.admitBytes > limits.kvBudgetBytes, prefixCache.evictOne() > 0 {}
                    guard kvHeld + prefixCache.bytes + next.admitBytes <= limits.kvBudgetBytes else { break }
                }
                queue.removeFirst()
                kvHeld += next.admitBytes
                next.kvBytes = next.admitBytes
                if next.preemptions == 0 { next.endOfGeneration = stopSet }
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
            for s in tooBig {
                logger?.warning("request ended: its \(s.request.prompt.count + s.output.count) positions no longer fit the KV budget of \(limits.kvBudgetBytes) bytes; finish_reason length",
                                metadata: ["request.id": "\(s.request.id)"])
                finish(s, .length, freeKV: false)
            }
            for s in admitted {
                admissions += 1
                s.serial = admissions
                if s.preemptions == 0 {
                    s.admitted = ContinuousClock.now
                    s.queueTime = s.admitted - s.enqueued
                }
                let cache = model.makeCache(capacity: s.admitCapacity, reserve: s.maxPositions)
                reusePrefix(s, into: cache)
                s.cache = cache
                running.append(s)
            }
            if !running.isEmpty { step() }
        }
    }

    /// One forward over every running sequence, then sampling and events.
    private func step() {
        // Room for this step's decode tokens first, oldest sequence first (growing may preempt).
        for s in running where s.isDecoding && !s.done && s.cache != nil { makeRoom(s) }
        running.removeAll { $0.done }
        var steps: [LlamaModel.Step] = []
        var members: [Sequence] = []
        var rows = 0
        // Decode rows first (they always fit), then recomputed tokens and prompt chunks while the row budget lasts.
        for s in running where s.isDecoding {
            guard let token = s.pending, let cache = s.cache else { continue }
            steps.append(.init(cache: cache, tokens: [token], adapters: s.adapters, logits: .last))
            members.append(s)
            rows += 1
        }
        for s in running where s.promptDone >= s.request.prompt.count && s.replayDone < s.replayEnd {
            guard let cache = s.cache else { continue }
            let end = min(s.replayEnd, s.replayDone + limits.prefillChunk)
            if rows > 0 && rows + (end - s.replayDone) > limits.maxBatchTokens { continue }
            steps.append(.init(cache: cache, tokens: Array(s.output[s.replayDone..<end]), adapters: s.adapters,
                               logits: end == s.replayEnd ? .last : .none, decodeKernels: true))
            members.append(s)
            rows += end - s.replayDone
        }
        for s in running where s.promptDone < s.request.prompt.count {
            guard let cache = s.cache else { continue }
            let end = prefillEnd(s)
            if rows > 0 && rows + (end - s.promptDone) > limits.maxBatchTokens { continue }
            // After a preemption the prompt is only recomputed: its logits were used already.
            let completes = end == s.request.prompt.count && s.replayEnd == 0
            let selection: LlamaModel.LogitsSelection = s.request.echo && s.replayEnd == 0 ? .all : (completes ? .last : .none)
            steps.append(.init(cache: cache, tokens: Array(s.request.prompt[s.promptDone..<end]), adapters: s.adapters, logits: selection))
            members.append(s)
            rows += end - s.promptDone
        }
        guard !steps.isEmpty else { return }
        let outputs: LlamaModel.StepLogits
        do {
            outputs = try model.forwardInPlace(steps)
        } catch {
            for s in members { fail(s, error) }
            running.removeAll { $0.done }
            return
        }
        let vocab = model.hyperparameters.vocabularySize
        var promptTokens = 0, generatedTokens = 0
        for (i, s) in members.enumerated() {
            let logits = outputs[i]
            if s.promptDone >= s.request.prompt.count && s.replayDone < s.replayEnd {
                s.replayDone += steps[i].tokens.count
                if s.replayDone < s.replayEnd { continue }
                // The last recomputed token is the one that was pending: now fed, as a decode would.
                generatedTokens += 1
                emitNext(s, logits: logits)
                continue
            }
            if s.promptDone < s.request.prompt.count {
                let count = steps[i].tokens.count
                if s.request.echo && s.replayEnd == 0 { collectPromptLogprobs(s, logits: logits, start: s.promptDone, count: count) }
                s.promptDone += count
                promptTokens += max(0, s.promptDone - s.promptCounted)
                s.promptCounted = max(s.promptCounted, s.promptDone)
                if s.promptDone < s.request.prompt.count || s.replayEnd > 0 { continue }
                if s.request.echo {
                    s.continuation.yield(.promptLogprobs(s.promptLogprobs))
                    s.promptLogprobs = []
                }
            }
            let last = logits.count > vocab ? UnsafeBufferPointer(rebasing: logits[(logits.count - vocab)...]) : logits
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
    private func collectPromptLogprobs(_ s: Sequence, logits all: UnsafeBufferPointer<Float>, start: Int, count: Int) {
        let vocab = model.hyperparameters.vocabularySize
        let prompt = s.request.prompt
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

    private func emitNext(_ s: Sequence, logits: UnsafeBufferPointer<Float>) {
        if s.request.maxTokens <= 0 { finish(s, .length); return }
        let token = s.sampler.sample(logits)
        let stop = s.request.stopTokenIDs.contains(token) || (!s.request.ignoreEOS && s.endOfGeneration.contains(token))
        if stop { finish(s, .stop); return }
        s.sampler.accept(token)
        var event = GeneratedToken(id: token, text: s.detokenizer.feed(token))
        if s.request.logprobs || s.request.topLogprobs > 0 {
            let summary = Logprobs.summarize(logits, token: token, top: s.request.topLogprobs)
            event.logprob = summary.logprob
            event.topLogprobs = summary.top.map { TokenLogprob(id: $0.id, logprob: $0.logprob) }
        }
        s.generated += 1
        s.output.append(token)
        s.continuation.yield(.token(event))
        if s.generated >= s.request.maxTokens || (s.cache?.length ?? s.maxPositions) >= s.maxPositions {
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
        let first = s.preemptions == 0
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
        if first {
            lock.lock()
            if usable > 0 {
                prefixStats.hits += 1
                prefixStats.hitTokens += usable
            } else {
                prefixStats.misses += 1
            }
            lock.unlock()
        }
        guard usable > 0, let source, cache.copyPrefix(from: source, count: usable) == usable else { return }
        s.promptDone = usable
        if first { s.cachedPrompt = usable }
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
        // Entries cost what they hold: a cache with room past the prompt is compacted.
        if cache.capacity > keep {
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
        kvHeld -= s.kvBytes
        s.kvBytes = 0
        runningCount = max(0, runningCount - 1)
        lock.unlock()
    }

    // MARK: - Growth and preemption

    /// Grows `s`'s cache when its next decode token does not fit: by one step within its reserved
    /// range (free), by a quarter when it must be copied (falling back to one step when the budget
    /// is short). When even that does not fit: kept prefixes are evicted, then sequences
    /// admitted after `s` are preempted, newest first; if none is left, `s` itself is preempted
    /// when older sequences hold KV (it resumes once they end), and otherwise — alone with the
    /// whole budget — it ends with finish reason `length`.
    private func makeRoom(_ s: Sequence) {
        guard let cache = s.cache, cache.length >= cache.capacity else { return }
        guard cache.capacity < s.maxPositions else { return }
        let hp = model.hyperparameters
        let step = limits.kvGrowthPositions
        let needed = cache.length + 1
        let minimal = min(s.maxPositions, hp.contextLength, (needed + step - 1) / step * step)
        // In place (the usual case) growth is free: one step. A copy is amortised by a quarter.
        let geometric = (cache.capacity + cache.capacity / 4 + step - 1) / step * step
        let preferred = cache.growsInPlace(to: minimal) ? minimal : min(s.maxPositions, hp.contextLength, max(minimal, geometric))
        func extra(_ capacity: Int) -> Int { model.kvBytes(positions: capacity) - cache.byteCount }
        func free() -> Int {
            lock.lock()
            defer { lock.unlock() }
            return limits.kvBudgetBytes - kvHeld - prefixCache.bytes
        }
        if limits.kvBudgetBytes == 0 || extra(preferred) <= free() {
            grow(s, cache, to: preferred)
            return
        }
        if extra(minimal) > free() {
            lock.lock()
            while limits.kvBudgetBytes - kvHeld - prefixCache.bytes < extra(minimal), prefixCache.evictOne() > 0 {}
            prefixStats.bytes = prefixCache.bytes
            prefixStats.entries = prefixCache.entries.count
            lock.unlock()
        }
        while extra(minimal) > free(),
              let victim = running.filter({ $0 !== s && !$0.done && $0.cache != nil && $0.serial > s.serial }).max(by: { $0.serial < $1.serial }) {
            preempt(victim, for: s)
        }
        if extra(minimal) <= free() {
            grow(s, cache, to: minimal)
            return
        }
        let othersHoldKV = running.contains { $0 !== s && !$0.done && $0.cache != nil }
        if othersHoldKV && model.kvBytes(positions: minimal) <= limits.kvBudgetBytes {
            preempt(s, for: s)
            return
        }
        logger?.warning("request ended: \(needed) positions of KV cache do not fit the budget of \(limits.kvBudgetBytes) bytes; finish_reason length",
                        metadata: ["request.id": "\(s.request.id)", "kv.positions": "\(cache.length)"])
        finish(s, .length)
    }

    private func grow(_ s: Sequence, _ cache: SequenceCache, to capacity: Int) {
        let before = cache.byteCount
        cache.grow(to: capacity)
        lock.lock()
        kvHeld += cache.byteCount - before
        s.kvBytes = cache.byteCount
        lock.unlock()
    }

    /// Frees `v`'s KV and puts it back at the front of the queue; when re-admitted it recomputes
    /// its prompt (chunked as before, so a prefix-cache hit or a fresh prefill give the same
    /// numbers) and then its generated tokens through the decode kernels, the last of them being
    /// its pending token, whose logits pick the next token exactly as an un-preempted decode would.
    private func preempt(_ v: Sequence, for grower: Sequence) {
        v.cache = nil
        v.preemptions += 1
        v.promptDone = 0
        v.promptLogprobs = []
        v.replayEnd = v.output.count
        v.replayDone = 0
        let capacity = startCapacity(needed: v.request.prompt.count + v.output.count + 1, maxPositions: v.maxPositions)
        lock.lock()
        kvHeld -= v.kvBytes
        v.kvBytes = 0
        v.admitCapacity = capacity
        v.admitBytes = model.kvBytes(positions: capacity)
        runningCount = max(0, runningCount - 1)
        preemptions += 1
        queue.insert(v, at: 0)
        lock.unlock()
        running.removeAll { $0 === v }
        logger?.info("preempted a sequence to free KV cache; it resumes when room returns",
                     metadata: ["request.id": "\(v.request.id)", "kv.positions": "\(v.request.prompt.count + v.output.count)",
                                "preempted.for": "\(grower.request.id)"])
    }
}
