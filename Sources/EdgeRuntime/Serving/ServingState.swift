import Logging
import NIOConcurrencyHelpers

/// What the HTTP layer shares across requests: the backends, metrics, and the reloadable part of
/// the configuration. Concurrency contract: immutable references plus one lock-protected settings
/// value that SIGHUP replaces atomically; readers take a snapshot per request.
public final class ServingState: Sendable {
    /// The settings a SIGHUP reload may change without a restart.
    public struct Settings: Sendable, Equatable {
        public var policy: AccessPolicy
        public var maxBodyBytes: Int
        public var maxUploadBytes: Int
        public var requestTimeout: Double

        public init(_ config: DaemonConfiguration) {
            policy = AccessPolicy(config.auth)
            maxBodyBytes = config.server.maxBodyBytes
            maxUploadBytes = config.server.maxUploadBytes
            requestTimeout = config.server.requestTimeout
        }
    }

    public let backend: any GenerationBackend
    public let fineTuning: (any FineTuningBackend)?
    public let metrics: ServingMetrics
    public let startedAt: ContinuousClock.Instant
    private let settingsBox: NIOLockedValueBox<Settings>
    private let draining = NIOLockedValueBox(false)

    public init(backend: any GenerationBackend, fineTuning: (any FineTuningBackend)?, settings: Settings, metrics: ServingMetrics = ServingMetrics()) {
        self.backend = backend
        self.fineTuning = fineTuning
        self.metrics = metrics
        self.startedAt = .now
        self.settingsBox = NIOLockedValueBox(settings)
    }

    public var settings: Settings { settingsBox.withLockedValue { $0 } }

    public func update(_ settings: Settings) { settingsBox.withLockedValue { $0 = settings } }

    /// Set when SIGTERM arrives: new inference requests get 503 while running ones finish.
    public var isDraining: Bool { draining.withLockedValue { $0 } }
    public func startDraining() { draining.withLockedValue { $0 = true } }
}
