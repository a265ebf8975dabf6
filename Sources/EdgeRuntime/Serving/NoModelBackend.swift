import AdapterCache

/// The backend of a daemon that has no model to serve (none configured, or the file is missing or
/// unreadable). The daemon stays up — systemd keeps it, /healthz answers, `edgectl status` explains
/// — and every inference or adapter request gets a 503 whose message says how to fix it.
public struct NoModelBackend: GenerationBackend {
    public let noModelHint: String

    public init(hint: String) {
        noModelHint = hint
    }

    /// The standard hint for a daemon without a configured model or with a missing one.
    public static func hint(modelPath: String?) -> String {
        if let modelPath, !modelPath.isEmpty {
            return "no model at \(modelPath): import one with `edgectl model import SRC --out \(modelPath)` and restart the daemon"
        }
        return "no model is configured: import one with `edgectl model import SRC --out DIR`, set [model] path = \"DIR\" in the config and restart the daemon"
    }

    public var model: ModelInfo? { nil }

    private var unavailable: APIError { APIError.unavailable(noModelHint, code: "model_not_loaded") }

    public func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, Error> {
        throw unavailable
    }

    public func tokenize(_ text: String, addSpecial: Bool, parseSpecial: Bool) throws -> [Int32] { throw unavailable }
    public func detokenize(_ tokens: [Int32]) throws -> String { throw unavailable }
    public func tokenBytes(_ token: Int32) throws -> [UInt8] { throw unavailable }
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String { throw unavailable }
    public func status() async -> BackendStatus { BackendStatus() }
    public func listAdapters() async throws -> [AdapterInfo] { [] }

    public func pullAdapter(_ reference: AdapterReference) -> AsyncThrowingStream<AdapterPullProgress, Error> {
        AsyncThrowingStream { $0.finish(throwing: unavailable) }
    }

    public func evictAdapter(_ reference: AdapterReference) async throws { throw unavailable }
    public func pinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo { throw unavailable }
    public func unpinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo { throw unavailable }
}
