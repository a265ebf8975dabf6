/// An error that knows how the socket API reports it. The engine, the adapter cache, the
/// fine-tuning backend and the HTTP layer all throw these; the server turns any of them into
/// OpenAI-style JSON, `{"error": {"message", "type", "code", "param"}}`, with `status`. Any other
/// error becomes a 500 whose message is the error's description.
public protocol HTTPStatusError: Error, Sendable {
    /// 400, 403, 404, 409, 413, 429, 500, 503, 504.
    var status: Int { get }
    /// OpenAI's `type`: "invalid_request_error", "permission_error", "not_found_error",
    /// "rate_limit_error", "server_error", "service_unavailable"…
    var errorType: String { get }
    /// A stable machine-readable code ("queue_full", "model_not_loaded", "adapter_not_found"…).
    var errorCode: String? { get }
    /// The request field at fault, if any ("messages", "max_tokens", "model"…).
    var param: String? { get }
    /// One sentence (or two) that tells the user what went wrong and what to do.
    var message: String { get }
    /// Seconds for the `Retry-After` header (429 and 503).
    var retryAfter: Int? { get }
}

/// The ready-made `HTTPStatusError`; use the constructors so statuses and types stay consistent.
public struct APIError: HTTPStatusError, Equatable, CustomStringConvertible {
    public var status: Int
    public var errorType: String
    public var errorCode: String?
    public var param: String?
    public var message: String
    public var retryAfter: Int?

    public init(status: Int, type: String, code: String?, message: String, param: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.errorType = type
        self.errorCode = code
        self.param = param
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { message }

    public static func badRequest(_ message: String, param: String? = nil, code: String? = "invalid_request") -> APIError {
        APIError(status: 400, type: "invalid_request_error", code: code, message: message, param: param)
    }

    public static func forbidden(_ message: String) -> APIError {
        APIError(status: 403, type: "permission_error", code: "forbidden", message: message)
    }

    public static func notFound(_ message: String, code: String = "not_found", param: String? = nil) -> APIError {
        APIError(status: 404, type: "not_found_error", code: code, message: message, param: param)
    }

    public static func adapterNotFound(_ reference: String) -> APIError {
        APIError(
            status: 404, type: "not_found_error", code: "adapter_not_found",
            message: "adapter '\(reference)' is not in the cache or the adapter store: check the name with `edgectl adapter list`",
            param: "model")
    }

    public static func conflict(_ message: String, code: String = "conflict") -> APIError {
        APIError(status: 409, type: "invalid_request_error", code: code, message: message)
    }

    public static func tooLarge(_ message: String) -> APIError {
        APIError(status: 413, type: "invalid_request_error", code: "request_too_large", message: message)
    }

    /// Admission refused because the queue or the KV budget is full.
    public static func queueFull(retryAfter seconds: Int, _ message: String = "the server is at capacity (request queue full): retry later") -> APIError {
        APIError(status: 429, type: "rate_limit_error", code: "queue_full", message: message, retryAfter: max(1, seconds))
    }

    public static func unavailable(_ message: String, code: String = "not_ready", retryAfter: Int? = nil) -> APIError {
        APIError(status: 503, type: "service_unavailable", code: code, message: message, retryAfter: retryAfter)
    }

    public static func internalError(_ message: String) -> APIError {
        APIError(status: 500, type: "server_error", code: "internal_error", message: message)
    }

    public static func timeout(_ message: String) -> APIError {
        APIError(status: 504, type: "server_error", code: "timeout", message: message)
    }
}
