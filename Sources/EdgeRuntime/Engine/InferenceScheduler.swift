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
    /// The model's end-of-generation tokens (stop unless `ignoreEOS`).
    public let endOfGeneration: Set<Int32>
    private let makeDetokenizer: @Sendable () -> any IncrementalDetokenizer

    private let lock = NSCondition()
    // Guarded by `lock`.
    private var queue: [Sequence] = []
    private var runningCount = 0
    private var kvReserved = 0
    private var stopping = false
    private var promptTokensTotal = 0
    private var generatedTokensTotal = 0
    /// Uptime (ns) of the last `submit`, for the idle-time trainer; 0 = none yet.
    private var lastSubmitNanos: UInt64 = 0
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    // Owned by the engine thread.
    private var running: [Sequence] = []

    /// One request in flight.
    final class Sequence: @unchecked Sendable {
        let request: GenerationRequest
        let adapters: AdapterMix
        let release: @Sendable () -> Void
        let continuation: AsyncThrowingStream<GenerationEvent, Error>.Continuation
        let kvBytes: Int
        let capacity: Int
        let enqueued = ContinuousClock.now
        // Guarded by the scheduler lock.
        var cancelled = false
        // Engine thread only.
        var detokenizer: any IncrementalDetokenizer
        var sampler: TokenSampler
        var cache: SequenceCache?
        var promptDone = 0
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
        self.endOfGeneration = endOfGeneration
        self.makeDetokenizer = makeDetokenizer
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
        // Queued requests that will start at the next step (free running slots) do not count
        // against the queue bound.
        let waiting = queue.count
        guard waiting < limits.maxQueued + max(0, limits.maxRunning - runningCount) else {
            throw .atCapacity(reason: "\(runningCount) running, \(waiting) queued", retryAfterSeconds: 1 + waiting / limits.maxRunning)
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

    public struct Status: Sendable, Equatable {
        public var running: Int
        public var queued: Int
        public var kvBytesUsed: Int
        public var kvBytesBudget: Int
        public var promptTokensTotal: Int
        public var generatedTokensTotal: Int
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
                      promptTokensTotal: promptTokensTotal, generatedTokensTotal: generatedTokensTotal)
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
            while running.count + admitted.count < limits.maxRunning, let next = queue.first,
                  limits.kvBudgetBytes == 0 || kvReserved + next.kvBytes <= limits.kvBudgetBytes {
                queue.removeFirst()
                kvReserved += next.kvBytes
                admitted.append(next)
            }
            runningCount = running.count + admitted.count
            lock.unlock()

            for (s, reason) in ended {
                s.cache = nil
                if let reason { finish(s, reason, freeKV: false) } else { s.done = true; s.continuation.finish(); s.release() }
            }
            for s in admitted {
                s.queueTime = ContinuousClock.now - s.enqueued
                s.cache = model.makeCache(capacity: s.capacity)
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
            let end = min(s.request.prompt.count, s.promptDone + limits.prefillChunk)
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
        let stop = s.request.stopTokenIDs.contains(token) || (!s.request.ignoreEOS && endOfGeneration.contains(token))
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
        s.continuation.yield(.finished(GenerationSummary(finishReason: reason, promptTokens: s.request.prompt.count,
                                                         completionTokens: s.generated, queueTime: s.queueTime)))
        s.continuation.finish()
        if freeKV { releaseKV(s) }
        s.release()
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
