import EdgeRuntime
import Foundation
import Logging
import ServiceLifecycle
import XCTest

/// Starts the socket API in-process on a temporary socket with a given backend, the way the daemon
/// composes it (ListeningSocket → SocketHTTPServer in a ServiceGroup).
final class ServingTestServer: @unchecked Sendable {
    let directory: String
    let socketPath: String
    let state: ServingState
    let client: DaemonClient
    private let group: ServiceGroup
    private let task: Task<Void, Error>

    init(backend: any GenerationBackend, fineTuning: (any FineTuningBackend)? = nil, configure: (inout DaemonConfiguration) -> Void = { _ in }) throws {
        directory = try Self.makeTemporaryDirectory()
        socketPath = directory + "/edge.sock"
        var config = DaemonConfiguration()
        config.server.socket = socketPath
        config.auth.inferenceGIDs = []
        config.auth.manageGIDs = []
        configure(&config)
        var logger = Logger(label: "serving-test")
        logger.logLevel = .critical
        let socket = try ListeningSocket.bind(path: socketPath, mode: config.server.socketMode, group: "", logger: logger)
        state = ServingState(backend: backend, fineTuning: fineTuning, settings: .init(config))
        let server = SocketHTTPServer(socket: socket, state: state, logger: logger, drainTimeout: .seconds(2))
        group = ServiceGroup(configuration: .init(services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)], logger: logger))
        let g = group
        task = Task { try await g.run() }
        client = DaemonClient(socketPath: socketPath)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
        try? FileManager.default.removeItem(atPath: directory)
    }

    static func makeTemporaryDirectory() throws -> String {
        // Short paths: sun_path holds 108 bytes.
        var template = Array("/tmp/edge-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw POSIXError(.EIO) }
        return String(cString: p)
    }
}

/// Runs blocking client calls off the cooperative pool (the server's tasks share it).
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        Thread.detachNewThread { c.resume(with: Result { try body() }) }
    }
}

extension DaemonClient {
    func post(_ path: String, _ json: JSONValue) async throws -> Response {
        try await offPool { try self.request("POST", path, json: json) }
    }

    func get(_ path: String) async throws -> Response {
        try await offPool { try self.request("GET", path) }
    }

    /// SSE `data:` payloads of a streamed request, in order.
    func events(_ path: String, _ json: JSONValue) async throws -> (Response, [String]) {
        try await offPool {
            var lines: [String] = []
            let r = try self.stream("POST", path, json: json) { line in
                if line.hasPrefix("data: ") { lines.append(String(line.dropFirst(6))) }
            }
            return (r, lines)
        }
    }
}

/// Waits (polling) until `condition` holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(5), _ condition: @escaping () -> Bool) async -> Bool {
    let end = ContinuousClock.now + timeout
    while ContinuousClock.now < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}
