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
            let settings = try Self.settings(config.finetune)
            let state = config.finetune.stateDir.isEmpty ? stateDirectory() : config.finetune.stateDir
            try validateStateDirectory(state, configured: !config.finetune.stateDir.isEmpty)
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
                baseDigest: engine.model?.baseDigest,
                makeCurrent: { name, version in
                    try await cache.setCurrentVersion(name: try AdapterName(name), version: try AdapterName(version))
                })
            let manager = try FineTuningJobManager(stateDirectory: state, modelDirectory: engine.directory,
                                                   environment: env, settings: settings, logger: logger)
            await manager.start()
            return manager
        }
    }

    /// The daemon's `[finetune]` section as manager settings: idle policy, checkpoint interval, gate.
    public static func settings(_ f: DaemonConfiguration.FineTune) throws -> Settings {
        var s = Settings()
        s.policy = try policy(f)
        s.checkpointEvery = f.checkpointEvery
        s.gate = EvalGate(relativeMargin: f.evalMargin, answerMetric: AnswerMetric(rawValue: f.evalAnswers), minimumAnswerRate: f.minAnswerRate)
        return s
    }

    /// Fails start-up with a message naming the config key (or the environment) when the state
    /// directory cannot hold jobs: not creatable, not a directory, or not writable by the daemon.
    public static func validateStateDirectory(_ path: String, configured: Bool) throws {
        let source = configured ? "[finetune] state_dir" : "the default state directory (set [finetune] state_dir or EDGE_STATE_DIR)"
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw FineTuningError.io(path: path, reason: "\(source) names a file, not a directory") }
        } else {
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw FineTuningError.io(path: path, reason: "\(source) cannot be created: \(error.localizedDescription)")
            }
        }
        guard access(path, W_OK | X_OK) == 0 else {
            throw FineTuningError.io(path: path, reason: "\(source) is not writable by uid \(getuid())")
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
