import Foundation
import Logging

/// How `edge-runtimed` makes its backends from the configuration. This is the one place the
/// inference engine plugs into the daemon: it maps the model at `config.model.path` and returns
/// its `GenerationBackend`. Without a model directory the daemon serves `NoModelBackend` (it stays
/// up and answers inference with 503 and a hint).
public enum DefaultBackendFactory {
    /// The inference engine's constructor, registered by the engine module at start-up
    /// (`DefaultBackendFactory.engine = { config, logger in try EngineBackend(config, logger) }`).
    /// nil while this build has no engine linked.
    nonisolated(unsafe) public static var engine: (@Sendable (DaemonConfiguration, Logger) async throws -> any GenerationBackend)?

    /// The fine-tuning backend's constructor, registered likewise by the trainer.
    nonisolated(unsafe) public static var fineTuning: (@Sendable (DaemonConfiguration, any GenerationBackend, Logger) async throws -> (any FineTuningBackend)?)?

    public static func makeBackend(_ config: DaemonConfiguration, logger: Logger) async -> any GenerationBackend {
        let path = config.model.path
        var isDir: ObjCBool = false
        guard !path.isEmpty, FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            let hint = NoModelBackend.hint(modelPath: path.isEmpty ? nil : path)
            logger.warning("starting without a model: \(hint)")
            return NoModelBackend(hint: hint)
        }
        guard let engine else {
            let hint = "the model at \(path) cannot be served: this build of edge-runtimed has no inference engine linked"
            logger.error("\(hint)")
            return NoModelBackend(hint: hint)
        }
        do {
            return try await engine(config, logger)
        } catch {
            let hint = "the model at \(path) failed to load (\(error)): re-import it with `edgectl model import SRC --out \(path)` and restart the daemon"
            logger.error("\(hint)")
            return NoModelBackend(hint: hint)
        }
    }

    public static func makeFineTuning(_ config: DaemonConfiguration, backend: any GenerationBackend, logger: Logger) async -> (any FineTuningBackend)? {
        guard let fineTuning, backend.model != nil else { return nil }
        do {
            return try await fineTuning(config, backend, logger)
        } catch {
            logger.error("fine-tuning is unavailable: \(error)")
            return nil
        }
    }
}
