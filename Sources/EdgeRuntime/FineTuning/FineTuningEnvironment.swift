import Foundation

/// What the job manager needs from the rest of the daemon, as closures so tests can drive it
/// without an engine: whether inference is busy, how long since the last request, and how to
/// register a promoted adapter artifact in the adapter cache.
public struct FineTuningEnvironment: Sendable {
    /// true while any inference request is running or queued — training yields at the next step.
    public var inferenceBusy: @Sendable () -> Bool
    /// Seconds since the last inference request was submitted (since start-up if none yet).
    public var secondsSinceLastRequest: @Sendable () -> Double
    /// Registers a packed artifact (path, adapter name, version) as a local, never-evicted adapter.
    public var publish: @Sendable (String, String, String) async throws -> Void
    /// Makes VERSION the one a bare NAME resolves to for inference (adapter name, version) — a
    /// rollback. nil: the daemon has no adapter cache to switch, and rollback only moves the
    /// manager's own pointer.
    public var makeCurrent: (@Sendable (String, String) async throws -> Void)?
    /// sha256 identity of the base model the adapters are tied to (64 hex digits), if known.
    public var baseDigest: String?

    public init(inferenceBusy: @escaping @Sendable () -> Bool, secondsSinceLastRequest: @escaping @Sendable () -> Double,
                publish: @escaping @Sendable (String, String, String) async throws -> Void, baseDigest: String?,
                makeCurrent: (@Sendable (String, String) async throws -> Void)? = nil) {
        self.makeCurrent = makeCurrent
        self.inferenceBusy = inferenceBusy
        self.secondsSinceLastRequest = secondsSinceLastRequest
        self.publish = publish
        self.baseDigest = baseDigest
    }
}
