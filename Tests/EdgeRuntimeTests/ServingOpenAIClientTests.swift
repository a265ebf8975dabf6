import EdgeRuntime
import Foundation
import XCTest

/// The official `openai` Python client against the socket API (installed with pip when missing).
final class ServingOpenAIClientTests: XCTestCase {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/serving/openai_client_check.py").path
    }

    static func run(_ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testOfficialOpenAIClient() async throws {
        let (have, _) = try await offPool { try Self.run(["python3", "-c", "import openai"]) }
        if have != 0 {
            let (rc, out) = try await offPool { try Self.run(["python3", "-m", "pip", "install", "--quiet", "openai"]) }
            XCTAssertEqual(rc, 0, "pip install openai failed (this test needs PyPI access): \(out)")
            guard rc == 0 else { return }
        }
        let backend = ScriptedBackend(reply: "Hi there, wörld!")
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let (rc, out) = try await offPool { try Self.run(["python3", Self.script, server.socketPath, backend.reply]) }
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.contains("ok"), out)
    }
}
