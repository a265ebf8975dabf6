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
    /// Installed once after READY (building it loads the model a second time for training, which
    /// must not delay start-up); nil until then, or when fine-tuning is unavailable.
    public var fineTuning: (any FineTuningBackend)? { fineTuningBox.withLockedValue { $0 } }
    private let fineTuningBox: NIOLockedValueBox<(any FineTuningBackend)?>
    /// False while the daemon is still building the fine-tuning backend.
    private let fineTuningSettled: NIOLockedValueBox<Bool>
    public let metrics: ServingMetrics
    public let startedAt: ContinuousClock.Instant
    private let settingsBox: NIOLockedValueBox<Settings>
    private let draining = NIOLockedValueBox(false)

    /// `fineTuningPending`: the fine-tuning backend is still being built (`settleFineTuning` follows).
    public init(backend: any GenerationBackend, fineTuning: (any FineTuningBackend)?, settings: Settings, metrics: ServingMetrics = ServingMetrics(),
                fineTuningPending: Bool = false) {
        self.backend = backend
        self.fineTuningBox = NIOLockedValueBox(fineTuning)
        self.fineTuningSettled = NIOLockedValueBox(!fineTuningPending)
        self.metrics = metrics
        self.startedAt = .now
        self.settingsBox = NIOLockedValueBox(settings)
    }

    public var settings: Settings { settingsBox.withLockedValue { $0 } }

    /// Publishes the fine-tuning backend (nil: none in this daemon) and releases waiting requests.
    public func settleFineTuning(_ backend: (any FineTuningBackend)?) {
        fineTuningBox.withLockedValue { $0 = backend }
        fineTuningSettled.withLockedValue { $0 = true }
    }

    /// The fine-tuning backend, waiting (up to 60 s) while it is still being built right after start.
    public func settledFineTuning() async -> (any FineTuningBackend)? {
        let end = ContinuousClock.now + .seconds(60)
        while !fineTuningSettled.withLockedValue({ $0 }) && ContinuousClock.now < end {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return fineTuning
    }

    public func update(_ settings: Settings) { settingsBox.withLockedValue { $0 = settings } }

    /// Set when SIGTERM arrives: new inference requests get 503 while running ones finish.
    public var isDraining: Bool { draining.withLockedValue { $0 } }
    public func startDraining() { draining.withLockedValue { $0 = true } }
}
