import AdapterCache
import EdgeRuntime
import Foundation
import NIOConcurrencyHelpers

/// A deterministic `GenerationBackend` for the socket API tests: a byte-level tokenizer with a few
/// special tokens, a ChatML-like template, and a "model" that emits a scripted reply one byte-token
/// at a time (so multi-byte characters exercise the complete-UTF-8 rule). It records what it was
/// asked and how its streams ended, so tests can check cancellation frees the sequence.
final class ScriptedBackend: GenerationBackend, Sendable {
    static let eos: Int32 = 256, imStart: Int32 = 257, imEnd: Int32 = 258, bos: Int32 = 259
    static let specials: [(String, Int32)] = [("<|eos|>", eos), ("<|im_start|>", imStart), ("<|im_end|>", imEnd), ("<|bos|>", bos)]

    struct Counters: Sendable {
        var active = 0
        var cancelled = 0
        var finished = 0
        var requests: [GenerationRequest] = []
    }

    let reply: String
    let tokenDelay: Duration
    let maxActive: Int
    let counters = NIOLockedValueBox(Counters())

    init(reply: String = "Hello, wörld! 👋 Fine.", tokenDelay: Duration = .zero, maxActive: Int = 100) {
        self.reply = reply
        self.tokenDelay = tokenDelay
        self.maxActive = maxActive
    }

    var model: ModelInfo? {
        ModelInfo(name: "scripted", path: "/nowhere", contextLength: 512, vocabularySize: 260, baseDigest: "00", loadedAt: 1_700_000_000)
    }

    var noModelHint: String { "unused" }

    /// The reply for a request: adapters are visible in the output so routing can be checked.
    func replyText(for r: GenerationRequest) -> String {
        guard !r.adapters.isEmpty else { return reply }
        return reply + " [" + r.adapters.map { "\($0.adapter)*\($0.weight)" }.joined(separator: ",") + "]"
    }

    func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, Error> {
        if let missing = request.adapters.first(where: { $0.adapter.name.value.hasPrefix("missing") }) {
            throw APIError.adapterNotFound(missing.adapter.description)
        }
        let admitted = counters.withLockedValue { c -> Bool in
            guard c.active < maxActive else { return false }
            c.active += 1
            c.requests.append(request)
            return true
        }
        guard admitted else { throw APIError.queueFull(retryAfter: 3) }
        let bytes = Array(replyText(for: request).utf8)
        let delay = tokenDelay
        let counters = self.counters
        // Set by the producer once it has yielded its last event. A consumer may stop iterating as
        // soon as it sees `.finished`, which ends the stream as "cancelled" before the producer's own
        // `finish()`; that stream still ran to its end and is counted as finished.
        let completed = NIOLockedValueBox(false)
        return AsyncThrowingStream { continuation in
            let task = Task {
                if request.echo {
                    var entries: [PromptTokenLogprob] = []
                    for (i, id) in request.prompt.enumerated() {
                        entries.append(PromptTokenLogprob(id: id, logprob: i == 0 ? nil : -1.5, topLogprobs: i == 0 ? [] : Self.alternatives(id, count: request.topLogprobs, best: -1.0)))
                    }
                    continuation.yield(.promptLogprobs(entries))
                }
                var produced = 0
                var held: [UInt8] = []
                while produced < min(bytes.count, request.maxTokens) {
                    if delay > .zero {
                        do { try await Task.sleep(for: delay) } catch { return }
                    }
                    if Task.isCancelled { return }
                    let b = bytes[produced]
                    held.append(b)
                    var text = ""
                    if let s = String(validating: held, as: UTF8.self) {
                        text = s
                        held.removeAll()
                    }
                    let lp: Float = -0.25 * Float(produced % 4 + 1)
                    continuation.yield(.token(GeneratedToken(
                        id: Int32(b), text: text, logprob: request.logprobs ? lp : nil,
                        topLogprobs: request.logprobs ? Self.alternatives(Int32(b), count: request.topLogprobs, best: lp) : [])))
                    produced += 1
                }
                let reason: FinishReason = produced < bytes.count ? .length : .stop
                completed.withLockedValue { $0 = true }
                continuation.yield(.finished(GenerationSummary(finishReason: reason, promptTokens: request.prompt.count, completionTokens: produced)))
                continuation.finish()
            }
            continuation.onTermination = { termination in
                task.cancel()
                counters.withLockedValue { c in
                    c.active -= 1
                    if case .cancelled = termination, !completed.withLockedValue({ $0 }) { c.cancelled += 1 } else { c.finished += 1 }
                }
            }
        }
    }

    /// `count` alternatives, the sampled token first.
    static func alternatives(_ id: Int32, count: Int, best: Float) -> [TokenLogprob] {
        (0..<count).map { k in TokenLogprob(id: k == 0 ? id : (id + Int32(k)) % 256, logprob: best - Float(k)) }
    }

    func tokenize(_ text: String, addSpecial: Bool, parseSpecial: Bool) throws -> [Int32] {
        var out: [Int32] = addSpecial ? [Self.bos] : []
        var rest = Substring(text)
        outer: while !rest.isEmpty {
            if parseSpecial {
                for (s, id) in Self.specials where rest.hasPrefix(s) {
                    out.append(id)
                    rest = rest.dropFirst(s.count)
                    continue outer
                }
            }
            let c = rest.first!
            out += c.utf8.map { Int32($0) }
            rest = rest.dropFirst()
        }
        return out
    }

    func tokenBytes(_ token: Int32) throws -> [UInt8] {
        if token >= 0 && token < 256 { return [UInt8(token)] }
        if let s = Self.specials.first(where: { $0.1 == token }) { return Array(s.0.utf8) }
        throw APIError.badRequest("token id \(token) is outside the vocabulary (size 260)", param: "tokens")
    }

    func detokenize(_ tokens: [Int32]) throws -> String {
        var bytes: [UInt8] = []
        for t in tokens { bytes += try tokenBytes(t) }
        return String(decoding: bytes, as: UTF8.self)
    }

    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        var s = ""
        for m in messages {
            guard ["system", "user", "assistant"].contains(m.role) else {
                throw APIError.badRequest("the chat template does not know the role '\(m.role)'", param: "messages")
            }
            s += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n"
        }
        if addGenerationPrompt { s += "<|im_start|>assistant\n" }
        return s
    }

    func status() async -> BackendStatus {
        let active = counters.withLockedValue { $0.active }
        return BackendStatus(
            running: active, queued: 0, kvBytesUsed: active * 4096, kvBytesBudget: 1 << 20, adaptersInRAM: ["alpha"],
            cacheTiers: [CacheTierStatus(tier: "ram", hits: 3, misses: 1, bytes: 1000, budgetBytes: 1 << 20, evictions: 0, hitsByAdapter: ["alpha": 3]),
                         CacheTierStatus(tier: "disk", hits: 1, misses: 1, bytes: 500, budgetBytes: 1 << 22)],
            prefixCache: PrefixCacheStatus(hits: 4, misses: 2, hitTokens: 96, bytes: 8192, entries: 1), kvPreemptionsTotal: 3)
    }

    static let alpha = AdapterInfo(name: "alpha", version: "2", sha256: "ab", diskBytes: 500, ramBytes: 1000, tier: "ram", pinned: false, source: "pulled", baseModel: "00", rank: 8, createdAt: 1_700_000_100)

    func listAdapters() async throws -> [AdapterInfo] { [Self.alpha] }

    func pullAdapter(_ reference: AdapterReference) -> AsyncThrowingStream<AdapterPullProgress, Error> {
        AsyncThrowingStream { c in
            if reference.name.value.hasPrefix("missing") {
                c.finish(throwing: APIError.adapterNotFound(reference.description))
                return
            }
            let name = reference.name.value
            c.yield(AdapterPullProgress(phase: .resolving, name: name))
            c.yield(AdapterPullProgress(phase: .downloading, name: name, version: "2", completedBytes: 250, totalBytes: 500))
            c.yield(AdapterPullProgress(phase: .downloading, name: name, version: "2", completedBytes: 500, totalBytes: 500))
            c.yield(AdapterPullProgress(phase: .verifying, name: name, version: "2", completedBytes: 500, totalBytes: 500))
            var info = Self.alpha
            info.name = name
            c.yield(AdapterPullProgress(phase: .done, name: name, version: "2", completedBytes: 500, totalBytes: 500, adapter: info))
            c.finish()
        }
    }

    func evictAdapter(_ reference: AdapterReference) async throws {
        guard reference.name.value == "alpha", reference.version == nil || reference.version?.value == Self.alpha.version else {
            throw APIError.adapterNotFound(reference.description)
        }
    }

    func pinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo {
        guard reference.name.value == "alpha" else { throw APIError.adapterNotFound(reference.description) }
        var a = Self.alpha
        a.pinned = true
        return a
    }

    func unpinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo {
        guard reference.name.value == "alpha", reference.version == nil || reference.version?.value == Self.alpha.version else {
            throw APIError.adapterNotFound(reference.description)
        }
        return Self.alpha
    }
}
