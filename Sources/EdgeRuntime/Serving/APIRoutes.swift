import AdapterCache
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The socket API's route table (DESIGN.md §4). Handlers throw `HTTPStatusError`s; the responder
/// turns every error into OpenAI-style JSON.
struct APIRoutes {
    let state: ServingState

    func build() -> Router<ServingRequestContext> {
        let router = Router(context: ServingRequestContext.self)
        // Every route checks the peer, these two included: they name the model path, the adapters
        // in RAM and the traffic, which only users let into the socket may see.
        router.get("/healthz") { _, ctx in
            try Self.authorize(state, ctx, .inference)
            return try await health()
        }
        router.get("/metrics") { _, ctx in
            try Self.authorize(state, ctx, .inference)
            return await metricsText()
        }

        router.post("/v1/completions") { req, ctx in try await inference(req, ctx, kind: .completion) }
        router.post("/v1/chat/completions") { req, ctx in try await inference(req, ctx, kind: .chat) }
        router.post("/tokenize") { req, ctx in try await tokenize(req, ctx) }
        router.post("/detokenize") { req, ctx in try await detokenize(req, ctx) }
        router.get("/v1/models") { _, ctx in try await models(ctx) }

        router.get("/v1/adapters") { _, ctx in try await listAdapters(ctx) }
        router.post("/v1/adapters/pull") { req, ctx in try await pull(req, ctx) }
        router.delete("/v1/adapters/:name") { _, ctx in try await evict(ctx) }
        router.post("/v1/adapters/:name/pin") { _, ctx in try await pin(ctx, pin: true) }
        router.post("/v1/adapters/:name/unpin") { _, ctx in try await pin(ctx, pin: false) }

        let ft = FineTuningRoutes(state: state)
        router.post("/v1/fine_tuning/jobs") { req, ctx in try await ft.create(req, ctx) }
        router.get("/v1/fine_tuning/jobs") { req, ctx in try await ft.list(req, ctx) }
        router.get("/v1/fine_tuning/jobs/:id") { _, ctx in try await ft.get(ctx) }
        router.get("/v1/fine_tuning/jobs/:id/events") { req, ctx in try await ft.events(req, ctx) }
        router.post("/v1/fine_tuning/jobs/:id/cancel") { _, ctx in try await ft.cancel(ctx) }
        router.post("/v1/fine_tuning/run_pending") { _, ctx in try await ft.runPending(ctx) }
        router.post("/v1/adapters/:name/rollback") { _, ctx in try await ft.rollback(ctx) }
        return router
    }

    // MARK: helpers shared with FineTuningRoutes

    static func authorize(_ state: ServingState, _ ctx: ServingRequestContext, _ permission: AccessPolicy.Permission) throws {
        guard state.settings.policy.allows(ctx.peer, permission) else {
            state.metrics.authDenied(permission: permission.rawValue)
            ctx.logger.warning("access denied", metadata: ["peer.uid": "\(ctx.peer.uid)", "peer.gid": "\(ctx.peer.gid)", "peer.pid": "\(ctx.peer.pid)", "permission": "\(permission.rawValue)"])
            throw APIError.forbidden("uid \(ctx.peer.uid) may not \(permission == .inference ? "run inference" : "manage adapters or fine-tuning") on this daemon: add the user to the edge-runtime group or to [auth] \(permission == .inference ? "inference" : "manage")_uids in the config")
        }
    }

    /// `key` names the config key that sets `limit`, for the 413 message.
    static func body(_ req: Request, limit: Int, key: String = "max_body_bytes") async throws -> ByteBuffer {
        if let length = req.headers[.contentLength].flatMap(Int.init), length > limit {
            throw APIError.tooLarge("the request body is \(length) bytes; the limit is \(limit) ([server] \(key))")
        }
        do {
            return try await req.body.collect(upTo: limit)
        } catch let e as HTTPError where e.status == .contentTooLarge {
            throw APIError.tooLarge("the request body is larger than \(limit) bytes ([server] \(key))")
        } catch is NIOTooManyBytesError {
            // A chunked body (no Content-Length to check up front) that passed the limit.
            throw APIError.tooLarge("the request body is larger than \(limit) bytes ([server] \(key))")
        }
    }

    static func json(_ req: Request, limit: Int, key: String = "max_body_bytes") async throws -> JSONValue {
        let buffer = try await body(req, limit: limit, key: key)
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("the request body is empty: send a JSON object", code: "invalid_json") }
        return try JSONValue.parse(buffer.readableBytesView)
    }

    static func respond(_ json: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        var buffer = ByteBuffer()
        buffer.writeString(json.serialized)
        buffer.writeString("\n")
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    static func encodable<T: Encodable>(_ value: T) throws -> JSONValue {
        let data = try JSONEncoder().encode(value)
        return try JSONValue.parse(Array(data))
    }

    // MARK: handlers

    func health() async throws -> Response {
        let model = state.backend.model
        let status = await state.backend.status()
        let json: JSONValue = .object([
            ("status", .string(state.isDraining ? "draining" : (model == nil ? "no_model" : "ok"))),
            ("model", model.map { .object([("name", .string($0.name)), ("path", .string($0.path)), ("context_length", .from($0.contextLength)), ("base_digest", .string($0.baseDigest))]) } ?? .null),
            ("hint", model == nil ? .string(state.backend.noModelHint) : .null),
            ("running", .from(status.running)), ("queued", .from(status.queued)),
            ("kv_bytes", .from(status.kvBytesUsed)), ("kv_budget_bytes", .from(status.kvBytesBudget)),
            ("adapters_in_ram", .array(status.adaptersInRAM.map { .string($0) })),
            ("requests_in_flight", .from(state.metrics.requestsInFlight)),
            ("uptime_seconds", .double((ContinuousClock.now - state.startedAt).seconds.rounded())),
            ("version", .string(ServingDaemon.version)),
        ])
        return Self.respond(json)
    }

    func metricsText() async -> Response {
        let status = await state.backend.status()
        let text = state.metrics.render(backend: status, modelLoaded: state.backend.model != nil) + ProcessStats.current().prometheusText
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    func inference(_ req: Request, _ ctx: ServingRequestContext, kind: InferenceRequest.Kind) async throws -> Response {
        try Self.authorize(state, ctx, .inference)
        let settings = state.settings
        let json = try await Self.json(req, limit: settings.maxBodyBytes)
        let parsed = try InferenceRequest.parse(json, kind: kind)
        if state.isDraining {
            throw APIError.unavailable("the daemon is shutting down: retry in a moment", code: "shutting_down", retryAfter: 5)
        }
        let handler = InferenceHandler(backend: state.backend, metrics: state.metrics, requestTimeout: settings.requestTimeout)
        return try await handler.respond(parsed, context: ctx)
    }

    func tokenize(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .inference)
        let json = try await Self.json(req, limit: state.settings.maxBodyBytes)
        let f = FieldReader(json: json)
        guard let content = try f.string("content") else {
            throw APIError.badRequest("'content' is required: the text to tokenize", param: "content")
        }
        let addSpecial = try f.bool("add_special") ?? false
        let parseSpecial = try f.bool("parse_special") ?? true
        let withPieces = try f.bool("with_pieces") ?? false
        let ids = try state.backend.tokenize(content, addSpecial: addSpecial, parseSpecial: parseSpecial)
        let tokens: [JSONValue] = withPieces
            ? try ids.map { id in .object([("id", .int(Int64(id))), ("piece", .string(String(decoding: try state.backend.tokenBytes(id), as: UTF8.self)))]) }
            : ids.map { .int(Int64($0)) }
        return Self.respond(.object([("tokens", .array(tokens))]))
    }

    func detokenize(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .inference)
        let json = try await Self.json(req, limit: state.settings.maxBodyBytes)
        guard let list = json["tokens"]?.arrayValue else {
            throw APIError.badRequest("'tokens' is required: an array of token ids", param: "tokens")
        }
        var ids: [Int32] = []
        for (i, v) in list.enumerated() {
            guard let id = v.intValue, id >= 0, id <= Int64(Int32.max) else {
                throw APIError.badRequest("tokens[\(i)] must be a token id", param: "tokens")
            }
            ids.append(Int32(id))
        }
        return Self.respond(.object([("content", .string(try state.backend.detokenize(ids)))]))
    }

    func models(_ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .inference)
        guard let model = state.backend.model else {
            throw APIError.unavailable(state.backend.noModelHint, code: "model_not_loaded")
        }
        var data: [JSONValue] = [.object([
            ("id", "base"), ("object", "model"), ("created", .from(model.loadedAt)), ("owned_by", "edge-runtime"),
            ("root", .string(model.name)), ("context_length", .from(model.contextLength)),
        ])]
        for a in try await state.backend.listAdapters() {
            data.append(.object([
                ("id", .string(a.name)), ("object", "model"), ("created", .from(a.createdAt)), ("owned_by", .string(a.source)),
                ("root", .string("\(a.name)@\(a.version)")), ("parent", "base"),
            ]))
        }
        return Self.respond(.object([("object", "list"), ("data", .array(data))]))
    }

    func listAdapters(_ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .inference)
        let list = try await state.backend.listAdapters()
        return Self.respond(.object([("object", "list"), ("data", try Self.encodable(list))]))
    }

    /// Body `{"name": "NAME[@VERSION]", "stream": true?}`. Streams progress as SSE when the client
    /// accepts text/event-stream, as NDJSON otherwise; `"stream": false` waits and returns the
    /// adapter.
    func pull(_ req: Request, _ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .manage)
        let json = try await Self.json(req, limit: state.settings.maxBodyBytes)
        let f = FieldReader(json: json)
        guard let name = try f.string("name") ?? f.string("model") else {
            throw APIError.badRequest("'name' is required: the adapter to pull, NAME or NAME@VERSION", param: "name")
        }
        let ref: AdapterReference
        do { ref = try AdapterReference(parsing: name) } catch { throw APIError.badRequest(error.message, param: "name", code: error.errorCode) }
        let wantsStream = try f.bool("stream") ?? true
        let progress = state.backend.pullAdapter(ref)
        var logger = ctx.logger
        logger[metadataKey: "adapter.name"] = .string(ref.description)
        if !wantsStream {
            var last: AdapterPullProgress?
            for try await p in progress { last = p }
            guard let done = last, done.phase == .done else { throw APIError.internalError("the adapter pull ended without a result") }
            logger.info("adapter pulled")
            return Self.respond(try Self.encodable(done))
        }
        // Errors before the first event (unknown adapter, no store) become real statuses.
        var iterator = progress.makeAsyncIterator()
        let first = try await iterator.next()
        let sse = (req.headers[.accept] ?? "").contains("text/event-stream")
        let (frames, out) = AsyncStream<ByteBuffer>.makeStream()
        let box = IteratorBox(iterator)
        let producer = Task {
            func emit(_ json: JSONValue) {
                var s = sse ? "data: " : ""
                json.write(to: &s)
                s += sse ? "\n\n" : "\n"
                out.yield(ByteBuffer(string: s))
            }
            do {
                if let first { emit(try Self.encodable(first)) }
                while let p = try await box.next() { emit(try Self.encodable(p)) }
                logger.info("adapter pulled")
            } catch {
                let e = ErrorRendering.apiError(for: error, method: "POST", path: "/v1/adapters/pull")
                logger.error("adapter pull failed: \(e.message)")
                emit(ErrorRendering.body(e))
            }
            if sse { out.yield(ByteBuffer(string: "data: [DONE]\n\n")) }
            out.finish()
        }
        out.onTermination = { _ in producer.cancel() }
        ctx.channel.closeFuture.whenComplete { _ in producer.cancel() }
        return Response(status: .ok, headers: [.contentType: sse ? "text/event-stream" : "application/x-ndjson"], body: ResponseBody(asyncSequence: frames))
    }

    /// The `{name}` path parameter: NAME or NAME@VERSION.
    func adapterReference(_ ctx: ServingRequestContext) throws -> AdapterReference {
        let raw = ctx.parameters.get("name") ?? ""
        do { return try AdapterReference(parsing: raw) } catch { throw APIError.badRequest(error.message, param: "name", code: error.errorCode) }
    }

    func evict(_ ctx: ServingRequestContext) async throws -> Response {
        try Self.authorize(state, ctx, .manage)
        let ref = try adapterReference(ctx)
        try await state.backend.evictAdapter(ref)
        ctx.logger.info("adapter evicted", metadata: ["adapter.name": "\(ref)"])
        return Self.respond(.object([("id", .string(ref.description)), ("object", "adapter"), ("deleted", true)]))
    }

    func pin(_ ctx: ServingRequestContext, pin: Bool) async throws -> Response {
        try Self.authorize(state, ctx, .manage)
        let raw = ctx.parameters.get("name") ?? ""
        let ref = try adapterReference(ctx)
        let info = pin ? try await state.backend.pinAdapter(ref) : try await state.backend.unpinAdapter(ref)
        ctx.logger.info(pin ? "adapter pinned" : "adapter unpinned", metadata: ["adapter.name": "\(raw)"])
        return Self.respond(try Self.encodable(info))
    }
}

/// Lets a task keep iterating a stream whose first element was read elsewhere.
final class IteratorBox<Element: Sendable>: @unchecked Sendable {
    // Only the producer task touches the iterator after construction.
    private var iterator: AsyncThrowingStream<Element, Error>.Iterator
    init(_ iterator: AsyncThrowingStream<Element, Error>.Iterator) { self.iterator = iterator }
    func next() async throws -> Element? { try await iterator.next() }
}
