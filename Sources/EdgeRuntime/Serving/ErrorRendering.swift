import Hummingbird
import NIOCore

/// Any error → an OpenAI-style error response: `{"error": {"message", "type", "code", "param"}}`.
enum ErrorRendering {
    static func apiError(for error: any Error, method: String, path: String) -> any HTTPStatusError {
        if let e = error as? any HTTPStatusError { return e }
        if let e = error as? HTTPError {
            switch e.status.code {
            case 404:
                return APIError.notFound("no route for \(method) \(path): see DESIGN.md §4 for the endpoints (e.g. POST /v1/chat/completions)", code: "unknown_route")
            case 405:
                return APIError(status: 405, type: "invalid_request_error", code: "method_not_allowed", message: "\(method) is not allowed on \(path)")
            case 413:
                return APIError.tooLarge("the request body is larger than the server accepts ([server] max_body_bytes)")
            default:
                return APIError(status: Int(e.status.code), type: e.status.code >= 500 ? "server_error" : "invalid_request_error", code: nil, message: e.body ?? e.status.reasonPhrase)
            }
        }
        if error is CancellationError {
            return APIError.unavailable("the request was cancelled (the daemon is shutting down)", code: "cancelled")
        }
        return APIError.internalError("internal error: \(error)")
    }

    static func body(_ e: any HTTPStatusError) -> JSONValue {
        .object([("error", .object([
            ("message", .string(e.message)), ("type", .string(e.errorType)),
            ("code", .from(e.errorCode)), ("param", .from(e.param)),
        ]))])
    }

    static func response(_ e: any HTTPStatusError) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let r = e.retryAfter { headers[.retryAfter] = String(r) }
        var buffer = ByteBuffer()
        buffer.writeString(body(e).serialized)
        buffer.writeString("\n")
        return Response(status: HTTPResponse.Status(code: e.status), headers: headers, body: .init(byteBuffer: buffer))
    }
}
