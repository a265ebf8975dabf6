import EdgeRuntime
import Foundation
import XCTest

/// `edgectl status|chat|generate` against the socket API (in-process server, scripted backend).
final class DaemonEdgectlTests: XCTestCase {
    static var edgectl: String {
        var products = Bundle(for: DaemonEdgectlTests.self).bundleURL
        if products.pathExtension == "xctest" { products.deleteLastPathComponent() }
        return products.appendingPathComponent("edgectl").path
    }

    static func run(_ args: [String], stdin: String? = nil, env: [String: String] = [:]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: edgectl)
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        environment["EDGE_SOCKET"] = nil
        environment.merge(env) { $1 }
        p.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testDaemonNotRunningIsOneSentenceAndExit3() async throws {
        let r = try await offPool { try Self.run(["status", "--socket", "/tmp/no-such-dir/edge.sock"]) }
        XCTAssertEqual(r.status, 3)
        XCTAssertEqual(r.err, "edgectl: the daemon is not running at /tmp/no-such-dir/edge.sock: start it with `systemctl start edge-runtime.socket` or `edge-runtimed --socket /tmp/no-such-dir/edge.sock`\n")
        let viaEnv = try await offPool { try Self.run(["generate", "hi"], env: ["EDGE_SOCKET": "/tmp/no-such-dir/other.sock"]) }
        XCTAssertEqual(viaEnv.status, 3)
        XCTAssertTrue(viaEnv.err.contains("/tmp/no-such-dir/other.sock"), "EDGE_SOCKET is honoured")
    }

    func testStatusTextAndJSON() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let text = try await offPool { try Self.run(["status", "--socket", server.socketPath]) }
        XCTAssertEqual(text.status, 0, text.err)
        XCTAssertTrue(text.out.contains("serving"), text.out)
        XCTAssertTrue(text.out.contains("scripted"), text.out)
        XCTAssertTrue(text.out.contains("alpha"), text.out)
        let json = try await offPool { try Self.run(["status", "--json", "--socket", server.socketPath]) }
        XCTAssertEqual(try JSONValue.parse(Array(json.out.utf8))["status"], "ok")
    }

    func testGenerateAndOneShotChatStream() async throws {
        let backend = ScriptedBackend(reply: "Grüße!")
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let g = try await offPool { try Self.run(["generate", "--socket", server.socketPath, "--max-tokens", "50", "Once upon"]) }
        XCTAssertEqual(g.status, 0, g.err)
        XCTAssertEqual(g.out, "Grüße!\n")
        let c = try await offPool { try Self.run(["chat", "--socket", server.socketPath, "--adapter", "alpha@2", "Hello"]) }
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertEqual(c.out, "Grüße! [alpha@2*1.0]\n")
        let piped = try await offPool { try Self.run(["chat", "--socket", server.socketPath, "--system", "Be nice."], stdin: "Hi from stdin\n") }
        XCTAssertEqual(piped.status, 0, piped.err)
        XCTAssertEqual(piped.out, "Grüße!\n")
        let last = try XCTUnwrap(backend.counters.withLockedValue { $0.requests.last })
        XCTAssertTrue(try backend.detokenize(last.prompt).contains("<|im_start|>system\nBe nice.<|im_end|>"))
    }

    func testRefusalsExitWith1AndTheDaemonsMessage() async throws {
        let server = try ServingTestServer(backend: NoModelBackend(hint: NoModelBackend.hint(modelPath: "/var/lib/x")))
        defer { Task { await server.stop() } }
        let r = try await offPool { try Self.run(["generate", "--socket", server.socketPath, "hi"]) }
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.err.contains("503") && r.err.contains("edgectl model import"), r.err)
        let bad = try await offPool { try Self.run(["chat", "--socket", server.socketPath, "--adapter", "../etc", "hi"]) }
        XCTAssertEqual(bad.status, 64, bad.err)
    }

    func testHelpDocumentsExitCodes() async throws {
        let r = try await offPool { try Self.run(["chat", "--help"]) }
        let flat = r.out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(flat.contains("3 the daemon is not reachable"), r.out)
    }
}
