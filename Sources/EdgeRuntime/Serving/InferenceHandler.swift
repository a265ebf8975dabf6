import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Runs one completions / chat-completions request against the backend and shapes the answer as
/// OpenAI does: one JSON object, or SSE chunks ending in `data: [DONE]`.
///
/// Cancellation: the work runs in a task that is cancelled when the connection closes (client
/// gone), when the request deadline passes, or when an SSE write fails; cancelling it cancels the
/// generation stream, which frees the sequence's KV in the engine.
struct InferenceHandler: Sendable {
    let backend: any GenerationBackend
    let metrics: ServingMetrics
    let requestTimeout: Double

    static let promptTooLongCode = "context_length_exceeded"

    struct Prepared: Sendable {
        var request: InferenceRequest
        var generation: GenerationRequest
        var modelInfo: ModelInfo
        var adapterLabel: String
        var created: Int
    }

    func respond(_ request: InferenceRequest, context: ServingRequestContext) async throws -> Response {
        let notifier = await ConnectionCloseNotifier.of(context.channel)
        let prepared = try prepare(request, context: context)
        var logger = context.logger
        logger[metadataKey: "adapter.name"] = .string(prepared.adapterLabel)
        let channel = context.channel
        let reason = CancellationReason()
        let deadline = prepared.generation.deadline

        // Admission (may wait for an adapter pull) happens before the status line is written, so
        // 404/429/503 are real statuses even for streaming requests.
        let stream = try await Self.cancellable(channel: channel, deadline: deadline, reason: reason) {
            try await backend.generate(prepared.generation)
        } onCancel: { [metrics] r in
            if r == .disconnected { metrics.clientDisconnected() }
        }

        if request.stream {
            return streamingResponse(prepared, stream: stream, notifier: notifier, reason: reason, logger: logger, arrival: context.arrival)
        }
        let result: Collected
        do {
            result = try await Self.cancellable(channel: channel, deadline: deadline, reason: reason) {
                try await collect(prepared, stream: stream, arrival: context.arrival)
            } onCancel: { [metrics] r in
                if r == .disconnected { metrics.clientDisconnected() }
            }
        } catch is CancellationError where reason.value == .timedOut {
            throw APIError.timeout("the request did not finish within \(Int(requestTimeout)) s ([server] request_timeout): ask for fewer tokens or retry later")
        }
        logger.debug("generation finished", metadata: ["finish_reason": .string(result.finishReason.rawValue), "tokens.completion": .stringConvertible(result.completionTokens)])
        var response = jsonResponse(render(prepared, result))
        // The engine's share of this request (admission to end) and its wait for admission, so a
        // client can tell transport and API overhead from compute.
        response.headers[Self.engineTimeHeader] = String(format: "%.3f", result.engineTime.seconds * 1000)
        response.headers[Self.queueTimeHeader] = String(format: "%.3f", result.queueTime.seconds * 1000)
        return response
    }

    static let engineTimeHeader = HTTPField.Name("x-engine-time-ms")!
    static let queueTimeHeader = HTTPField.Name("x-queue-time-ms")!

    // MARK: preparing

    func prepare(_ request: InferenceRequest, context: ServingRequestContext) throws -> Prepared {
        guard let model = backend.model else {
            throw APIError.unavailable(backend.noModelHint, code: "model_not_loaded")
        }
        var tokens: [Int32]
        switch request.prompt {
        case .text(let s):
            tokens = try backend.tokenize(s, addSpecial: true, parseSpecial: true)
        case .tokens(let ids):
            if let bad = ids.firstIndex(where: { Int($0) >= model.vocabularySize }) {
                throw APIError.badRequest("prompt[\(bad)] = \(ids[bad]) is outside the vocabulary (size \(model.vocabularySize))", param: "prompt")
            }
            tokens = ids
        case .messages(let messages):
            let rendered = try backend.renderChat(messages, addGenerationPrompt: true)
            tokens = try backend.tokenize(rendered, addSpecial: false, parseSpecial: true)
        }
        guard !tokens.isEmpty else {
            throw APIError.badRequest("the prompt is empty after tokenization", param: request.kind == .chat ? "messages" : "prompt")
        }
        let contextLength = model.contextLength
        let room = contextLength - tokens.count
        let param = request.kind == .chat ? "messages" : "prompt"
        guard room > 0 || (room == 0 && request.maxTokens == 0) else {
            throw APIError.badRequest("the prompt is \(tokens.count) tokens; the model's context holds \(contextLength): shorten it", param: param, code: Self.promptTooLongCode)
        }
        let maxTokens = request.maxTokens ?? room
        guard maxTokens <= room else {
            throw APIError.badRequest("the prompt (\(tokens.count) tokens) plus max_tokens (\(maxTokens)) exceeds the model's context of \(contextLength) tokens: lower max_tokens to \(room) or less", param: "max_tokens", code: Self.promptTooLongCode)
        }
        let generation = GenerationRequest(
            id: context.requestID,
            prompt: tokens, adapters: request.adapters, sampling: request.sampling, maxTokens: maxTokens,
            stopTokenIDs: request.stopTokenIDs, ignoreEOS: request.ignoreEOS, logprobs: request.logprobs,
            topLogprobs: request.topLogprobs, echo: request.echo,
            deadline: ContinuousClock.now + .milliseconds(Int64(requestTimeout * 1000)))
        return Prepared(
            request: request, generation: generation, modelInfo: model,
            adapterLabel: ServingMetrics.adapterLabel(request.adapters), created: Int(Date().timeIntervalSince1970))
    }
}

// MARK: cancellation

/// Why the work task was cancelled, so the handler can answer a timeout differently from a
/// client that left.
final class CancellationReason: Sendable {
    enum Reason: Sendable { case disconnected, timedOut }
    private let box = NIOLockedValueBox<Reason?>(nil)
    var value: Reason? { box.withLockedValue { $0 } }
    /// First reason wins.
    func set(_ r: Reason) -> Bool {
        box.withLockedValue { v in
            guard v == nil else { return false }
            v = r
            return true
        }
    }
}

extension InferenceHandler {
    /// Runs `operation` in a task cancelled by connection close or the deadline (and by the
    /// caller's own cancellation).
    static func cancellable<T: Sendable>(
        channel: any Channel, deadline: ContinuousClock.Instant?, reason: CancellationReason,
        _ operation: @escaping @Sendable () async throws -> T,
        onCancel: @escaping @Sendable (CancellationReason.Reason) -> Void
    ) async throws -> T {
        let task = Task { try await operation() }
        let notifier = await ConnectionCloseNotifier.of(channel)
        let token = notifier?.register {
            if reason.set(.disconnected) { onCancel(.disconnected) }
            task.cancel()
        }
        defer { if let token { notifier?.unregister(token) } }
        let timer = deadline.map { d in
            DeadlineTimer(at: d, loop: channel.eventLoop) {
                if reason.set(.timedOut) { onCancel(.timedOut) }
                task.cancel()
            }
        }
        defer { timer?.cancel() }
        return try await withTaskCancellationHandler {
            try await task.value
        } onCancel: {
            task.cancel()
        }
    }
}

// MARK: non-streaming

extension InferenceHandler {
    struct Collected: Sendable {
        var text = ""
        var tokens: [GeneratedToken] = []
        var offsets: [Int] = []
        var promptLogprobs: [PromptTokenLogprob]?
        var finishReason: FinishReason = .stop
        var promptTokens = 0
        var completionTokens = 0
        var cachedPromptTokens = 0
        var engineTime: Duration = .zero
        var queueTime: Duration = .zero
    }

    func collect(_ p: Prepared, stream: AsyncThrowingStream<GenerationEvent, Error>, arrival: ContinuousClock.Instant) async throws -> Collected {
        var acc = GenerationAccumulator(stop: p.request.stop)
        var out = Collected()
        var timing = TokenTiming(arrival: arrival, metrics: metrics, adapter: p.adapterLabel)
        for try await event in stream {
            if case .token = event { timing.tick() }
            if let e = acc.consume(event) {
                var offset = e.offset
                for t in e.tokens {
                    out.tokens.append(t)
                    out.offsets.append(offset)
                    offset += t.text.utf8.count
                }
                out.text += e.text
            }
            if acc.finishReason != nil { break }
        }
        try Task.checkCancellation()
        guard let reason = acc.finishReason else {
            throw APIError.internalError("the engine ended the generation without saying why")
        }
        out.finishReason = reason
        out.promptLogprobs = acc.promptLogprobs
        out.promptTokens = acc.summary?.promptTokens ?? p.generation.prompt.count
        out.cachedPromptTokens = acc.summary?.cachedPromptTokens ?? 0
        out.engineTime = acc.summary?.engineTime ?? .zero
        out.queueTime = acc.summary?.queueTime ?? .zero
        out.completionTokens = acc.summary?.completionTokens ?? acc.completionTokens
        metrics.tokens(adapter: p.adapterLabel, prompt: out.promptTokens, generated: out.completionTokens)
        metrics.finished(reason: reason.rawValue)
        return out
    }

    func render(_ p: Prepared, _ r: Collected) -> JSONValue {
        let usage = usageJSON(prompt: r.promptTokens, completion: r.completionTokens, cached: r.cachedPromptTokens)
        switch p.request.kind {
        case .completion:
            var text = r.text
            var logprobs: JSONValue = .null
            if p.request.echo {
                let promptText = (try? backend.detokenize(p.generation.prompt)) ?? ""
                text = promptText + text
            }
            if p.request.logprobs {
                logprobs = completionLogprobs(p, r)
            }
            return .object([
                ("id", .string("cmpl-" + p.generation.id)),
                ("object", "text_completion"),
                ("created", .from(p.created)),
                ("model", .string(p.request.model)),
                ("choices", .array([.object([
                    ("index", 0), ("text", .string(text)), ("logprobs", logprobs),
                    ("finish_reason", .string(r.finishReason.rawValue)),
                ])])),
                ("usage", usage),
            ])
        case .chat:
            let logprobs: JSONValue = p.request.logprobs ? .object([("content", .array(r.tokens.map { chatLogprob($0) }))]) : .null
            return .object([
                ("id", .string("chatcmpl-" + p.generation.id)),
                ("object", "chat.completion"),
                ("created", .from(p.created)),
                ("model", .string(p.request.model)),
                ("choices", .array([.object([
                    ("index", 0),
                    ("message", .object([("role", "assistant"), ("content", .string(r.text))])),
                    ("logprobs", logprobs),
                    ("finish_reason", .string(r.finishReason.rawValue)),
                ])])),
                ("usage", usage),
            ])
        }
    }

    func usageJSON(prompt: Int, completion: Int, cached: Int) -> JSONValue {
        .object([
            ("prompt_tokens", .from(prompt)), ("completion_tokens", .from(completion)),
            ("total_tokens", .from(prompt + completion)),
            ("prompt_tokens_details", .object([("cached_tokens", .from(cached))])),
        ])
    }

    /// A token's text for logprobs: its raw bytes, decoded leniently (a partial UTF-8 piece shows
    /// as U+FFFD here and exactly in `bytes`).
    func piece(_ id: Int32) -> (String, [UInt8]) {
        let bytes = (try? backend.tokenBytes(id)) ?? []
        return (String(decoding: bytes, as: UTF8.self), bytes)
    }

    func chatLogprob(_ t: GeneratedToken) -> JSONValue {
        let (text, bytes) = piece(t.id)
        return .object([
            ("token", .string(text)), ("logprob", .from(t.logprob)),
            ("bytes", .array(bytes.map { .int(Int64($0)) })),
            ("top_logprobs", .array(t.topLogprobs.map { alt in
                let (at, ab) = piece(alt.id)
                return .object([("token", .string(at)), ("logprob", .from(alt.logprob)), ("bytes", .array(ab.map { .int(Int64($0)) }))])
            })),
        ])
    }

    /// Legacy completions shape: parallel arrays, top_logprobs as {token: logprob} objects.
    func completionLogprobs(_ p: Prepared, _ r: Collected) -> JSONValue {
        var tokens: [JSONValue] = [], lps: [JSONValue] = [], tops: [JSONValue] = [], offsets: [JSONValue] = []
        var base = 0
        if p.request.echo, let prompt = r.promptLogprobs {
            for entry in prompt {
                let (text, _) = piece(entry.id)
                tokens.append(.string(text))
                lps.append(.from(entry.logprob))
                tops.append(entry.logprob == nil ? .null : topObject(entry.topLogprobs))
                offsets.append(.from(base))
                base += text.utf8.count
            }
        } else if p.request.echo {
            base = ((try? backend.detokenize(p.generation.prompt)) ?? "").utf8.count
        }
        for (i, t) in r.tokens.enumerated() {
            tokens.append(.string(piece(t.id).0))
            lps.append(.from(t.logprob))
            tops.append(topObject(t.topLogprobs))
            offsets.append(.from(base + r.offsets[i]))
        }
        return .object([("tokens", .array(tokens)), ("token_logprobs", .array(lps)), ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))])
    }

    func topObject(_ alts: [TokenLogprob]) -> JSONValue {
        .object(alts.map { (piece($0.id).0, .from($0.logprob)) })
    }

    func jsonResponse(_ json: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.writeString(json.serialized)
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }
}

/// Records time-to-first-token and inter-token latency as tokens arrive.
struct TokenTiming {
    let arrival: ContinuousClock.Instant
    let metrics: ServingMetrics
    let adapter: String
    var last: ContinuousClock.Instant?

    init(arrival: ContinuousClock.Instant, metrics: ServingMetrics, adapter: String) {
        self.arrival = arrival
        self.metrics = metrics
        self.adapter = adapter
    }

    mutating func tick() {
        let now = ContinuousClock.now
        if let last {
            metrics.interTokenLatency(adapter: adapter, seconds: (now - last).seconds)
        } else {
            metrics.timeToFirstToken(adapter: adapter, seconds: (now - arrival).seconds)
        }
        last = now
    }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}

// MARK: streaming

extension InferenceHandler {
    func streamingResponse(
        _ p: Prepared, stream: AsyncThrowingStream<GenerationEvent, Error>, notifier: ConnectionCloseNotifier?,
        reason: CancellationReason, logger: Logger, arrival: ContinuousClock.Instant
    ) -> Response {
        let (frames, continuation) = AsyncStream<ByteBuffer>.makeStream(bufferingPolicy: .unbounded)
        let deadline = p.generation.deadline
        let (tokenStream, tokenContinuation) = AsyncStream<UInt64>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let producer = Task {
            // Unregisters the close callback once the stream is over (keep-alive connections).
            defer {
                Task {
                    for await token in tokenStream { notifier?.unregister(token); break }
                }
            }
            await withTaskGroup(of: Void.self) { work in
                work.addTask { await produceFrames(p, stream: stream, into: continuation, reason: reason, logger: logger, arrival: arrival) }
                // Ends the frames task when the deadline passes (it then reports a timeout).
                let (expired, expire) = AsyncStream<Void>.makeStream()
                let timer = deadline.map { d in DeadlineTimer(at: d) { _ = reason.set(.timedOut); expire.finish() } }
                if timer != nil {
                    work.addTask { for await _ in expired {} }
                }
                await work.next()
                timer?.cancel()
                expire.finish()
                work.cancelAll()
            }
            continuation.finish()
        }
        // The client leaving, a failed write, or the deadline all end the producer, which ends the
        // generation stream (and frees the sequence's KV).
        continuation.onTermination = { _ in producer.cancel() }
        if let notifier {
            let token = notifier.register { [metrics] in
                if reason.set(.disconnected) { metrics.clientDisconnected() }
                producer.cancel()
            }
            tokenContinuation.yield(token)
        }
        tokenContinuation.finish()
        var headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        headers[.init("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: ResponseBody(asyncSequence: frames))
    }

    private func frame(_ json: JSONValue) -> ByteBuffer {
        var s = "data: "
        json.write(to: &s)
        s += "\n\n"
        return ByteBuffer(string: s)
    }

    private func produceFrames(
        _ p: Prepared, stream: AsyncThrowingStream<GenerationEvent, Error>,
        into out: AsyncStream<ByteBuffer>.Continuation, reason: CancellationReason, logger: Logger,
        arrival: ContinuousClock.Instant
    ) async {
        let chat = p.request.kind == .chat
        let id = (chat ? "chatcmpl-" : "cmpl-") + p.generation.id
        let object: JSONValue = chat ? "chat.completion.chunk" : "text_completion"
        func chunk(_ choice: [(String, JSONValue)], usage: JSONValue? = nil) -> JSONValue {
            var pairs: [(String, JSONValue)] = [
                ("id", .string(id)), ("object", object), ("created", .from(p.created)),
                ("model", .string(p.request.model)), ("choices", .array([.object([("index", 0)] + choice)])),
            ]
            if p.request.includeUsage { pairs.append(("usage", usage ?? .null)) }
            return .object(pairs)
        }
        var acc = GenerationAccumulator(stop: p.request.stop)
        var timing = TokenTiming(arrival: arrival, metrics: metrics, adapter: p.adapterLabel)
        if chat {
            out.yield(frame(chunk([("delta", .object([("role", "assistant"), ("content", "")])), ("logprobs", .null), ("finish_reason", .null)])))
        }
        do {
            for try await event in stream {
                if case .token = event { timing.tick() }
                if let e = acc.consume(event) {
                    if chat {
                        let lp: JSONValue = p.request.logprobs ? .object([("content", .array(e.tokens.map { chatLogprob($0) }))]) : .null
                        out.yield(frame(chunk([("delta", .object([("content", .string(e.text))])), ("logprobs", lp), ("finish_reason", .null)])))
                    } else {
                        var lp: JSONValue = .null
                        if p.request.logprobs {
                            var c = Collected()
                            c.tokens = e.tokens
                            var off = e.offset
                            c.offsets = e.tokens.map { t in defer { off += t.text.utf8.count }; return off }
                            lp = completionLogprobs(p, c)
                        }
                        out.yield(frame(chunk([("text", .string(e.text)), ("logprobs", lp), ("finish_reason", .null)])))
                    }
                }
                if acc.finishReason != nil { break }
            }
            try Task.checkCancellation()
            guard let finish = acc.finishReason else { throw APIError.internalError("the engine ended the generation without saying why") }
            let promptTokens = acc.summary?.promptTokens ?? p.generation.prompt.count
            let completionTokens = acc.summary?.completionTokens ?? acc.completionTokens
            metrics.tokens(adapter: p.adapterLabel, prompt: promptTokens, generated: completionTokens)
            metrics.finished(reason: finish.rawValue)
            if chat {
                out.yield(frame(chunk([("delta", .object([])), ("logprobs", .null), ("finish_reason", .string(finish.rawValue))])))
            } else {
                out.yield(frame(chunk([("text", ""), ("logprobs", .null), ("finish_reason", .string(finish.rawValue))])))
            }
            if p.request.includeUsage {
                var pairs: [(String, JSONValue)] = [
                    ("id", .string(id)), ("object", object), ("created", .from(p.created)),
                    ("model", .string(p.request.model)), ("choices", .array([])),
                ]
                pairs.append(("usage", usageJSON(prompt: promptTokens, completion: completionTokens, cached: acc.summary?.cachedPromptTokens ?? 0)))
                out.yield(frame(.object(pairs)))
            }
            out.yield(ByteBuffer(string: "data: [DONE]\n\n"))
        } catch {
            if reason.value == .disconnected { return }
            let apiError: any HTTPStatusError
            if reason.value == .timedOut {
                apiError = APIError.timeout("the request did not finish within \(Int(requestTimeout)) s ([server] request_timeout)")
            } else if let e = error as? any HTTPStatusError {
                apiError = e
            } else {
                apiError = APIError.internalError("generation failed: \(error)")
            }
            logger.error("streaming generation failed: \(apiError.message)")
            out.yield(frame(ErrorRendering.body(apiError)))
            out.yield(ByteBuffer(string: "data: [DONE]\n\n"))
        }
    }
}
