import Foundation

import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOExtras
import NIOPosix
import ServiceLifecycle

/// HTTP/1.1 on the daemon's Unix socket: Hummingbird's router and HTTP/1 channel served over a
/// NIO server channel made from an already-listening fd (ours or systemd's), which Hummingbird's
/// own `Server` cannot adopt.
///
/// Shutdown (graceful, from the ServiceGroup on SIGTERM): stop accepting, let running requests
/// finish for up to `drainTimeout`, then cancel what is left (which cancels their generations).
public final class SocketHTTPServer: Service, Sendable {
    let socket: ListeningSocket
    let state: ServingState
    let logger: Logger
    let drainTimeout: Duration
    let group: any EventLoopGroup
    let onShutdownStart: @Sendable () -> Void
    let onListening: @Sendable () async -> Void
    /// Closes connections that do not complete a request in time (slowloris) or sit idle
    /// between requests; see `[server] idle_timeout`.
    let idleTimeout: Duration
    /// How long one request's head and body may take to arrive in full (a client dripping bytes
    /// resets the idle timer, not this); see `[server] request_read_timeout`.
    let requestReadTimeout: Duration

    /// `onListening` runs once the server accepts connections (inside the ServiceGroup, so SIGTERM
    /// is already handled gracefully): the daemon sends READY=1 there.
    public init(socket: ListeningSocket, state: ServingState, logger: Logger, drainTimeout: Duration, idleTimeout: Duration = .seconds(30), requestReadTimeout: Duration = .seconds(30), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, onListening: @escaping @Sendable () async -> Void = {}, onShutdownStart: @escaping @Sendable () -> Void = {}) {
        self.socket = socket
        self.state = state
        self.logger = logger
        self.drainTimeout = drainTimeout
        self.idleTimeout = idleTimeout
        self.requestReadTimeout = requestReadTimeout
        self.group = group
        self.onShutdownStart = onShutdownStart
        self.onListening = onListening
    }

    public func run() async throws {
        let responder = APIRoutes(state: state).build().buildResponder()
        let state = self.state
        let logger = self.logger
        let http = HTTP1Channel(responder: { request, writer, channel in
            try await Self.handle(request: request, writer: writer, channel: channel, responder: responder, state: state, logger: logger)
        }, configuration: Self.channelConfiguration(idleTimeout: idleTimeout, requestReadTimeout: requestReadTimeout))

        let quiesce = ServerQuiescingHelper(group: group)
        let fd = socket.take()
        let server = try await ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            // No remote half-closure: a client that goes away closes the channel, and the close
            // future cancels its generation.
            .bind(fd) { channel in http.setup(channel: channel, logger: logger) }
        logger.info("listening", metadata: ["socket.path": "\(socket.path)", "socket.activated": "\(socket.activated)"])
        await onListening()

        let acceptLoop = Task {
            await withDiscardingTaskGroup { connections in
                do {
                    try await server.executeThenClose { inbound in
                        for try await child in inbound {
                            connections.addTask { await http.handle(value: child, logger: logger) }
                        }
                    }
                } catch {
                    logger.error("accepting connections failed: \(error)")
                }
            }
        }
        do {
            try await gracefulShutdown()
        } catch {
            // Cancelled rather than asked to stop gracefully: tear down at once.
            acceptLoop.cancel()
            server.channel.close(promise: nil)
            await acceptLoop.value
            return
        }
        onShutdownStart()
        state.startDraining()
        logger.notice("shutting down: no new connections; draining \(state.metrics.requestsInFlight) running request(s) for up to \(drainTimeout)")
        quiesce.initiateShutdown(promise: nil)
        let timeout = drainTimeout
        await withTaskGroup(of: Bool.self) { race in
            race.addTask { await acceptLoop.value; return true }
            race.addTask { (try? await Task.sleep(for: timeout)) != nil ? false : true }
            if await race.next() == false {
                logger.warning("drain deadline passed: cancelling \(state.metrics.requestsInFlight) request(s)")
                acceptLoop.cancel()
            }
            race.cancelAll()
        }
        logger.info("server stopped")
    }

    /// Pipeline extras and limits: the close notifier, JSON answers to unparsable requests, header
    /// bounds (a header flood gets 431), the idle timeout that also bounds how long a silent
    /// request may stall, and the whole-request read deadline (a dripped request gets 408).
    static func channelConfiguration(idleTimeout: Duration, requestReadTimeout: Duration) -> HTTP1Channel.Configuration {
        let limits = HTTPHeaderLimits()
        let readTimeout = TimeAmount.nanoseconds(max(1_000_000, nanoseconds(requestReadTimeout)))
        return HTTP1Channel.Configuration(
            additionalChannelHandlers: [HTTPParseErrorResponder(limits: limits), RequestReadDeadline(timeout: readTimeout), ConnectionCloseNotifier()],
            idleTimeout: .nanoseconds(max(1_000_000, nanoseconds(idleTimeout))),
            httpDecoderConfiguration: .init(maxHeaderFieldSize: limits.maxFieldSize, maxHeaderListSize: limits.maxListSize, maxHeaderFieldCount: limits.maxFieldCount))
    }

    private static func nanoseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    /// One request: credentials, context, routing, error → JSON, metrics, one log line.
    static func handle(request: Request, writer: consuming ResponseWriter, channel: any Channel, responder: some HTTPResponder<ServingRequestContext>, state: ServingState, logger: Logger) async throws {
        let arrival = ContinuousClock.now
        let requestID = RequestIDs.next()
        let peer = await PeerCredentials.of(channel)
        var log = logger
        log[metadataKey: "request.id"] = .string(requestID)
        log[metadataKey: "peer.uid"] = .stringConvertible(peer.uid)
        let context = ServingRequestContext(source: ServingContextSource(logger: log, channel: channel, peer: peer, requestID: requestID, arrival: arrival))
        let endpoint = endpointLabel(request.method, request.uri.path)
        state.metrics.requestStarted()
        var response: Response
        do {
            response = try await responder.respond(to: request, context: context)
            // The router answers unknown routes (and errors Hummingbird renders itself) with a
            // bare status; give them the API's error shape.
            if response.status.code >= 400, response.headers[.contentType] == nil {
                throw HTTPError(response.status)
            }
        } catch {
            let e = ErrorRendering.apiError(for: error, method: request.method.rawValue, path: request.uri.path)
            if e.status >= 500 {
                log.error("\(request.method) \(request.uri.path) failed: \(e.message)", metadata: ["http.status": "\(e.status)"])
            } else {
                log.info("\(request.method) \(request.uri.path) refused: \(e.message)", metadata: ["http.status": "\(e.status)"])
            }
            response = ErrorRendering.response(e)
        }
        let status = Int(response.status.code)
        defer {
            let seconds = (ContinuousClock.now - arrival).seconds
            state.metrics.requestFinished(endpoint: endpoint, status: status, seconds: seconds)
            log.debug("\(request.method) \(request.uri.path) \(status)", metadata: ["http.duration_ms": "\(Int(seconds * 1000))"])
        }
        try await writer.write(response: response.head, body: response.body)
    }

    /// Route templates for metric labels (adapter names and job ids are not labels here).
    static func endpointLabel(_ method: HTTPRequest.Method, _ path: String) -> String {
        let parts = path.split(separator: "/")
        switch (parts.count, parts.first) {
        case (3, "v1") where parts[1] == "adapters" && parts[2] != "pull": return "\(method) /v1/adapters/{name}"
        case (4, "v1") where parts[1] == "adapters": return "\(method) /v1/adapters/{name}/\(parts[3])"
        case (4, "v1") where parts[1] == "fine_tuning": return "\(method) /v1/fine_tuning/jobs/{id}"
        case (5, "v1") where parts[1] == "fine_tuning": return "\(method) /v1/fine_tuning/jobs/{id}/\(parts[4])"
        default:
            let known = ["/healthz", "/metrics", "/tokenize", "/detokenize", "/v1/completions", "/v1/chat/completions", "/v1/models", "/v1/adapters", "/v1/adapters/pull", "/v1/fine_tuning/jobs"]
            return known.contains(path) ? "\(method) \(path)" : "other"
        }
    }
}

/// Request ids: 16 hex digits, random start then sequential, unique within a daemon's life.
enum RequestIDs {
    private static let counter = NIOLockedValueBoxCounter()
    static func next() -> String { String(format: "%016llx", counter.next()) }
}

import NIOConcurrencyHelpers

final class NIOLockedValueBoxCounter: Sendable {
    private let box = NIOLockedValueBox<UInt64>(UInt64.random(in: 0..<(1 << 48)) << 16)
    func next() -> UInt64 { box.withLockedValue { $0 &+= 1; return $0 } }
}
