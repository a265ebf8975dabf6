import Hummingbird
import NIOCore
import NIOHTTPTypes

/// Bounds how long one request's head and body may take to arrive in full (`[server]
/// request_read_timeout`). The idle timeout alone cannot: every byte resets it, so a client that
/// drips its request a byte at a time would hold the connection (and a request slot waiting for
/// its body) forever. When the deadline passes the client gets 408 and the connection is closed.
///
/// Sits after the HTTP decoder. The clock of a request starts at the first socket read that
/// carries its bytes: a read that completes no request (`channelReadComplete` without an `.end`)
/// or the request's `.head`, whichever comes first; the request's `.end` stops it. A read that
/// ends one request and starts the next arms the clock on the next read instead (pipelined
/// requests are rare here; the idle timeout still covers the gap). Time spent answering is not
/// counted: the deadline covers reading only, and a response already under way is never
/// interrupted by a 408 (the connection is just closed).
///
/// Concurrency: a channel handler, touched only on its channel's event loop.
final class RequestReadDeadline: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let timeout: TimeAmount
    private var scheduled: Scheduled<Void>?
    /// A `.end` arrived during the current socket read.
    private var endedThisRead = false
    /// A response head went out and its `.end` has not yet.
    private var responseOpen = false
    /// The request being read was already answered (a route that did not wait for its body).
    private var answered = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            if scheduled == nil { arm(context) }
        case .body:
            break
        case .end:
            disarm()
            endedThisRead = true
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Bytes arrived that finished no request: a request (or its head) has started.
        if scheduled == nil && !endedThisRead { arm(context) }
        endedThisRead = false
        context.fireChannelReadComplete()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            responseOpen = true
        case .end:
            responseOpen = false
            if scheduled != nil { answered = true }
        default:
            break
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        disarm()
    }

    private func arm(_ context: ChannelHandlerContext) {
        answered = false
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        scheduled = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.expired(context)
        }
    }

    private func disarm() {
        scheduled?.cancel()
        scheduled = nil
    }

    private func expired(_ context: ChannelHandlerContext) {
        scheduled = nil
        let channel = context.channel
        guard channel.isActive else { return }
        guard !responseOpen && !answered else {
            // Mid-response (or already answered): a 408 now would corrupt the stream; just close.
            context.close(promise: nil)
            return
        }
        let seconds = Double(timeout.nanoseconds) / 1e9
        let apiError = APIError(
            status: 408, type: "invalid_request_error", code: "request_timeout",
            message: "the request did not arrive in full within \(seconds.secondsText) s ([server] request_read_timeout); the connection is closed")
        let response = ErrorRendering.response(apiError)
        var head = HTTPResponse(status: response.status)
        head.headerFields = response.headers
        head.headerFields[.connection] = "close"
        var body = channel.allocator.buffer(capacity: 256)
        body.writeString(ErrorRendering.body(apiError).serialized)
        body.writeString("\n")
        head.headerFields[.contentLength] = String(body.readableBytes)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

private extension Double {
    /// 30 → "30", 2.5 → "2.5".
    var secondsText: String {
        self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self)
    }
}
