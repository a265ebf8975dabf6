import AdapterCache
import EdgeRuntime
import Foundation
import XCTest

/// Hostile and careless clients against a real edge-runtimed process on a temporary socket (the
/// tiny fixture model, a file:// store holding a zstd bomb). Each abuse must get a clear
/// OpenAI-style JSON error with the right status, and afterwards the same daemon must still be
/// alive and answer a normal completion.
final class AbuseTests: XCTestCase {
    /// One daemon for the class: starting it is the slow part, and surviving every abuse in a row
    /// is itself the point.
    nonisolated(unsafe) static var daemon: DaemonProcess?
    nonisolated(unsafe) static var directory = ""
    nonisolated(unsafe) static var socketPath = ""
    nonisolated(unsafe) static var setupError: String?

    static let maxBodyBytes = 262_144
    static let maxUploadBytes = 524_288
    static let idleTimeout = 1.0
    /// Longer than the idle timeout, so a drip that keeps the idle timer alive meets this instead.
    static let requestReadTimeout = 3.0

    override class func setUp() {
        super.setUp()
        do {
            directory = try ServingTestServer.makeTemporaryDirectory()
            let model = directory + "/model", store = directory + "/store"
            _ = try ModelImporter(source: ModelTestSupport.fixture("model/tiny_llama.gguf"), output: model).run()
            try writeBomb(store: store, name: "bomb")
            let config = directory + "/config.toml"
            try """
                [server]
                shutdown_grace = 2
                socket_group = ""
                max_body_bytes = \(maxBodyBytes)
                max_upload_bytes = \(maxUploadBytes)
                idle_timeout = \(idleTimeout)
                request_read_timeout = \(requestReadTimeout)
                [adapters]
                store_url = "file://\(store)"
                cache_dir = "\(directory)/cache"
                """.write(toFile: config, atomically: true, encoding: .utf8)
            socketPath = directory + "/edge.sock"
            let notify = try NotifySocket(path: directory + "/notify")
            let d = try DaemonProcess(DaemonProcessTests.binary, ["--config", config, "--socket", socketPath, "--model", model], environment: ["NOTIFY_SOCKET": notify.path])
            daemon = d
            if notify.wait(for: "READY=1", timeout: 60) == nil { setupError = "no READY=1 from the daemon; stderr: \(d.stderr)" }
        } catch {
            setupError = "setting up the abuse daemon failed: \(error)"
        }
    }

    override class func tearDown() {
        daemon?.signal(SIGTERM)
        _ = daemon?.waitForExit(timeout: 10)
        daemon?.kill()
        try? FileManager.default.removeItem(atPath: directory)
        super.tearDown()
    }

    override func setUpWithError() throws {
        if let e = Self.setupError { throw SetupFailure(message: e) }
    }

    struct SetupFailure: Error { let message: String }

    var client: DaemonClient { DaemonClient(socketPath: Self.socketPath, timeout: 30) }

    /// An artifact that is 100 MiB of zeros once decompressed (a few KiB compressed), published
    /// with a correct digest so only the decompression guard can stop it.
    static func writeBomb(store: String, name: String) throws {
        let zeros = [UInt8](repeating: 0, count: 100 << 20)
        let compressed = try zeros.withUnsafeBytes { try Zstd.compress($0, level: 3, label: "bomb") }
        let dir = store + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try compressed.write(to: URL(fileURLWithPath: dir + "/1.tar.zst"))
        let index = """
            {"name": "\(name)", "latest": "1", "versions": [{"version": "1", "sha256": "\(FileDigest.sha256(compressed))", \
            "size": \(compressed.count), "created": "2026-01-01T00:00:00Z"}]}
            """
        try index.write(toFile: dir + "/index.json", atomically: true, encoding: .utf8)
    }

    /// The daemon is alive and answers a normal completion.
    func assertServesNormally(after what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Self.daemon?.process.isRunning, true, "the daemon died after \(what); stderr: \(Self.daemon?.stderr.suffix(2000) ?? "")", file: file, line: line)
        do {
            let r = try client.request("POST", "/v1/completions", json: .object([("prompt", "Hello"), ("max_tokens", 2)]))
            XCTAssertEqual(r.status, 200, "after \(what): \(String(decoding: r.body, as: UTF8.self))", file: file, line: line)
            XCTAssertNotNil(r.json?["choices"]?.arrayValue?.first?["text"]?.stringValue, "after \(what)", file: file, line: line)
        } catch {
            XCTFail("after \(what) a normal request failed: \(error)", file: file, line: line)
        }
    }

    /// An OpenAI-style error body with this status (and code, when given); returns the message.
    @discardableResult
    func assertError(_ r: DaemonClient.Response, _ status: Int, code: String? = nil, mentions: String? = nil, _ what: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        XCTAssertEqual(r.status, status, "\(what): \(String(decoding: r.body.prefix(500), as: UTF8.self))", file: file, line: line)
        XCTAssertEqual(r.headers["content-type"], "application/json", what, file: file, line: line)
        let error = r.json?["error"]
        let message = error?["message"]?.stringValue ?? ""
        XCTAssertFalse(message.isEmpty, "\(what): no error.message in \(String(decoding: r.body.prefix(300), as: UTF8.self))", file: file, line: line)
        XCTAssertNotNil(error?["type"]?.stringValue, what, file: file, line: line)
        if let code { XCTAssertEqual(error?["code"]?.stringValue, code, "\(what): \(message)", file: file, line: line) }
        if let mentions { XCTAssertTrue(message.contains(mentions), "\(what): '\(message)' should mention \(mentions)", file: file, line: line) }
        return message
    }

    func post(_ path: String, raw: [UInt8]) throws -> DaemonClient.Response {
        try client.request("POST", path, body: raw)
    }

    // MARK: - bodies and JSON

    func testOversizedBodiesGet413() throws {
        let big = Array("{\"prompt\": \"\(String(repeating: "a", count: Self.maxBodyBytes + 10))\"}".utf8)
        for path in ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize", "/v1/adapters/pull"] {
            assertError(try post(path, raw: big), 413, code: "request_too_large", mentions: "max_body", "oversized body on \(path)")
        }
        // A chunked body (no Content-Length to refuse up front) is stopped at the limit.
        let c = try client.connect()
        let chunk = Array("10000\r\n".utf8) + [UInt8](repeating: 0x61, count: 65536) + Array("\r\n".utf8)
        let head = Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".utf8)
        try? c.sendRaw(head + Array([[UInt8]](repeating: chunk, count: 5).joined()) + Array("0\r\n\r\n".utf8))
        let chunked = try c.readResponse()
        assertError(chunked, 413, code: "request_too_large", "chunked oversized body")
        // Fine-tuning uploads have their own, larger limit.
        let upload = Array("{\"model\": \"base\", \"training_data\": \"\(String(repeating: "b", count: Self.maxUploadBytes + 10))\"}".utf8)
        assertError(try post("/v1/fine_tuning/jobs", raw: upload), 413, code: "request_too_large", mentions: "max_upload", "oversized fine-tuning upload")
        assertServesNormally(after: "oversized bodies")
    }

    func testVeryLongPromptsAreRefusedWithTheContextSize() throws {
        let text = String(repeating: "the quick brown fox ", count: 10_000)
        let completion = try client.request("POST", "/v1/completions", json: .object([("prompt", .string(text)), ("max_tokens", 4)]))
        assertError(completion, 400, code: "context_length_exceeded", mentions: "context", "long text prompt")
        let chat = try client.request("POST", "/v1/chat/completions", json: .object([("messages", .array([.object([("role", "user"), ("content", .string(text))])]))]))
        assertError(chat, 400, code: "context_length_exceeded", mentions: "context", "long chat prompt")
        let ids = try client.request("POST", "/v1/completions", json: .object([("prompt", .array(Array(repeating: JSONValue.int(5), count: 20_000))), ("max_tokens", 1)]))
        assertError(ids, 400, code: "context_length_exceeded", "long token-id prompt")
        assertServesNormally(after: "long prompts")
    }

    func testInvalidUTF8AndMalformedJSON() throws {
        let bodies: [(String, [UInt8])] = [
            ("invalid UTF-8 in a string", Array("{\"prompt\": \"".utf8) + [0xFF, 0xFE, 0xC3, 0x28] + Array("\", \"max_tokens\": 2}".utf8)),
            ("a lone surrogate escape", Array("{\"prompt\": \"\\ud800\", \"max_tokens\": 2}".utf8)),
            ("truncated", Array("{\"prompt\": \"hi".utf8)),
            ("NUL bytes", [0, 0, 0, 0]),
            ("not JSON", Array("prompt=hello".utf8)),
        ]
        for (what, body) in bodies {
            let r = try post("/v1/completions", raw: body)
            // A lone surrogate may decode to U+FFFD (then the request is valid); everything else is 400.
            if what == "a lone surrogate escape" && r.status == 200 { continue }
            assertError(r, 400, what)
        }
        assertError(try post("/v1/completions", raw: Array("[1, 2]".utf8)), 400, mentions: "JSON object", "array body")
        assertServesNormally(after: "invalid UTF-8 and malformed JSON")
    }

    func testDeeplyNestedJSONIsRefusedWithoutCrashing() throws {
        for depth in [1_000, 20_000] {
            let nested = Array(String(repeating: "[", count: depth).utf8) + Array(String(repeating: "]", count: depth).utf8)
            assertError(try post("/v1/completions", raw: nested), 400, code: "invalid_json", "\(depth) nested arrays")
            let objects = Array(("{\"prompt\": " + String(repeating: "{\"a\":", count: depth) + "1" + String(repeating: "}", count: depth) + "}").utf8)
            assertError(try post("/v1/chat/completions", raw: objects), 400, "\(depth) nested objects")
        }
        assertServesNormally(after: "deeply nested JSON")
    }

    // MARK: - HTTP level

    func testHeaderFloodsGet431AndTheConnectionCloses() throws {
        var many = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
        for i in 0..<2_000 { many += "X-Flood-\(i): v\r\n" }
        let huge = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: \(String(repeating: "h", count: 200_000))\r\n"
        for (what, head) in [("2000 headers", many), ("one 200 KB header", huge)] {
            let c = try client.connect()
            // The daemon may answer and close before it has read everything; a reset on our
            // write is part of that, so send errors are tolerated and the answer is read anyway.
            try? c.sendRaw(Array((head + "\r\n").utf8))
            let r = try c.readResponse()
            assertError(r, 431, code: "headers_too_large", what)
            XCTAssertEqual(r.headers["connection"], "close", what)
            XCTAssertTrue(c.waitForPeerClose(seconds: 5), "\(what): connection left open")
        }
        assertServesNormally(after: "header floods")
    }

    func testSlowlorisConnectionsAreClosedAfterTheIdleTimeout() throws {
        // Half a request head, then silence.
        let half = try client.connect()
        try half.sendRaw(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le".utf8))
        // Headers complete, body promised but never sent.
        let noBody = try client.connect()
        try noBody.sendRaw(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pro".utf8))
        // Connected, nothing sent at all.
        let silent = try client.connect()
        // A head dripped a byte at a time stays unfinished past the timeout too.
        let drip = try client.connect()
        let started = Date()
        for b in Array("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".utf8).prefix(12) {
            try? drip.sendRaw([b])
            Thread.sleep(forTimeInterval: Self.idleTimeout / 4)
        }
        let limit = Self.idleTimeout * 3 + 2
        for (what, c) in [("half a head", half), ("a missing body", noBody), ("nothing sent", silent), ("a dripped head", drip)] {
            XCTAssertTrue(c.waitForPeerClose(seconds: limit), "\(what): still open \(Date().timeIntervalSince(started)) s later (idle_timeout \(Self.idleTimeout) s)")
        }
        assertServesNormally(after: "slowloris connections")
    }

    func testADrippedRequestGets408AfterTheReadDeadline() throws {
        // Each body byte is a body part for the HTTP layer and resets idle_timeout, so only the
        // whole-request deadline can end this. (A dripped head yields no parts and meets the idle
        // timeout: testSlowlorisConnectionsAreClosedAfterTheIdleTimeout.)
        let interval = Self.idleTimeout / 4
        let body = Array("{\"prompt\": \"Hello\", \"max_tokens\": 2}".utf8)
        let drip = try client.connect()
        try drip.sendRaw(Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8))
        let started = Date()
        var sent = 0
        // Drip for up to 3× the deadline; the daemon must cut the connection before the body ends.
        while Date().timeIntervalSince(started) < Self.requestReadTimeout * 3, sent < body.count - 1 {
            guard (try? drip.sendRaw([body[sent]])) != nil else { break }
            sent += 1
            Thread.sleep(forTimeInterval: interval)
        }
        let cutAfter = Date().timeIntervalSince(started)
        XCTAssertLessThan(sent, body.count - 1, "the whole body was dripped without the connection being cut")
        XCTAssertGreaterThan(cutAfter, Self.requestReadTimeout * 0.9, "answered before the deadline (after \(sent) bytes)")
        XCTAssertLessThan(cutAfter, Self.requestReadTimeout + 2, "cut long after the deadline")
        let response = try drip.readResponse()
        let message = assertError(response, 408, code: "request_timeout", mentions: "request_read_timeout", "a dripped body")
        XCTAssertEqual(response.headers["connection"], "close", message)
        XCTAssertTrue(drip.waitForPeerClose(seconds: 2), "the dripped connection stayed open after the 408")

        // A request that arrives whole, slowly but inside the deadline, is served; keep-alive
        // requests after it get their own deadline.
        // A body that arrives in pieces, slowly but inside the deadline, is served (the head comes
        // whole: a stalled head meets idle_timeout first); the next keep-alive request on the same
        // connection gets its own deadline.
        let steady = try client.connect()
        let head = Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        try steady.sendRaw(head)
        let piece = body.count / 4 + 1
        for start in stride(from: 0, to: body.count, by: piece) {
            Thread.sleep(forTimeInterval: Self.requestReadTimeout / 6)
            try steady.sendRaw(Array(body[start..<min(start + piece, body.count)]))
        }
        XCTAssertEqual(try steady.readResponse().status, 200, "a body sent in four pieces within the deadline")
        Thread.sleep(forTimeInterval: Self.idleTimeout / 2)
        try steady.sendRaw(head + body)
        XCTAssertEqual(try steady.readResponse().status, 200, "the next keep-alive request")
        assertServesNormally(after: "dripped requests")
    }

    func testAStreamReadSlowlyIsNotCutByTheIdleTimeout() throws {
        var events = 0
        let r = try client.stream("POST", "/v1/completions", json: .object([("prompt", "Hello"), ("max_tokens", 3), ("stream", true), ("ignore_eos", true)])) { line in
            if line.hasPrefix("data: ") { events += 1 }
            Thread.sleep(forTimeInterval: Self.idleTimeout * 1.5)
        }
        XCTAssertEqual(r.status, 200)
        XCTAssertGreaterThanOrEqual(events, 4, "three tokens, a final chunk and [DONE]")
    }

    // MARK: - parameters

    func testAbsurdMaxTokensIsRefusedNotClamped() throws {
        for v: JSONValue in [.int(Int64(1) << 40), .int(-5), .double(1e300), .string("lots")] {
            let r = try client.request("POST", "/v1/completions", json: .object([("prompt", "Hi"), ("max_tokens", v)]))
            let message = assertError(r, 400, "max_tokens \(v.serialized)")
            XCTAssertEqual(r.json?["error"]?["param"]?.stringValue, "max_tokens", message)
        }
        // In range for the parser but beyond the context: refused with the most that would fit.
        let r = try client.request("POST", "/v1/chat/completions", json: .object([("messages", .array([.object([("role", "user"), ("content", "Hi")])])), ("max_tokens", .int(1 << 24))]))
        let message = assertError(r, 400, code: "context_length_exceeded", mentions: "lower max_tokens to", "max_tokens beyond the context")
        XCTAssertEqual(r.json?["error"]?["param"]?.stringValue, "max_tokens", message)
        assertServesNormally(after: "absurd max_tokens")
    }

    func testAbsurdNAndLogprobs() throws {
        let cases: [(String, String, [(String, JSONValue)], String)] = [
            ("/v1/completions", "n = 1000", [("n", 1000)], "n"),
            ("/v1/completions", "n = -1", [("n", -1)], "n"),
            ("/v1/completions", "n = 1e30", [("n", .double(1e30))], "n"),
            ("/v1/completions", "logprobs = 1000", [("logprobs", 1000)], "logprobs"),
            ("/v1/completions", "logprobs = -3", [("logprobs", -3)], "logprobs"),
            ("/v1/chat/completions", "top_logprobs = 1e9", [("logprobs", true), ("top_logprobs", 1_000_000_000)], "top_logprobs"),
            ("/v1/chat/completions", "logprobs = \"yes\"", [("logprobs", "yes")], "logprobs"),
            ("/v1/chat/completions", "best_of-style n = 64", [("n", 64)], "n"),
        ]
        for (path, what, extra, param) in cases {
            var fields: [(String, JSONValue)] = path.hasSuffix("chat/completions")
                ? [("messages", .array([.object([("role", "user"), ("content", "Hi")])]))] : [("prompt", "Hi")]
            fields += [("max_tokens", 2)] + extra
            let r = try client.request("POST", path, json: .object(fields))
            assertError(r, 400, what)
            XCTAssertEqual(r.json?["error"]?["param"]?.stringValue, param, what)
        }
        assertServesNormally(after: "absurd n / logprobs")
    }

    // MARK: - names

    static let hostileNames = ["../x", "..", "%2e%2e", "%2e%2e%2fx", "..%2Fetc", "/etc/passwd", "a/b", "a\u{0}b", "x\\..\\y", String(repeating: "a", count: 5000)]

    func testPathTraversalInAdapterNamesOnEveryRoute() throws {
        let marker = Self.directory + "/cache"
        for name in Self.hostileNames {
            let label = name.count > 40 ? "\(name.prefix(10))…(\(name.count))" : name.debugDescription
            let bodies: [(String, String, JSONValue)] = [
                ("POST", "/v1/completions", .object([("model", .string(name)), ("prompt", "Hi"), ("max_tokens", 1)])),
                ("POST", "/v1/chat/completions", .object([("model", .string(name)), ("messages", .array([.object([("role", "user"), ("content", "Hi")])]))])),
                ("POST", "/v1/completions", .object([("adapters", .array([.object([("name", .string(name))])])), ("prompt", "Hi"), ("max_tokens", 1)])),
                ("POST", "/v1/completions", .object([("model", .string("ok@\(name)")), ("prompt", "Hi"), ("max_tokens", 1)])),
                ("POST", "/v1/adapters/pull", .object([("name", .string(name)), ("stream", false)])),
                ("POST", "/v1/fine_tuning/jobs", .object([("model", "base"), ("suffix", .string(name)), ("training_file", .string(name)), ("training_data", "{\"prompt\": \"a\", \"completion\": \"b\"}\n")])),
            ]
            for (method, path, body) in bodies {
                let r = try client.request(method, path, json: body)
                assertError(r, 400, "\(method) \(path) with \(label)")
            }
            // Names in the URL path, raw and percent-encoded.
            let encoded = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? name
            for segment in Set([encoded, name.contains("\u{0}") || name.contains(" ") ? encoded : name]) {
                for (method, path) in [("DELETE", "/v1/adapters/\(segment)"), ("POST", "/v1/adapters/\(segment)/pin"), ("POST", "/v1/adapters/\(segment)/unpin"),
                                       ("GET", "/v1/fine_tuning/jobs/\(segment)"), ("GET", "/v1/fine_tuning/jobs/\(segment)/events"), ("POST", "/v1/fine_tuning/jobs/\(segment)/cancel")] {
                    let c = try client.connect()
                    try c.sendRaw(Array("\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8))
                    let r = try c.readResponse()
                    XCTAssertTrue([400, 404].contains(r.status), "\(method) \(path.prefix(60)): \(r.status) \(String(decoding: r.body.prefix(300), as: UTF8.self))")
                    XCTAssertNotNil(r.json?["error"]?["message"]?.stringValue, "\(method) \(path.prefix(60)): not a JSON error")
                }
            }
        }
        // Nothing was written outside the cache directory's own layout.
        let parent = try FileManager.default.contentsOfDirectory(atPath: Self.directory).sorted()
        XCTAssertFalse(parent.contains("x") || parent.contains("etc"), "files appeared next to the cache: \(parent)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker + "/../x"))
        assertServesNormally(after: "path traversal names")
    }

    // MARK: - artifacts

    func testZstdBombPullIsRefusedWith4xx() throws {
        let rssBefore = try daemonRSS()
        let r = try client.request("POST", "/v1/adapters/pull", json: .object([("name", "bomb"), ("stream", false)]))
        let message = assertError(r, 400, "pulling a zstd bomb")
        XCTAssertTrue(message.contains("bomb") || message.contains("exceeds the limit"), message)
        // Through the inference path too (an unknown-but-fetchable adapter is pulled on first use).
        let viaModel = try client.request("POST", "/v1/completions", json: .object([("model", "bomb"), ("prompt", "Hi"), ("max_tokens", 1)]))
        assertError(viaModel, 400, "using a zstd bomb as model")
        let rssAfter = try daemonRSS()
        XCTAssertLessThan(rssAfter - rssBefore, 64 << 20, "the bomb must not be inflated in memory (RSS grew \(rssAfter - rssBefore) bytes)")
        let listed = try client.request("GET", "/v1/adapters")
        XCTAssertEqual(listed.json?["data"]?.arrayValue?.count, 0, "nothing was cached: \(String(decoding: listed.body, as: UTF8.self))")
        assertServesNormally(after: "a zstd bomb")
    }

    func daemonRSS() throws -> Int {
        let metrics = String(decoding: try client.request("GET", "/metrics").body, as: UTF8.self)
        let line = try XCTUnwrap(metrics.split(separator: "\n").first { $0.hasPrefix("process_resident_memory_bytes ") }, "no process_resident_memory_bytes in /metrics")
        return try XCTUnwrap(Int(line.split(separator: " ")[1]))
    }

    func testMetricsReportTheDaemonsOwnPidAndMemory() throws {
        let metrics = String(decoding: try client.request("GET", "/metrics").body, as: UTF8.self)
        XCTAssertGreaterThan(try daemonRSS(), 1 << 20)
        XCTAssertTrue(metrics.contains("process_pid \(Self.daemon?.process.processIdentifier ?? -1)\n"), metrics.suffix(600).description)
        XCTAssertEqual(try client.peerProcessID(), Self.daemon?.process.processIdentifier)
    }
}
