import AdapterCache
import ServiceLifecycle
import Foundation
import Logging

extension FineTuningJobManager {
    /// Registers the job manager with the daemon's backend factory: it trains on the served model
    /// (`[model] path`), yields to the engine's scheduler, publishes into the engine's adapter cache,
    /// and keeps its jobs in `stateDirectory()`.
    public static func register() {
        DefaultBackendFactory.fineTuning = { config, backend, logger in
            guard let engine = backend as? EngineBackend else { return nil }
            var settings = Settings()
            settings.policy = try policy(config.finetune)
            let startedAt = DispatchTime.now().uptimeNanoseconds
            let scheduler = engine.scheduler
            let cache = engine.adapters
            let env = FineTuningEnvironment(
                inferenceBusy: { scheduler.activity().busy },
                secondsSinceLastRequest: {
                    let last = scheduler.activity().lastSubmitUptimeNanos
                    return Double(DispatchTime.now().uptimeNanoseconds - max(last, startedAt)) / 1e9
                },
                publish: { path, name, version in
                    _ = try await cache.importArtifact(path: path, local: true, name: try AdapterName(name), version: try AdapterName(version))
                },
                baseDigest: engine.model?.baseDigest)
            let manager = try FineTuningJobManager(stateDirectory: stateDirectory(), modelDirectory: engine.directory,
                                                   environment: env, settings: settings, logger: logger)
            await manager.start()
            return manager
        }
    }

    /// The daemon's `[finetune]` section as an idle policy.
    public static func policy(_ f: DaemonConfiguration.FineTune) throws -> IdlePolicy {
        var p = IdlePolicy()
        p.idleAfter = f.idleAfter
        if !f.window.isEmpty { try p.setWindow(f.window) }
        p.requireACPower = f.onACPower
        p.maxLoadPerCore = f.maxLoad
        return p
    }

    /// Where jobs and locally trained adapters live: `$EDGE_STATE_DIR`, else /var/lib/edge-runtime
    /// for root, else `$XDG_STATE_HOME/edge-runtime` (default ~/.local/state/edge-runtime).
    public static func stateDirectory(environment: [String: String] = ProcessInfo.processInfo.environment,
                                      isRoot: Bool = getuid() == 0) -> String {
        if let s = environment["EDGE_STATE_DIR"], !s.isEmpty { return s }
        if isRoot { return RuntimePaths.systemState }
        if let x = environment["XDG_STATE_HOME"], !x.isEmpty { return x + "/edge-runtime" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.local/state/edge-runtime"
    }
}

/// In the daemon's service group: schedules until the graceful shutdown, then pauses a running
/// job with a checkpoint (a SIGKILL instead loses at most the steps since the last checkpoint).
extension FineTuningJobManager: Service {
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
