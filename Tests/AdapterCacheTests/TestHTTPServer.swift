import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// A static file server on 127.0.0.1 for the fetch tests: serves a directory with `Range` support
/// (206), records every request, and misbehaves on demand per path (status codes, stalls, bodies
/// cut short, ranges ignored).
final class TestHTTPServer: @unchecked Sendable {
    enum Behaviour: Sendable {
        case normal
        case status(Int)
        case stall(seconds: Double)
        /// Announce the full length, send this many bytes, then close the connection.
        case cutAfter(Int)
        /// Serve the whole file with 200 even when a Range is asked for.
        case ignoreRange
    }

    struct Request: Sendable { var path: String; var range: String? }

    let root: String
    private let lock = NSLock()
    private var queued: [String: [Behaviour]] = [:]
    private var _requests: [Request] = []
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private var channel: Channel?
    private(set) var port = 0

    var url: String { "http://127.0.0.1:\(port)" }

    init(root: String) throws {
        self.root = root
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(server: self))
                }
            }
        let ch = try bootstrap.bind(host: "127.0.0.1", port: 0).wait()
        channel = ch
        port = ch.localAddress?.port ?? 0
    }

    func shutdown() {
        try? channel?.close().wait()
        try? group.syncShutdownGracefully()
    }

    /// The next requests for `path` (e.g. "/a/1.tar.zst") behave like this, in order; then normally.
    func enqueue(_ path: String, _ behaviours: Behaviour...) {
        lock.lock()
        queued[path, default: []].append(contentsOf: behaviours)
        lock.unlock()
    }

    var requests: [Request] {
        lock.lock()
        defer { lock.unlock() }
        return _requests
    }

    func count(_ path: String) -> Int { requests.filter { $0.path == path }.count }

    fileprivate func next(for path: String, range: String?) -> Behaviour {
        lock.lock()
        defer { lock.unlock() }
        _requests.append(Request(path: path, range: range))
        guard var q = queued[path], !q.isEmpty else { return .normal }
        let b = q.removeFirst()
        queued[path] = q
        return b
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: TestHTTPServer
        var head: HTTPRequestHead?

        init(server: TestHTTPServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h
            case .body: break
            case .end:
                guard let h = head else { return }
                respond(context: context, head: h)
            }
        }

        func respond(context: ChannelHandlerContext, head: HTTPRequestHead) {
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            let range = head.headers.first(name: "Range")
            let behaviour = server.next(for: path, range: range)
            let file = server.root + path
            let data = path.contains("..") ? nil : FileManager.default.contents(atPath: file)
            switch behaviour {
            case .status(let code):
                send(context: context, status: .init(statusCode: code), headers: [:], body: Data("error \(code)".utf8), close: false)
                return
            case .stall(let seconds):
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: .milliseconds(Int64(seconds * 1000))) {
                    _ = bound.value.close()
                }
                return
            default: break
            }
            guard let data else {
                send(context: context, status: .notFound, headers: [:], body: Data("not found".utf8), close: false)
                return
            }
            if case .cutAfter(let n) = behaviour {
                var headers = HTTPHeaders()
                headers.add(name: "Content-Length", value: String(data.count))
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: data.prefix(n)))))).whenComplete { _ in
                    context.close(promise: nil)
                }
                return
            }
            var ignoreRange = false
            if case .ignoreRange = behaviour { ignoreRange = true }
            if let range, !ignoreRange, range.hasPrefix("bytes="), let start = Int(range.dropFirst(6).split(separator: "-").first ?? ""), start < data.count {
                var headers = HTTPHeaders()
                headers.add(name: "Content-Range", value: "bytes \(start)-\(data.count - 1)/\(data.count)")
                headers.add(name: "Accept-Ranges", value: "bytes")
                send(context: context, status: .partialContent, headers: headers, body: data.subdata(in: start..<data.count), close: false)
                return
            }
            send(context: context, status: .ok, headers: ["Accept-Ranges": "bytes"], body: data, close: false)
        }

        func send(context: ChannelHandlerContext, status: HTTPResponseStatus, headers extra: HTTPHeaders, body: Data, close: Bool) {
            var headers = extra
            headers.add(name: "Content-Length", value: String(body.count))
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}
