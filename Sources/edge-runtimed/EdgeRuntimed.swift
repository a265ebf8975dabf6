import ArgumentParser
import EdgeRuntime
import Foundation
import Logging

/// The daemon executable: parses flags, reads the config, sets up logging, runs ServingDaemon.
@main
struct EdgeRuntimed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge-runtimed",
        abstract: "Serve the NF4 base model and its LoRA adapters over a Unix socket (OpenAI-compatible HTTP).",
        discussion: """
            Reads \(RuntimePaths.systemConfig) (all defaults when it is missing), takes its socket from \
            systemd (socket activation) or binds it itself, and runs until SIGTERM, draining running \
            requests first. SIGHUP reloads the configuration.

            Exit codes: 0 stopped cleanly; 1 could not start (socket, systemd); 78 bad configuration.
            """,
        version: ServingDaemon.version
    )

    @Option(name: .long, help: "Configuration file (default: \(RuntimePaths.systemConfig); must exist when given).")
    var config: String?

    @Option(name: .long, help: "Socket path (overrides [server] socket; default: \(RuntimePaths.systemSocket), or $XDG_RUNTIME_DIR/edge-runtime/edge.sock for a user).")
    var socket: String?

    @Option(name: .long, help: "Model directory (overrides [model] path).")
    var model: String?

    @Flag(name: .long, help: "Validate the configuration, print the effective socket and model paths, and exit.")
    var checkConfig = false

    func run() async throws {
        // Link the inference engine into the daemon (DefaultBackendFactory.engine).
        EngineBackend.register()
        // And the idle-time fine-tuning job manager (DefaultBackendFactory.fineTuning).
        FineTuningJobManager.register()
        let options = ServingDaemon.Options(configPath: config, socket: socket, model: model)
        let configuration: DaemonConfiguration
        do {
            configuration = try ServingDaemon.configuration(options)
        } catch {
            FileHandle.standardError.write(Data("edge-runtimed: \(error)\n".utf8))
            throw ExitCode(ServingDaemon.ExitCode.config.rawValue)
        }
        if checkConfig {
            print("configuration OK (\(configuration.sourcePath.isEmpty ? "defaults" : configuration.sourcePath))")
            print("socket: \(ServingDaemon.socketPath(configuration))")
            print("model:  \(configuration.model.path)")
            return
        }
        let level = Logger.Level(rawValue: configuration.logging.level) ?? .info
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, level: level) }
        let logger = Logger(label: "edge-runtimed")
        let code = await ServingDaemon.run(options: options, config: configuration, logger: logger)
        if code != .ok { throw ExitCode(code.rawValue) }
    }
}
