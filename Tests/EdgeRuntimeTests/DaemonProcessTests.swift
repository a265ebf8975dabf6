import EdgeRuntime
import Foundation
import NIOConcurrencyHelpers
import XCTest

/// The real `edge-runtimed` binary under systemd's protocols: a fake NOTIFY_SOCKET, WATCHDOG_USEC,
/// socket activation through `systemd-socket-activate`, SIGTERM. The binary has no test backend,
/// so it runs without a model — which is itself a behaviour to check (up, 503 with a hint).
final class DaemonProcessTests: XCTestCase {
    static var binary: String {
        var products = Bundle(for: DaemonProcessTests.self).bundleURL
        if products.pathExtension == "xctest" { products.deleteLastPathComponent() }
        return products.appendingPathComponent("edge-runtimed").path
    }

    /// A config that lets the test's own uid in (the daemon's default already does) and keeps
    /// the drain short.
    func writeConfig(_ dir: String) throws -> String {
        let path = dir + "/config.toml"
        try """
            [server]
            shutdown_grace = 2
            socket_group = ""
            [logging]
            level = "debug"
            """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testNotifyReadyStatusWatchdogStoppingAndCleanExit() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: dir + "/notify")
        let socketPath = dir + "/run/edge.sock"
        let daemon = try DaemonProcess(
            Self.binary, ["--config", try writeConfig(dir), "--socket", socketPath, "--model", dir + "/no-model"],
            environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"])
        defer { daemon.kill() }

        let ready = try XCTUnwrap(notify.wait(for: "READY=1", timeout: 20), "no READY=1; stderr: \(daemon.stderr)")
        XCTAssertTrue(ready.contains("STATUS=no model"), ready)
        // [model] cpu_scheduling defaults to batch: every thread, those made before the setting and after.
        let pid = daemon.process.processIdentifier
        let tids = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").compactMap { Int32($0) }
        XCTAssertGreaterThan(tids.count, 2)
        for tid in tids {
            XCTAssertEqual(CPUScheduling.policy(pid: pid, tid: tid), CPUScheduling.batch.policy, "thread \(tid) is not SCHED_BATCH")
        }
        XCTAssertTrue(ready.contains("edgectl model import"), ready)
        XCTAssertNotNil(notify.wait(for: "WATCHDOG=1", timeout: 5), "no WATCHDOG=1 at half of WATCHDOG_USEC")

        var st = stat()
        XCTAssertEqual(lstat(socketPath, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660, "the daemon binds its socket 0660")

        let client = DaemonClient(socketPath: socketPath)
        let health = try await offPool { try client.request("GET", "/healthz") }
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.json?["status"], "no_model")
        let completion = try await client.post("/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]])
        XCTAssertEqual(completion.status, 503)
        XCTAssertTrue(completion.errorMessage.contains("edgectl model import"), completion.errorMessage)

        daemon.signal(SIGTERM)
        XCTAssertNotNil(notify.wait(for: "STOPPING=1", timeout: 10), "no STOPPING=1 after SIGTERM")
        let status = daemon.waitForExit(timeout: 15)
        XCTAssertEqual(status, 0, "SIGTERM must end in exit 0; stderr: \(daemon.stderr)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socketPath), "a self-bound socket is removed on exit")
        XCTAssertTrue(daemon.stderr.contains("request.id="), "log lines carry dotted metadata: \(daemon.stderr)")
    }

    func testJournalPrioritiesWhenJournalStreamIsSet() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: dir + "/notify")
        let daemon = try DaemonProcess(
            Self.binary, ["--config", try writeConfig(dir), "--socket", dir + "/edge.sock", "--model", dir + "/none"],
            environment: ["NOTIFY_SOCKET": notify.path, "JOURNAL_STREAM": "8:12345"])
        defer { daemon.kill() }
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 20), daemon.stderr)
        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeout: 15), 0)
        let lines = daemon.stderr.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.hasPrefix("<4>") && $0.contains("starting without a model") }, daemon.stderr)
        XCTAssertTrue(lines.contains { $0.hasPrefix("<5>") && $0.contains("ready in") }, daemon.stderr)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("<") }, "every line has a priority prefix")
    }

    func testSocketActivationAdoptsInheritedSocket() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: dir + "/notify")
        let socketPath = dir + "/activated.sock"
        let activator = try DaemonProcess(
            "/usr/bin/systemd-socket-activate",
            ["-l", socketPath, "-E", "NOTIFY_SOCKET=\(notify.path)", Self.binary, "--config", try writeConfig(dir), "--model", dir + "/none", "--socket", dir + "/not-used.sock"],
            environment: [:])
        defer { activator.kill() }
        // systemd-socket-activate binds first, then execs the daemon on the first connection.
        let bound = await eventually(timeout: .seconds(10)) { FileManager.default.fileExists(atPath: socketPath) }
        XCTAssertTrue(bound, activator.stderr)
        var before = stat()
        XCTAssertEqual(lstat(socketPath, &before), 0)

        let client = DaemonClient(socketPath: socketPath)
        let health = try await offPool { try client.request("GET", "/healthz") }
        XCTAssertEqual(health.status, 200, activator.stderr)
        XCTAssertEqual(health.json?["status"], "no_model")
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 10))
        let refused = try await client.post("/v1/completions", ["prompt": "hi"])
        XCTAssertEqual(refused.status, 503)

        var after = stat()
        XCTAssertEqual(lstat(socketPath, &after), 0)
        XCTAssertEqual(before.st_ino, after.st_ino, "the inherited socket is used, not re-created")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/not-used.sock"), "--socket is ignored when systemd passes one")
        XCTAssertTrue(activator.stderr.contains("socket.activated=true"), activator.stderr)

        activator.signal(SIGTERM)
        XCTAssertEqual(activator.waitForExit(timeout: 15), 0, activator.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: socketPath), "an inherited socket file belongs to systemd and stays")
    }

    func testBadConfigExitsWithConfigErrorNamingTheKey() throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/bad.toml"
        try "[scheduler]\nmax_queue = -1\n".write(toFile: config, atomically: true, encoding: .utf8)
        let p = try DaemonProcess(Self.binary, ["--config", config, "--socket", dir + "/s.sock"], environment: [:])
        XCTAssertEqual(p.waitForExit(timeout: 20), 78)
        XCTAssertTrue(p.stderr.contains("[scheduler] max_queue"), p.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/s.sock"))
    }
}

/// A bound Unix datagram socket standing in for systemd's NOTIFY_SOCKET.
final class NotifySocket {
    let path: String
    let fd: Int32
    private var received: [String] = []

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw POSIXError(.EADDRINUSE) }
    }

    deinit { close(fd) }

    /// The first message (already received or arriving within `timeout` seconds) containing `needle`.
    func wait(for needle: String, timeout: Double) -> String? {
        if let i = received.firstIndex(where: { $0.contains(needle) }) { return received.remove(at: i) }
        let end = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < end {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(max(1, end.timeIntervalSinceNow * 1000))) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            if message.contains(needle) { return message }
            received.append(message)
        }
        return nil
    }
}

/// A child process with its stderr collected in the background.
final class DaemonProcess: @unchecked Sendable {
    let process = Process()
    private let errBox = NIOLockedValueBox(Data())

    init(_ executable: String, _ arguments: [String], environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for k in ["NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "EDGE_SOCKET"] { env[k] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let box = errBox
        err.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if !d.isEmpty { box.withLockedValue { $0.append(d) } }
        }
        try process.run()
    }

    var stderr: String { String(decoding: errBox.withLockedValue { $0 }, as: UTF8.self) }

    func signal(_ s: Int32) { Glibc.kill(process.processIdentifier, s) }

    func kill() { if process.isRunning { signal(SIGKILL) } }

    func waitForExit(timeout: Double) -> Int32? {
        let end = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < end { usleep(20_000) }
        guard !process.isRunning else { return nil }
        usleep(50_000)
        return process.terminationStatus
    }
}

extension DaemonProcessTests {
    func testSighupReloadsAuthWithReloadingAndReady() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(path: dir + "/notify")
        let config = try writeConfig(dir)
        let socketPath = dir + "/edge.sock"
        let daemon = try DaemonProcess(Self.binary, ["--config", config, "--socket", socketPath, "--model", dir + "/none"], environment: ["NOTIFY_SOCKET": notify.path])
        defer { daemon.kill() }
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 20), daemon.stderr)
        let client = DaemonClient(socketPath: socketPath)
        let before = try await client.post("/v1/completions", ["prompt": "x"])
        XCTAssertEqual(before.status, 503, "allowed, but there is no model")

        try """
            [server]
            shutdown_grace = 2
            socket_group = ""
            [auth]
            inference_uids = []
            inference_gids = []
            allow_daemon_user = false
            """.write(toFile: config, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        XCTAssertNotNil(notify.wait(for: "RELOADING=1", timeout: 10), daemon.stderr)
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 10), daemon.stderr)
        let after = try await client.post("/v1/completions", ["prompt": "x"])
        XCTAssertEqual(after.status, 403, "the reloaded [auth] applies without a restart")

        // A broken config on reload keeps the running one.
        try "[server]\nsocket_mode = 12\n".write(toFile: config, atomically: true, encoding: .utf8)
        daemon.signal(SIGHUP)
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 10))
        let still = try await client.post("/v1/completions", ["prompt": "x"])
        XCTAssertEqual(still.status, 403)
        XCTAssertTrue(daemon.stderr.contains("configuration reload failed"), daemon.stderr)

        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeout: 15), 0)
    }
}
