import EdgeRuntime
import Foundation
import XCTest

/// The socket API end to end over a real Unix socket, with the scripted backend.
final class ServingAPITests: XCTestCase {
    func testCompletionReturnsTextUsageAndFinishReason() async throws {
        let backend = ScriptedBackend()
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/completions", ["model": "base", "prompt": "Say hi", "max_tokens": 100])
        XCTAssertEqual(r.status, 200, r.errorMessage)
        let json = try XCTUnwrap(r.json)
        XCTAssertEqual(json["object"], "text_completion")
        XCTAssertTrue(json["id"]?.stringValue?.hasPrefix("cmpl-") ?? false)
        let choice = try XCTUnwrap(json["choices"]?.arrayValue?.first)
        XCTAssertEqual(choice["text"]?.stringValue, backend.reply)
        XCTAssertEqual(choice["finish_reason"], "stop")
        XCTAssertEqual(choice["logprobs"], .null)
        // "Say hi" = 6 bytes + BOS (add_special for text prompts).
        XCTAssertEqual(json["usage"]?["prompt_tokens"]?.intValue, 7)
        XCTAssertEqual(json["usage"]?["completion_tokens"]?.intValue, Int64(backend.reply.utf8.count))
        XCTAssertEqual(json["usage"]?["total_tokens"]?.intValue, 7 + Int64(backend.reply.utf8.count))
        XCTAssertEqual(backend.counters.withLockedValue { $0.requests.first?.prompt.first }, ScriptedBackend.bos)
    }

    func testMaxTokensGivesLengthAndTokenPromptsAreAccepted() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/completions", ["prompt": [72, 105], "max_tokens": 5, "temperature": 0])
        XCTAssertEqual(r.status, 200, r.errorMessage)
        let choice = try XCTUnwrap(r.json?["choices"]?.arrayValue?.first)
        XCTAssertEqual(choice["text"]?.stringValue, "Hello")
        XCTAssertEqual(choice["finish_reason"], "length")
        XCTAssertEqual(r.json?["usage"]?["prompt_tokens"]?.intValue, 2)
    }

    func testStopStringCutsTextAndEndsWithStop() async throws {
        let backend = ScriptedBackend(reply: "one, two, three, four, five, six, seven, eight", tokenDelay: .milliseconds(5))
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/completions", ["prompt": "x", "stop": [", thr", "zzz"]])
        XCTAssertEqual(r.json?["choices"]?.arrayValue?.first?["text"]?.stringValue, "one, two")
        XCTAssertEqual(r.json?["choices"]?.arrayValue?.first?["finish_reason"], "stop")
        // The sequence was cancelled in the engine once the stop string matched.
        let cancelled = await eventually { backend.counters.withLockedValue { $0.cancelled == 1 && $0.active == 0 } }
        XCTAssertTrue(cancelled, "the rest of the generation is cancelled and freed")
    }

    func testChatRendersTemplateAndAppliesAdapters() async throws {
        let backend = ScriptedBackend(reply: "Sure.")
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let body: JSONValue = [
            "model": "alpha@2",
            "messages": [["role": "system", "content": "Be brief."], ["role": "user", "content": [["type": "text", "text": "Hi"]]]],
            "adapters": [["name": "beta", "weight": 0.5]],
        ]
        let r = try await server.client.post("/v1/chat/completions", body)
        XCTAssertEqual(r.status, 200, r.errorMessage)
        let json = try XCTUnwrap(r.json)
        XCTAssertEqual(json["object"], "chat.completion")
        XCTAssertEqual(json["model"], "alpha@2")
        let message = try XCTUnwrap(json["choices"]?.arrayValue?.first?["message"])
        XCTAssertEqual(message["role"], "assistant")
        XCTAssertEqual(message["content"]?.stringValue, "Sure. [alpha@2*1.0,beta*0.5]")
        let seen = try XCTUnwrap(backend.counters.withLockedValue { $0.requests.first })
        let rendered = try backend.detokenize(seen.prompt)
        XCTAssertEqual(rendered, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(seen.prompt.first, ScriptedBackend.imStart, "chat prompts are tokenized with parse_special and without add_special")
        XCTAssertEqual(seen.maxTokens, 512 - seen.prompt.count, "no max_tokens means the rest of the context")
    }

    func testChatStreamingSendsRoleDeltaContentAndDone() async throws {
        let backend = ScriptedBackend()
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let (r, events) = try await server.client.events("/v1/chat/completions", [
            "messages": [["role": "user", "content": "Hi"]], "stream": true, "stream_options": ["include_usage": true],
        ])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.headers["content-type"], "text/event-stream")
        XCTAssertEqual(events.last, "[DONE]")
        let chunks = try events.dropLast().map { try JSONValue.parse(Array($0.utf8)) }
        XCTAssertEqual(chunks.first?["choices"]?.arrayValue?.first?["delta"]?["role"], "assistant")
        var text = ""
        for c in chunks {
            XCTAssertEqual(c["object"], "chat.completion.chunk")
            if let d = c["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue { text += d }
        }
        XCTAssertEqual(text, backend.reply, "multi-byte characters arrive whole")
        let finish = chunks.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
        XCTAssertEqual(finish, ["stop"])
        let usage = try XCTUnwrap(chunks.last?["usage"])
        XCTAssertEqual(chunks.last?["choices"], .array([]))
        XCTAssertEqual(usage["completion_tokens"]?.intValue, Int64(backend.reply.utf8.count))
    }

    func testCompletionStreamingEndsInDone() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend(reply: "abc"))
        defer { Task { await server.stop() } }
        let (r, events) = try await server.client.events("/v1/completions", ["prompt": "x", "stream": true])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(events.last, "[DONE]")
        let texts = try events.dropLast().map { try JSONValue.parse(Array($0.utf8))["choices"]?.arrayValue?.first?["text"]?.stringValue ?? "" }
        XCTAssertEqual(texts.joined(), "abc")
    }

    func testChatLogprobsShape() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend(reply: "hé"))
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/chat/completions", ["messages": [["role": "user", "content": "x"]], "logprobs": true, "top_logprobs": 2])
        let content = try XCTUnwrap(r.json?["choices"]?.arrayValue?.first?["logprobs"]?["content"]?.arrayValue)
        XCTAssertEqual(content.count, 3, "one entry per token: h, and é as two byte tokens")
        XCTAssertEqual(content[0]["token"], "h")
        XCTAssertEqual(content[0]["logprob"]?.doubleValue, -0.25)
        XCTAssertEqual(content[0]["bytes"], [104])
        XCTAssertEqual(content[1]["bytes"], [0xC3], "a partial UTF-8 piece keeps its exact bytes")
        let tops = try XCTUnwrap(content[0]["top_logprobs"]?.arrayValue)
        XCTAssertEqual(tops.count, 2)
        XCTAssertEqual(tops[0]["token"], "h")
        XCTAssertEqual(tops[1]["logprob"]?.doubleValue, -1.25)
    }

    func testCompletionLogprobsAndEcho() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend(reply: "ok"))
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/completions", ["prompt": [65, 66], "logprobs": 1, "echo": true])
        XCTAssertEqual(r.status, 200, r.errorMessage)
        let choice = try XCTUnwrap(r.json?["choices"]?.arrayValue?.first)
        XCTAssertEqual(choice["text"]?.stringValue, "ABok")
        let lp = try XCTUnwrap(choice["logprobs"])
        XCTAssertEqual(lp["tokens"], ["A", "B", "o", "k"])
        XCTAssertEqual(lp["token_logprobs"]?.arrayValue?.first, .null, "nothing predicts the first prompt token")
        XCTAssertEqual(lp["token_logprobs"]?.arrayValue?[1].doubleValue, -1.5)
        XCTAssertEqual(lp["top_logprobs"]?.arrayValue?.first, .null)
        XCTAssertEqual(lp["top_logprobs"]?.arrayValue?[2], ["o": -0.25])
        XCTAssertEqual(lp["text_offset"], [0, 1, 2, 3])
    }

    func testBadInputGets400WithParam() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let bad = try await offPool { try server.client.request("POST", "/v1/completions", body: Array("{not json".utf8)) }
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(bad.json?["error"]?["type"], "invalid_request_error")
        XCTAssertEqual(bad.json?["error"]?["code"], "invalid_json")

        let cases: [(JSONValue, String)] = [
            (["prompt": "x", "temperature": 3], "temperature"),
            (["prompt": "x", "n": 2], "n"),
            (["prompt": "x", "max_tokens": "ten"], "max_tokens"),
            (["prompt": "x", "model": "Bad/Name"], "model"),
            (["prompt": ["a", "b"]], "prompt"),
            (["prompt": [1, 99999]], "prompt"),
            (["max_tokens": 3], "prompt"),
            (["prompt": "x", "max_tokens": 600], "max_tokens"),
        ]
        for (body, param) in cases {
            let r = try await server.client.post("/v1/completions", body)
            XCTAssertEqual(r.status, 400, "\(body.serialized)")
            XCTAssertEqual(r.json?["error"]?["param"]?.stringValue, param, "\(body.serialized): \(r.errorMessage)")
            XCTAssertFalse(r.errorMessage.isEmpty)
        }
        let chat = try await server.client.post("/v1/chat/completions", ["messages": [["role": "wizard", "content": "x"]]])
        XCTAssertEqual(chat.status, 400)
        XCTAssertTrue(chat.errorMessage.contains("wizard"))
    }

    func testUnknownRouteIs404AndUnknownAdapterIs404() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let r = try await server.client.get("/v1/nothing")
        XCTAssertEqual(r.status, 404)
        XCTAssertEqual(r.json?["error"]?["code"], "unknown_route")
        let a = try await server.client.post("/v1/completions", ["prompt": "x", "model": "missing-one"])
        XCTAssertEqual(a.status, 404)
        XCTAssertEqual(a.json?["error"]?["code"], "adapter_not_found")
        let s = try await server.client.events("/v1/chat/completions", ["messages": [["role": "user", "content": "x"]], "model": "missing-two", "stream": true])
        XCTAssertEqual(s.0.status, 404, "admission errors are real statuses even when streaming")
    }

    func testTooLargeBodyIs413() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend()) { $0.server.maxBodyBytes = 2048 }
        defer { Task { await server.stop() } }
        let big = JSONValue.object([("prompt", .string(String(repeating: "a", count: 4096)))])
        let r = try await server.client.post("/v1/completions", big)
        XCTAssertEqual(r.status, 413)
        XCTAssertEqual(r.json?["error"]?["code"], "request_too_large")
    }

    func testQueueFullIs429WithRetryAfter() async throws {
        let backend = ScriptedBackend(reply: String(repeating: "z", count: 200), tokenDelay: .milliseconds(20), maxActive: 1)
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let first = Task { try await server.client.post("/v1/completions", ["prompt": "x"]) }
        let admitted = await eventually { backend.counters.withLockedValue { $0.active } == 1 }
        XCTAssertTrue(admitted)
        let second = try await server.client.post("/v1/completions", ["prompt": "y"])
        XCTAssertEqual(second.status, 429)
        XCTAssertEqual(second.headers["retry-after"], "3")
        XCTAssertEqual(second.json?["error"]?["type"], "rate_limit_error")
        let firstResult = try await first.value
        XCTAssertEqual(firstResult.status, 200)
    }

    func testNoModelAnswers503WithHintButHealthzWorks() async throws {
        let server = try ServingTestServer(backend: NoModelBackend(hint: NoModelBackend.hint(modelPath: nil)))
        defer { Task { await server.stop() } }
        for path in ["/v1/completions", "/v1/chat/completions", "/tokenize"] {
            let r = try await server.client.post(path, ["prompt": "x", "messages": [["role": "user", "content": "x"]], "content": "x"])
            XCTAssertEqual(r.status, 503, path)
            XCTAssertTrue(r.errorMessage.contains("edgectl model import"), r.errorMessage)
            XCTAssertEqual(r.json?["error"]?["code"], "model_not_loaded")
        }
        let h = try await server.client.get("/healthz")
        XCTAssertEqual(h.status, 200)
        XCTAssertEqual(h.json?["status"], "no_model")
    }

    func testAuthDeniedIs403() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend()) { c in
            c.auth.inferenceUIDs = [getuid() &+ 12345]
            c.auth.manageUIDs = []
            c.auth.allowDaemonUser = false
        }
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/chat/completions", ["messages": [["role": "user", "content": "x"]]])
        XCTAssertEqual(r.status, 403)
        XCTAssertEqual(r.json?["error"]?["type"], "permission_error")
        XCTAssertTrue(r.errorMessage.contains("uid \(getuid())"), r.errorMessage)
        let pull = try await server.client.post("/v1/adapters/pull", ["name": "alpha"])
        XCTAssertEqual(pull.status, 403)
        // Every route checks the peer: health and metrics name the model and the traffic.
        let health = try await server.client.get("/healthz")
        XCTAssertEqual(health.status, 403)
        let metrics = try await server.client.get("/metrics")
        XCTAssertEqual(metrics.status, 403)
        let text = server.state.metrics.render(backend: await server.state.backend.status(), modelLoaded: true)
        XCTAssertTrue(text.contains("edge_auth_denied_total{permission=\"inference\"} 3"), text)
    }

    func testDaemonUserIsAllowedByDefaultSwitch() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend()) { c in
            c.auth.inferenceUIDs = []
            c.auth.allowDaemonUser = true
        }
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/tokenize", ["content": "hi", "add_special": true])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(r.json?["tokens"], [259, 104, 105])
    }

    func testTokenizeDetokenize() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let t = try await server.client.post("/tokenize", ["content": "<|im_start|>a", "parse_special": true])
        XCTAssertEqual(t.json?["tokens"], [257, 97])
        let plain = try await server.client.post("/tokenize", ["content": "<|eos|>", "parse_special": false])
        XCTAssertEqual(plain.json?["tokens"]?.arrayValue?.count, 7)
        let d = try await server.client.post("/detokenize", ["tokens": [257, 104, 105]])
        XCTAssertEqual(d.json?["content"], "<|im_start|>hi")
        let bad = try await server.client.post("/detokenize", ["tokens": [9999]])
        XCTAssertEqual(bad.status, 400)
    }

    func testModelsAdaptersAndManagement() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let models = try await server.client.get("/v1/models")
        XCTAssertEqual(models.json?["data"]?.arrayValue?.compactMap { $0["id"]?.stringValue }, ["base", "alpha"])
        let adapters = try await server.client.get("/v1/adapters")
        XCTAssertEqual(adapters.json?["data"]?.arrayValue?.first?["disk_bytes"]?.intValue, 500)
        let pin = try await server.client.post("/v1/adapters/alpha/pin", .object([]))
        XCTAssertEqual(pin.json?["pinned"], true)
        let unpin = try await server.client.post("/v1/adapters/alpha/unpin", .object([]))
        XCTAssertEqual(unpin.json?["pinned"], false)
        let evict = try await offPool { try server.client.request("DELETE", "/v1/adapters/alpha") }
        XCTAssertEqual(evict.json?["deleted"], true)
        // NAME@VERSION works for unpin and evict as it does for pin; a version not cached is 404.
        let unpinVersion = try await server.client.post("/v1/adapters/alpha@2/unpin", .object([]))
        XCTAssertEqual(unpinVersion.status, 200, unpinVersion.errorMessage)
        let evictVersion = try await offPool { try server.client.request("DELETE", "/v1/adapters/alpha@2") }
        XCTAssertEqual(evictVersion.json?["deleted"], true, evictVersion.errorMessage)
        XCTAssertEqual(evictVersion.json?["id"], "alpha@2")
        let evictOtherVersion = try await offPool { try server.client.request("DELETE", "/v1/adapters/alpha@9") }
        XCTAssertEqual(evictOtherVersion.status, 404)
        let unpinOtherVersion = try await server.client.post("/v1/adapters/alpha@9/unpin", .object([]))
        XCTAssertEqual(unpinOtherVersion.status, 404)
        let evictMissing = try await offPool { try server.client.request("DELETE", "/v1/adapters/nope") }
        XCTAssertEqual(evictMissing.status, 404)
        let badName = try await offPool { try server.client.request("DELETE", "/v1/adapters/..") }
        XCTAssertTrue([400, 404].contains(badName.status))
    }

    func testPullStreamsProgressAsSSEAndNDJSON() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let (r, events) = try await server.client.events("/v1/adapters/pull", ["name": "gamma@2"])
        XCTAssertEqual(r.status, 200)
        XCTAssertEqual(events.last, "[DONE]")
        let phases = try events.dropLast().map { try JSONValue.parse(Array($0.utf8))["status"]?.stringValue ?? "" }
        XCTAssertEqual(phases, ["resolving", "downloading", "downloading", "verifying", "done"])
        var lines: [String] = []
        let nd = try await offPool { () -> (DaemonClient.Response, [String]) in
            var l: [String] = []
            let resp = try server.client.stream("POST", "/v1/adapters/pull", json: ["name": "gamma"], accept: "application/x-ndjson") { l.append($0) }
            return (resp, l)
        }
        lines = nd.1
        XCTAssertEqual(nd.0.headers["content-type"], "application/x-ndjson")
        XCTAssertEqual(lines.count, 5)
        XCTAssertEqual(try JSONValue.parse(Array(lines[4].utf8))["adapter"]?["name"], "gamma")
        let missing = try await server.client.post("/v1/adapters/pull", ["name": "missing-x"])
        XCTAssertEqual(missing.status, 404)
    }

    func testFineTuningWithoutBackendIs503() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend())
        defer { Task { await server.stop() } }
        let r = try await server.client.post("/v1/fine_tuning/jobs", ["training_data": "{}", "suffix": "mine"])
        XCTAssertEqual(r.status, 503)
        XCTAssertTrue(r.errorMessage.contains("fine-tuning is not available"))
        let list = try await server.client.get("/v1/fine_tuning/jobs")
        XCTAssertEqual(list.status, 503)
    }

    func testStreamingClientDisconnectCancelsGeneration() async throws {
        let backend = ScriptedBackend(reply: String(repeating: "x", count: 500), tokenDelay: .milliseconds(10))
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        struct Enough: Error {}
        _ = try? await offPool {
            var seen = 0
            _ = try server.client.stream("POST", "/v1/completions", json: ["prompt": "x", "stream": true]) { line in
                if line.hasPrefix("data: ") { seen += 1 }
                if seen == 3 { throw Enough() }
            }
        }
        let cancelled = await eventually { backend.counters.withLockedValue { $0.cancelled == 1 && $0.active == 0 } }
        XCTAssertTrue(cancelled, "closing the connection must cancel the sequence and free it")
        let m = try await server.client.get("/metrics")
        XCTAssertTrue(String(decoding: m.body, as: UTF8.self).contains("edge_client_disconnects_total 1"))
    }

    func testNonStreamingClientDisconnectCancelsGeneration() async throws {
        let backend = ScriptedBackend(reply: String(repeating: "x", count: 500), tokenDelay: .milliseconds(10))
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let body = Array(#"{"prompt": "x"}"#.utf8)
        try await offPool {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in server.socketPath.utf8.enumerated() { raw[i] = b } }
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            guard rc == 0 else { throw POSIXError(.ECONNREFUSED) }
            let head = Array("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            _ = head.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            usleep(150_000)
            close(fd)
        }
        let cancelled = await eventually { backend.counters.withLockedValue { $0.cancelled == 1 && $0.active == 0 } }
        XCTAssertTrue(cancelled)
    }

    func testMetricsExposition() async throws {
        let server = try ServingTestServer(backend: ScriptedBackend(reply: "abc"))
        defer { Task { await server.stop() } }
        // The scripted reply names the adapter: "abc [alpha*1.0]" = 15 byte tokens.
        _ = try await server.client.post("/v1/completions", ["prompt": "x", "model": "alpha"])
        _ = try await server.client.get("/v1/nothing")
        let m = try await server.client.get("/metrics")
        XCTAssertEqual(m.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        let text = String(decoding: m.body, as: UTF8.self)
        for needle in [
            "edge_requests_total{endpoint=\"POST /v1/completions\",status=\"200\"} 1",
            "edge_requests_total{endpoint=\"other\",status=\"404\"} 1",
            "edge_generated_tokens_total{adapter=\"alpha\"} 15",
            "edge_prompt_tokens_total{adapter=\"alpha\"} 2",
            "edge_time_to_first_token_seconds_count{adapter=\"alpha\"} 1",
            "edge_inter_token_latency_seconds_count{adapter=\"alpha\"} 14",
            "edge_adapter_cache_hits_total{tier=\"ram\"} 3",
            "edge_adapter_cache_adapter_hits_total{tier=\"ram\",adapter=\"alpha\"} 3",
            "edge_kv_budget_bytes 1048576",
            "edge_kv_preemptions_total 3",
            "edge_prefix_cache_hits_total 4",
            "edge_prefix_cache_misses_total 2",
            "edge_prefix_cache_hit_tokens_total 96",
            "# TYPE edge_time_to_first_token_seconds histogram",
        ] {
            XCTAssertTrue(text.contains(needle), "missing \(needle)")
        }
    }

    func testSocketIsCreatedWithMode0660AndStaleSocketIsReplaced() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/sub/edge.sock"
        // A stale socket file: bound, then its owner went away without unlinking it.
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(stale)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))

        let s = try ListeningSocket.bind(path: path, mode: 0o660, group: "", logger: .init(label: "t"))
        var st = stat()
        XCTAssertEqual(lstat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
        // A live socket is never taken over.
        XCTAssertThrowsError(try ListeningSocket.bind(path: path, mode: 0o660, group: "", logger: .init(label: "t"))) { e in
            XCTAssertTrue("\(e)".contains("another process is listening"), "\(e)")
        }
        _ = s
        // A regular file in the way is not deleted.
        let file = dir + "/file.sock"
        _ = FileManager.default.createFile(atPath: file, contents: Data("keep".utf8))
        XCTAssertThrowsError(try ListeningSocket.bind(path: file, mode: 0o660, group: "", logger: .init(label: "t")))
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "keep")
    }
}

extension ServingAPITests {
    func testGracefulShutdownDrainsRunningStreams() async throws {
        let backend = ScriptedBackend(reply: String(repeating: "d", count: 40), tokenDelay: .milliseconds(10))
        let server = try ServingTestServer(backend: backend)
        let running = Task { try await server.client.events("/v1/completions", ["prompt": "x", "stream": true]) }
        let started = await eventually { backend.counters.withLockedValue { $0.active } == 1 }
        XCTAssertTrue(started)
        let stop = Task { await server.stop() }
        let (response, events) = try await running.value
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(events.last, "[DONE]", "a request running at SIGTERM finishes")
        await stop.value
        // The backend counts a stream as finished when its producer task ends, which can land just
        // after the client has read [DONE]; wait for it rather than race it.
        let finished = await eventually { backend.counters.withLockedValue { $0.finished } == 1 }
        XCTAssertTrue(finished, "the running stream's producer finished")
        XCTAssertThrowsError(try server.client.request("GET", "/healthz"), "no new connections after shutdown")
    }

    func testConcurrentStreamsWithDifferentAdaptersStayApart() async throws {
        let backend = ScriptedBackend(reply: "r", tokenDelay: .milliseconds(2))
        let server = try ServingTestServer(backend: backend)
        defer { Task { await server.stop() } }
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for i in 0..<16 {
                group.addTask {
                    let (_, events) = try await server.client.events("/v1/chat/completions", [
                        "model": .string("adapter-\(i % 4)"), "messages": [["role": "user", "content": .string("n\(i)")]], "stream": true,
                    ])
                    let text = try events.dropLast().map { try JSONValue.parse(Array($0.utf8))["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue ?? "" }.joined()
                    return (i, text)
                }
            }
            var out: [Int: String] = [:]
            for try await (i, text) in group { out[i] = text }
            return out
        }
        XCTAssertEqual(results.count, 16)
        for (i, text) in results { XCTAssertEqual(text, "r [adapter-\(i % 4)*1.0]") }
        XCTAssertEqual(backend.counters.withLockedValue { $0.active }, 0)
    }
}
