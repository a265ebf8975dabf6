import AdapterCache
import Crypto
import Foundation
import Kernels
import Logging

/// The daemon's `GenerationBackend`: one mapped model, the continuous-batching scheduler, and the
/// adapter cache. `generate` resolves each adapter through `AdapterCache.acquire` (the lease is
/// held for the sequence's lifetime and released when it ends), binds it to the model without
/// copying, and submits the request to the scheduler, whose thread does all the compute.
///
/// Concurrency contract: immutable after init except through the scheduler (internally locked) and
/// the cache actor; every method may be called from any task.
public final class EngineBackend: GenerationBackend, @unchecked Sendable {
    /// The model directory served.
    public let directory: String
    public let weights: LlamaWeights
    public let scheduler: InferenceScheduler
    public let adapters: AdapterCache
    public let model: ModelInfo?
    public var noModelHint: String { "" }
    private let text: TextResources
    private let logger: Logger

    /// The weights with the tokenizer (waits for the tokenizer; see `TextResources`).
    public var local: LocalModel {
        get throws { try text.wait().local }
    }

    /// `tokenizer` is loaded on a background thread when nil (the daemon's start-up does not wait
    /// for it: READY=1 means the weights are mapped and validated). Everything that needs text
    /// waits for it; a tokenizer that fails to load fails those requests with its error.
    /// `kvPrecision` .f16 halves the KV bytes per position (twice the tokens in `kv_budget_bytes`)
    /// within the logits fixture's tolerances in both activation modes. The AVX-512 attention converts
    /// K/V blocks in registers and decodes as fast or faster with f16 (8 streams with adapters, 12-token
    /// prompts, engine bench: 1163–1177 against 1051–1103 tokens/s; daemon bench within its noise); the
    /// AVX2 and NEON attention converts row by row and is slower with it. The daemon keeps f32 as the
    /// default while growth on demand leaves the budget mostly unused.
    public init(directory: String, weights: LlamaWeights, adapters: AdapterCache, limits: SchedulerLimits,
                activations: LlamaModel.ActivationPrecision = .int8, kvPrecision: SequenceCache.Precision = .f32, logger: Logger) {
        self.directory = directory
        self.weights = weights
        self.adapters = adapters
        self.logger = logger
        let text = TextResources(directory: directory, weights: weights, logger: logger)
        self.text = text
        scheduler = InferenceScheduler(model: LlamaModel(weights: weights, activations: activations, kvPrecision: kvPrecision), limits: limits,
                                       endOfGeneration: [], logger: logger,
                                       makeDetokenizer: {
                                           // Called by `submit`, which `generate` reaches only once the tokenizer loaded.
                                           if let loaded = try? text.wait() { return StreamingDetokenizer(tokenizer: loaded.local.tokenizer) }
                                           return NoTextDetokenizer()
                                       })
        let hp = weights.hyperparameters
        model = ModelInfo(name: (directory as NSString).lastPathComponent, path: directory, contextLength: hp.contextLength,
                          vocabularySize: hp.vocabularySize, baseDigest: Self.baseDigest(directory: directory),
                          loadedAt: Int(Date().timeIntervalSince1970))
        let scheduler = self.scheduler
        text.start { loaded in scheduler.setEndOfGeneration(loaded.local.endOfGeneration) }
    }

    /// What `DefaultBackendFactory.engine` calls: maps and validates the model and opens the adapter
    /// cache as the configuration says; the tokenizer follows in the background.
    public convenience init(_ config: DaemonConfiguration, _ logger: Logger) async throws {
        if config.model.threads > 0 { ek_set_threads(Int32(config.model.threads)) }
        let t0 = ContinuousClock.now
        let weights = try LlamaWeights.load(directory: config.model.path, contextLength: config.model.contextLength)
        let t1 = ContinuousClock.now
        var cacheConfig = AdapterCacheConfiguration(directory: config.adapters.cacheDir)
        cacheConfig.diskBudgetBytes = Int64(config.adapters.diskBudgetBytes)
        cacheConfig.ramBudgetBytes = Int64(config.adapters.ramBudgetBytes)
        cacheConfig.requireSignature = config.adapters.requireSignature
        cacheConfig.trustedKeys = config.adapters.trustedKeys
        if !config.adapters.storeURL.isEmpty { cacheConfig.store = try StoreLocation(config.adapters.storeURL) }
        cacheConfig.baseModelDigest = Self.baseDigest(directory: config.model.path)
        // The daemon serves in the fastest mode: adapters in RAM as int8 rows with a scale each (A and
        // Bᵀ), a quarter of the f32 RAM budget and bytes the LoRA kernels read per token; with 8 streams
        // on 8 adapters those bytes are what a decode step waits for (LogitsFixtureTests hold the
        // accuracy to the fastest mode's tolerances).
        cacheConfig.ramPrecision = LlamaModel.ActivationPrecision.int8.adapterPrecision
        let cache = try AdapterCache(configuration: cacheConfig, logger: logger)
        let t2 = ContinuousClock.now
        let limits = SchedulerLimits(maxRunning: config.scheduler.maxRunning, maxQueued: config.scheduler.maxQueue,
                                     kvBudgetBytes: config.scheduler.kvBudgetBytes, prefillChunk: config.scheduler.prefillChunk,
                                     prefixCacheBytes: config.scheduler.prefixCacheBytes,
                                     kvGrowthPositions: config.scheduler.kvGrowthPositions)
        // Validated at parse time; "auto" resolves here, against the kernels this CPU runs.
        let kvPrecision = SequenceCache.Precision.named(config.scheduler.kvPrecision) ?? .f32
        self.init(directory: config.model.path, weights: weights, adapters: cache, limits: limits,
                  kvPrecision: kvPrecision, logger: logger)
        let t3 = ContinuousClock.now
        func ms(_ d: Duration) -> Int { Int(d / .milliseconds(1)) }
        logger.info("engine ready: \(String(cString: ek_dispatch_description()))",
                    metadata: ["kv.precision": "\(kvPrecision.rawValue)", "startup.model_ms": "\(ms(t1 - t0))", "startup.adapter_cache_ms": "\(ms(t2 - t1))", "startup.scheduler_ms": "\(ms(t3 - t2))"])
    }

    /// Registers this engine with the daemon's backend factory.
    public static func register() {
        DefaultBackendFactory.engine = { config, logger in try await EngineBackend(config, logger) }
    }

    /// The base-model identity adapters are checked against (see ModelDigest); an unreadable file
    /// leaves it empty, which no adapter matches.
    static func baseDigest(directory: String) -> String {
        (try? ModelDigest.of(path: directory)) ?? ""
    }

    // MARK: - Generation

    public func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, Error> {
        var leases: [AdapterLease] = []
        var entries: [(binding: LoRABinding, weight: Float)] = []
        let cache = adapters
        let releaseAll: @Sendable ([AdapterLease]) -> Void = { held in
            guard !held.isEmpty else { return }
            Task { for l in held { await cache.release(l) } }
        }
        do {
            // The tokenizer's end-of-generation tokens must be known before anything runs.
            _ = try await text.ready()
            for selection in request.adapters {
                try Task.checkCancellation()
                let version = selection.adapter.version
                let lease: AdapterLease
                do { lease = try await cache.acquire(.init(name: selection.adapter.name, version: version)) } catch { throw Self.apiError(error, reference: selection.adapter.description) }
                leases.append(lease)
                do {
                    entries.append((try LoRABinding(adapter: lease.adapter, name: lease.description, hyperparameters: weights.hyperparameters), selection.weight))
                } catch {
                    throw APIError.badRequest(error.description, param: "model", code: "adapter_mismatch")
                }
            }
            let held = leases
            let key = zip(leases, entries).map { "\($0.0.description)#\($0.0.sha256)*\(String($0.1.weight.bitPattern, radix: 16))" }.joined(separator: "+")
            return try scheduler.submit(request, adapters: AdapterMix(entries, cacheKey: key), release: { releaseAll(held) })
        } catch let error as EngineError {
            releaseAll(leases)
            throw Self.apiError(error)
        } catch {
            releaseAll(leases)
            throw error
        }
    }

    static func apiError(_ error: EngineError) -> APIError {
        switch error {
        case .atCapacity(_, let retry): return .queueFull(retryAfter: retry, error.description)
        case .shutDown: return .unavailable(error.description, code: "shutting_down", retryAfter: 5)
        case .contextOverflow: return .badRequest(error.description, param: "max_tokens", code: "context_length_exceeded")
        case .invalidToken: return .badRequest(error.description, param: "prompt", code: "invalid_token")
        case .adapterMismatch: return .badRequest(error.description, param: "model", code: "adapter_mismatch")
        case .invalidRequest: return .badRequest(error.description)
        case .badModel, .kernel: return .internalError(error.description)
        }
    }

    static func apiError(_ error: AdapterError, reference: String) -> APIError {
        switch error {
        case .notFound: return .adapterNotFound(reference)
        case .baseModelMismatch, .baseModelUnknown: return .badRequest(error.description, param: "model", code: "adapter_base_mismatch")
        case .network, .timeout, .http, .truncatedDownload:
            return APIError(status: 503, type: "service_unavailable", code: "adapter_store_unreachable", message: error.description, param: "model", retryAfter: 10)
        default: return .badRequest(error.description, param: "model", code: "adapter_invalid")
        }
    }

    // MARK: - Text

    public func tokenize(_ text: String, addSpecial: Bool, parseSpecial: Bool) throws -> [Int32] {
        try self.text.wait().local.tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial)
    }

    private func checkIDs(_ tokens: [Int32]) throws {
        let vocab = weights.hyperparameters.vocabularySize
        for t in tokens where t < 0 || Int(t) >= vocab {
            throw APIError.badRequest("token id \(t) is outside the vocabulary (0..<\(vocab))", param: "tokens", code: "invalid_token")
        }
    }

    public func detokenize(_ tokens: [Int32]) throws -> String {
        try checkIDs(tokens)
        return try text.wait().local.tokenizer.decode(tokens, skipSpecial: false)
    }

    public func tokenBytes(_ token: Int32) throws -> [UInt8] {
        try checkIDs([token])
        return try text.wait().local.tokenizer.tokenBytes(token)
    }

    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        let loaded = try text.wait()
        guard let chatTemplate = loaded.chatTemplate else {
            throw APIError.badRequest("this model has no usable chat template (\(loaded.chatTemplateError ?? "none in tokenizer_config.json")): use /v1/completions", param: "messages", code: "no_chat_template")
        }
        do { return try chatTemplate.render(messages: messages, addGenerationPrompt: addGenerationPrompt) } catch {
            throw APIError.badRequest("the chat template rejected the messages: \(error)", param: "messages", code: "chat_template_error")
        }
    }

    // MARK: - Status and adapters

    public func status() async -> BackendStatus {
        let s = scheduler.status()
        let m = await adapters.metrics()
        let list = await adapters.list()
        return BackendStatus(
            running: s.running, queued: s.queued, kvBytesUsed: s.kvBytesUsed, kvBytesBudget: s.kvBytesBudget,
            adaptersInRAM: list.filter { $0.tier == "ram" }.map { "\($0.name)@\($0.version)" },
            cacheTiers: [
                CacheTierStatus(tier: "ram", hits: m.ramHits, misses: m.ramMisses, bytes: Int(m.ramBytes), budgetBytes: Int(adapters.configuration.ramBudgetBytes), evictions: m.ramEvictions),
                CacheTierStatus(tier: "disk", hits: m.diskHits, misses: m.diskMisses, bytes: Int(m.diskBytes), budgetBytes: Int(adapters.configuration.diskBudgetBytes), evictions: m.diskEvictions),
            ],
            promptTokensTotal: s.promptTokensTotal, generatedTokensTotal: s.generatedTokensTotal, prefixCache: s.prefixCache,
            kvPreemptionsTotal: s.preemptions)
    }

    static func info(_ s: CachedAdapterStatus) -> AdapterInfo {
        let created = Self.unixTime(iso8601: s.created)
        return AdapterInfo(name: s.name, version: s.version, sha256: s.sha256, diskBytes: Int(s.size), ramBytes: Int(s.ramBytes ?? 0),
                           tier: s.tier, pinned: s.pinned, source: s.local ? "local" : "store", baseModel: s.baseModel ?? "",
                           rank: s.rank ?? 0, createdAt: created)
    }

    /// Seconds since 1970 of a cache timestamp, written with milliseconds ("…T12:00:00.123Z") or,
    /// in hand-made indexes, without; 0 only for an unreadable one.
    static func unixTime(iso8601 text: String) -> Int {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return Int(d.timeIntervalSince1970) }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text).map { Int($0.timeIntervalSince1970) } ?? 0
    }

    public func listAdapters() async throws -> [AdapterInfo] {
        await adapters.list().map(Self.info)
    }

    public func pullAdapter(_ reference: AdapterReference) -> AsyncThrowingStream<AdapterPullProgress, Error> {
        let cache = adapters
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let cacheVersion = reference.version
                    continuation.yield(AdapterPullProgress(phase: .resolving, name: reference.name.value, version: reference.version?.value))
                    let name = reference.name.value, version = reference.version?.value
                    let status = try await cache.pull(.init(name: reference.name, version: cacheVersion)) { p in
                        continuation.yield(AdapterPullProgress(phase: .downloading, name: name, version: version,
                                                               completedBytes: Int(p.bytes), totalBytes: p.total.map { Int($0) }))
                    }
                    continuation.yield(AdapterPullProgress(phase: .done, name: status.name, version: status.version,
                                                           completedBytes: Int(status.size), totalBytes: Int(status.size), adapter: Self.info(status)))
                    continuation.finish()
                } catch let e as AdapterError {
                    continuation.finish(throwing: Self.apiError(e, reference: reference.description))
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    public func evictAdapter(_ reference: AdapterReference) async throws {
        do { _ = try await adapters.evict(.init(name: reference.name, version: reference.version)) } catch {
            throw Self.managementError(error, reference.description)
        }
    }

    public func pinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo {
        let version = reference.version
        do {
            _ = try await adapters.pull(.init(name: reference.name, version: version))
            return Self.info(try await adapters.pin(.init(name: reference.name, version: version)))
        } catch { throw Self.managementError(error, reference.description) }
    }

    public func unpinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo {
        do { return Self.info(try await adapters.unpin(.init(name: reference.name, version: reference.version))) } catch {
            throw Self.managementError(error, reference.description)
        }
    }

    static func managementError(_ error: AdapterError, _ reference: String) -> APIError {
        let text = error.description
        if case .notFound = error { return .adapterNotFound(reference) }
        if text.contains("not in the cache") || text.contains("unknown") { return .adapterNotFound(reference) }
        if text.contains("pinned") || text.contains("in use") { return .conflict(text, code: "adapter_busy") }
        return apiError(error, reference: reference)
    }
}

/// Stands in when the tokenizer failed to load (no text; `generate` refuses such requests first).
private struct NoTextDetokenizer: IncrementalDetokenizer {
    mutating func feed(_ id: Int32) -> String { "" }
    mutating func flush() -> String { "" }
}
