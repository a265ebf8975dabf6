import Hummingbird
import NIOCore
import NIOHTTP1
import NIOHTTPTypes

/// Answers a request the HTTP/1 parser rejects (header floods, oversized header fields, garbage)
/// with the API's JSON error shape instead of Hummingbird's empty 400, then closes the connection.
///
/// Sits after the HTTP decoder; the parser error arrives through `errorCaught`. It is consumed
/// here (not forwarded), so the request loop sees the channel close rather than an error, and
/// only this handler answers. Once the parser failed, the connection's byte stream has no usable
/// request boundaries left, so closing is the only safe continuation.
final class HTTPParseErrorResponder: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    /// Header limits the decoder is configured with, so messages can name them.
    let limits: HTTPHeaderLimits

    init(limits: HTTPHeaderLimits) { self.limits = limits }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parse = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        let apiError = Self.apiError(for: parse, limits: limits)
        let response = ErrorRendering.response(apiError)
        var head = HTTPResponse(status: response.status)
        head.headerFields = response.headers
        head.headerFields[.connection] = "close"
        var body = context.channel.allocator.buffer(capacity: 256)
        body.writeString(ErrorRendering.body(apiError).serialized)
        body.writeString("\n")
        head.headerFields[.contentLength] = String(body.readableBytes)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    static func apiError(for error: HTTPParserError, limits: HTTPHeaderLimits) -> APIError {
        switch error {
        case .headerOverflow:
            return APIError(
                status: 431, type: "invalid_request_error", code: "headers_too_large",
                message: "the request headers are too large or too many (at most \(limits.maxFieldCount) fields, \(limits.maxFieldSize) bytes per field, \(limits.maxListSize) bytes in all)")
        default:
            return .badRequest("the request is not valid HTTP/1.1 (\(error)); the connection is closed", code: "malformed_http")
        }
    }
}

/// Bounds on request headers; a client over them gets 431 and its connection closed.
struct HTTPHeaderLimits: Sendable {
    var maxFieldSize = 16 * 1024
    var maxListSize = 64 * 1024
    var maxFieldCount = 128
}
