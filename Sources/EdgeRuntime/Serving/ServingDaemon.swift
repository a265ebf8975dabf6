import Foundation
import Logging
import NIOPosix
import ServiceLifecycle
import UnixSignals

/// The daemon's composition: configuration, socket (inherited or bound), backends, HTTP server,
/// SIGHUP reload, systemd notifications and watchdog, SIGTERM drain.
public enum ServingDaemon {
    public static let version = "0.1.0"

    /// Exit codes of edge-runtimed.
    public enum ExitCode: Int32 {
        case ok = 0
        case failure = 1
        /// Bad configuration (sysexits EX_CONFIG): systemd's RestartPreventExitStatus can stop loops.
        case config = 78
    }

    public struct Options: Sendable {
        public var configPath: String?
        public var socket: String?
        public var model: String?

        public init(configPath: String? = nil, socket: String? = nil, model: String? = nil) {
            self.configPath = configPath
            self.socket = socket
            self.model = model
        }
    }

    /// The configuration the options select: `--config` (must exist) or the default path (may be
    /// missing), then `--socket` / `--model` on top.
    public static func configuration(_ options: Options) throws(DaemonError) -> DaemonConfiguration {
        var config = try DaemonConfiguration.load(path: options.configPath ?? RuntimePaths.systemConfig, mustExist: options.configPath != nil)
        if let s = options.socket { config.server.socket = s }
        if let m = options.model { config.model.path = m }
        return config
    }

    public static func socketPath(_ config: DaemonConfiguration) -> String {
        RuntimePaths.socketPath(explicit: config.server.socket.isEmpty ? nil : config.server.socket)
    }

    public typealias BackendFactory = @Sendable (DaemonConfiguration, Logger) async -> any GenerationBackend
    public typealias FineTuningFactory = @Sendable (DaemonConfiguration, any GenerationBackend, Logger) async -> (any FineTuningBackend)?

    /// Runs until SIGTERM/SIGINT (graceful drain) and returns the process exit code.
    public static func run(
        options: Options, config initial: DaemonConfiguration, logger: Logger,
        makeBackend: BackendFactory = { c, l in await DefaultBackendFactory.makeBackend(c, logger: l) },
        makeFineTuning: @escaping FineTuningFactory = { c, b, l in await DefaultBackendFactory.makeFineTuning(c, backend: b, logger: l) }
    ) async -> ExitCode {
        let started = ContinuousClock.now
        let notifier = SystemdNotifier()
        if let problem = unwritableDirectory(initial) {
            logger.critical("\(problem)")
            notifier.notify("STATUS=failed: \(problem)\nERRNO=30")
            return .failure
        }
        // Before the event loops, the engine and the kernels' pool start: their threads inherit it.
        let unset = initial.model.cpuScheduling.apply()
        if let first = unset.first {
            logger.warning("[model] cpu_scheduling = \"\(initial.model.cpuScheduling.rawValue)\" could not be set on \(unset.count) thread(s): \(String(cString: strerror(first.errno)))")
        }
        let socket: ListeningSocket
        do {
            if let inherited = try ListeningSocket.fromSystemd() {
                socket = inherited
            } else {
                socket = try ListeningSocket.bind(path: socketPath(initial), mode: initial.server.socketMode, group: initial.server.socketGroup, logger: logger)
            }
        } catch {
            logger.critical("\(error)")
            notifier.notify("STATUS=failed: \(error)\nERRNO=1")
            return .failure
        }

        let backend = await makeBackend(initial, logger)
        let state = ServingState(backend: backend, fineTuning: nil, settings: .init(initial), fineTuningPending: true)
        let (listening, listeningGate) = AsyncStream<Void>.makeStream()
        let server = SocketHTTPServer(
            socket: socket, state: state, logger: logger,
            drainTimeout: .milliseconds(Int64(initial.server.shutdownGrace * 1000)),
            idleTimeout: .milliseconds(Int64(initial.server.idleTimeout * 1000)),
            requestReadTimeout: .milliseconds(Int64(initial.server.requestReadTimeout * 1000)),
            onListening: {
                let status = await backend.status()
                let line = SystemdNotifier.statusLine(model: backend.model, hint: backend.noModelHint, status: status, draining: false)
                notifier.ready(status: line)
                let startup = ContinuousClock.now - started
                logger.notice("ready in \(Int(startup.seconds * 1000)) ms: \(line)", metadata: ["socket.path": "\(socket.path)", "model.path": "\(initial.model.path)"])
                listeningGate.finish()
            },
            onShutdownStart: {
                notifier.stopping(status: "draining; \(state.metrics.requestsInFlight) request(s) in flight")
            })
        let reload = ReloadService(options: options, state: state, current: initial, notifier: notifier, logger: logger)

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let engineService = backend as? any Service {
            services.append(.init(service: engineService))
        }
        // Built after READY; stopped with the group, so a running job pauses with a checkpoint
        // before exit. Its own end (no fine-tuning here) does not end the daemon.
        services.append(.init(service: DeferredFineTuningService(listening: listening) {
            let fineTuning = await makeFineTuning(initial, backend, logger)
            state.settleFineTuning(fineTuning)
            return fineTuning
        }))
        services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup))
        services.append(.init(service: reload))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))

        let watchdog = Task { await watchdogLoop(notifier: notifier, state: state) }
        defer { watchdog.cancel() }
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error: \(error)")
            return .failure
        }
        logger.notice("stopped")
        return .ok
    }

    /// WATCHDOG=1 every half WATCHDOG_USEC, and STATUS= whenever the line changes (checked at
    /// least every 2 s).
    static func watchdogLoop(notifier: SystemdNotifier, state: ServingState) async {
        let interval = min(notifier.watchdogInterval ?? .seconds(2), .seconds(2))
        let pings = notifier.watchdogInterval != nil
        var last = ""
        while !Task.isCancelled {
            if pings { notifier.watchdog() }
            let status = await state.backend.status()
            let line = SystemdNotifier.statusLine(model: state.backend.model, hint: state.backend.noModelHint, status: status, draining: state.isDraining)
            if line != last {
                notifier.status(line)
                last = line
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// SIGHUP: RELOADING=1, re-read the config, apply what can change live (auth lists, body limits,
/// request timeout), keep the old config on any error, READY=1.
struct ReloadService: Service {
    let options: ServingDaemon.Options
    let state: ServingState
    let current: DaemonConfiguration
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        var config = current
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            notifier.reloading()
            do {
                let fresh = try ServingDaemon.configuration(options)
                state.update(.init(fresh))
                var restartNeeded: [String] = []
                if fresh.model != config.model { restartNeeded.append("[model]") }
                if fresh.scheduler != config.scheduler { restartNeeded.append("[scheduler]") }
                if fresh.adapters != config.adapters { restartNeeded.append("[adapters]") }
                if fresh.server.socket != config.server.socket || fresh.server.socketMode != config.server.socketMode || fresh.server.socketGroup != config.server.socketGroup { restartNeeded.append("[server] socket*") }
                if fresh.logging != config.logging { restartNeeded.append("[logging]") }
                config = fresh
                if restartNeeded.isEmpty {
                    logger.notice("configuration reloaded")
                } else {
                    logger.warning("configuration reloaded; changes to \(restartNeeded.joined(separator: ", ")) take effect after a restart")
                }
            } catch {
                logger.error("configuration reload failed, keeping the running configuration: \(error)")
            }
            let status = await state.backend.status()
            notifier.ready(status: SystemdNotifier.statusLine(model: state.backend.model, hint: state.backend.noModelHint, status: status, draining: state.isDraining))
        }
    }
}

extension ServingDaemon {
    /// With a model to serve, the daemon writes the state directory (fine-tuning jobs, trained
    /// adapters) and the adapter cache. One it cannot write (read-only mount, wrong owner) is an
    /// error at start naming the path, instead of a failure at the first pull or checkpoint.
    static func unwritableDirectory(_ config: DaemonConfiguration) -> String? {
        guard !config.model.path.isEmpty else { return nil }
        let state = config.finetune.stateDir.isEmpty ? FineTuningJobManager.stateDirectory() : config.finetune.stateDir
        for (what, dir, fix) in [("state directory", state, "[finetune] state_dir or EDGE_STATE_DIR"),
                                 ("adapter cache directory", config.adapters.cacheDir, "[adapters] cache_dir")] {
            do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
                return "the \(what) \(dir) cannot be created (\(error.localizedDescription)): fix the mount or permissions, or set \(fix)"
            }
            let probe = dir + "/.edge-write-test-\(getpid())"
            let fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard fd >= 0 else {
                return "the \(what) \(dir) is not writable (\(String(cString: strerror(errno)))): fix the mount or permissions, or set \(fix)"
            }
            close(fd)
            unlink(probe)
        }
        return nil
    }
}

/// Creates the fine-tuning backend once the daemon is listening (after READY=1) and then runs it as
/// a service when it is one: its set-up maps the model again for training, which must not delay
/// start-up. Until it is installed the fine-tuning routes answer 503.
struct DeferredFineTuningService: Service {
    let listening: AsyncStream<Void>
    let make: @Sendable () async -> (any FineTuningBackend)?

    func run() async throws {
        for await _ in listening.cancelOnGracefulShutdown() {}
        if !Task.isCancelled, !Task.isShuttingDownGracefully, let backend = await make(), let service = backend as? any Service {
            try await service.run()
            return
        }
        // Nothing to run: stay until the group shuts down (a service ending early ends the group).
        try? await gracefulShutdown()
    }
}
