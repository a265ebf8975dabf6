import EdgeRuntime
import Foundation
import XCTest

final class ServingStopMatcherTests: XCTestCase {
    func testHoldsBackPossibleStopPrefixes() {
        var m = StopSequenceMatcher(stops: ["</s>", "END"])
        XCTAssertEqual(m.append("Hello <").text, "Hello ")
        XCTAssertEqual(m.append("/").text, "")
        XCTAssertEqual(m.append("x").text, "</x", "not a stop after all: released")
        let s = m.append(" E")
        XCTAssertEqual(s.text, " ")
        let e = m.append("ND more")
        XCTAssertTrue(e.stopped)
        XCTAssertEqual(e.text, "")
        XCTAssertEqual(m.append("ignored").text, "")
    }

    func testEarliestMatchWinsAndMultibyteIsSafe() {
        var m = StopSequenceMatcher(stops: ["é!", "b"])
        let s = m.append("aé!b")
        XCTAssertTrue(s.stopped)
        XCTAssertEqual(s.text, "a")
        var n = StopSequenceMatcher(stops: ["🙂"])
        XCTAssertEqual(n.append("x🙃y").text, "x🙃y")
        XCTAssertEqual(n.flush(), "")
    }

    func testFlushReleasesHeldText() {
        var m = StopSequenceMatcher(stops: ["abc"])
        XCTAssertEqual(m.append("xab").text, "x")
        XCTAssertEqual(m.flush(), "ab")
    }

    func testNoStopsReleasesEverything() {
        var m = StopSequenceMatcher(stops: [""])
        XCTAssertEqual(m.append("abc").text, "abc")
        XCTAssertFalse(m.stopped)
    }
}

final class ServingJSONTests: XCTestCase {
    func testRoundTripAndEscaping() throws {
        let v = try JSONValue.parse(Array(#"{"a": [1, 2.5, true, null, "x\"\n\u0001é"], "b": {"c": -7}}"#.utf8))
        XCTAssertEqual(v["a"]?.arrayValue?[0], .int(1))
        XCTAssertEqual(v["a"]?.arrayValue?[1], .double(2.5))
        XCTAssertEqual(v["a"]?.arrayValue?[2], .bool(true))
        XCTAssertEqual(v["b"]?["c"]?.intValue, -7)
        let s = JSONValue.string("x\"\n\u{01}é").serialized
        XCTAssertEqual(s, #""x\"\n\u0001é""#)
        XCTAssertEqual(try JSONValue.parse(Array(v.serialized.utf8)), v)
        XCTAssertEqual(JSONValue.double(-.infinity).serialized, "-9999.0")
    }

    func testInvalidJSONIs400() {
        XCTAssertThrowsError(try JSONValue.parse(Array("{".utf8))) { e in
            XCTAssertEqual((e as? APIError)?.status, 400)
        }
    }
}

final class ServingRequestParsingTests: XCTestCase {
    func testParsesOpenAIFields() throws {
        let r = try InferenceRequest.parse([
            "model": "tone@3", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "seed": -1,
            "stop": "\n", "logprobs": 2, "adapters": [["name": "style", "weight": 0.25]],
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "top_k": 40, "min_p": 0.05,
        ], kind: .completion)
        XCTAssertEqual(r.prompt, .text("hi"))
        XCTAssertEqual(r.maxTokens, 7)
        XCTAssertEqual(r.sampling.temperature, 0.5)
        XCTAssertEqual(r.sampling.topP, 0.9, accuracy: 1e-6)
        XCTAssertEqual(r.sampling.topK, 40)
        XCTAssertEqual(r.sampling.seed, UInt64.max)
        XCTAssertEqual(r.stop, ["\n"])
        XCTAssertTrue(r.logprobs)
        XCTAssertEqual(r.topLogprobs, 2)
        XCTAssertEqual(r.adapters.map(\.adapter.description), ["tone@3", "style"])
        XCTAssertEqual(r.adapters.map(\.weight), [1, 0.25])
    }

    func testRejectsWithParam() {
        let cases: [(JSONValue, InferenceRequest.Kind, String)] = [
            (["messages": []], .chat, "messages"),
            (["messages": [["content": "x"]]], .chat, "messages[0].role"),
            (["messages": [["role": "user", "content": "x"]], "top_logprobs": 3], .chat, "top_logprobs"),
            (["messages": [["role": "user", "content": "x"]], "tools": [["type": "function"]]], .chat, "tools"),
            (["prompt": "x", "echo": true, "stream": true], .completion, "echo"),
            (["prompt": "x", "stop": [1]], .completion, "stop"),
            (["prompt": "x", "adapters": [["name": "a"], ["name": "a"]]], .completion, "adapters"),
            (["prompt": "x", "adapters": [["name": "a", "weight": "heavy"]]], .completion, "adapters[0].weight"),
            (["prompt": "x", "model": "a@../../etc"], .completion, "model"),
            (["prompt": "x", "max_tokens": 0], .completion, "max_tokens"),
        ]
        for (json, kind, param) in cases {
            XCTAssertThrowsError(try InferenceRequest.parse(json, kind: kind), json.serialized) { e in
                XCTAssertEqual((e as? APIError)?.param, param, "\(json.serialized): \(e)")
                XCTAssertEqual((e as? APIError)?.status, 400)
            }
        }
    }
}

final class ServingConfigTests: XCTestCase {
    static var packagingConfig: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("packaging/config.toml").path
    }

    func testShippedExampleParsesToTheDefaults() throws {
        let text = try String(contentsOfFile: Self.packagingConfig, encoding: .utf8)
        var parsed = try DaemonConfiguration.parse(text, path: "config.toml")
        var defaults = try DaemonConfiguration.parse("", path: "empty")
        parsed.sourcePath = ""
        defaults.sourcePath = ""
        XCTAssertEqual(parsed.server, defaults.server)
        XCTAssertEqual(parsed.model, defaults.model)
        XCTAssertEqual(parsed.scheduler, defaults.scheduler)
        XCTAssertEqual(parsed.adapters, defaults.adapters)
        XCTAssertEqual(parsed.auth.inferenceUIDs, defaults.auth.inferenceUIDs)
        XCTAssertEqual(parsed.auth.inferenceGIDs, defaults.auth.inferenceGIDs)
        XCTAssertEqual(parsed.auth.allowDaemonUser, defaults.auth.allowDaemonUser)
        XCTAssertEqual(parsed.finetune, defaults.finetune)
        XCTAssertEqual(parsed.logging, defaults.logging)
        XCTAssertEqual(defaults.server.socketMode, 0o660)
    }

    func testCPUSchedulingIsParsedAndAppliedToEveryThread() throws {
        XCTAssertEqual(try DaemonConfiguration.parse("", path: "empty").model.cpuScheduling, .batch)
        XCTAssertEqual(try DaemonConfiguration.parse("[model]\ncpu_scheduling = \"other\"\n", path: "c").model.cpuScheduling, .other)
        XCTAssertThrowsError(try DaemonConfiguration.parse("[model]\ncpu_scheduling = \"fifo\"\n", path: "c")) { e in
            XCTAssertTrue("\(e)".contains("[model] cpu_scheduling"), "\(e)")
        }
        // In this process: set, read back from /proc, and put back.
        let pid = getpid()
        let link = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self")   // "PID/task/TID"
        let tid = try XCTUnwrap(Int32(link.split(separator: "/").last ?? ""))
        let before = try XCTUnwrap(CPUScheduling.policy(pid: pid, tid: tid))
        defer { _ = (before == CPUScheduling.batch.policy ? CPUScheduling.batch : CPUScheduling.other).apply() }
        XCTAssertTrue(CPUScheduling.batch.apply().isEmpty)
        XCTAssertEqual(CPUScheduling.policy(pid: pid, tid: tid), 3)
        XCTAssertTrue(CPUScheduling.other.apply().isEmpty)
        XCTAssertEqual(CPUScheduling.policy(pid: pid, tid: tid), 0)
    }

    func testEveryKeyIsDocumentedInTheExample() throws {
        let text = try String(contentsOfFile: Self.packagingConfig, encoding: .utf8)
        let keys = text.split(separator: "\n").filter { !$0.hasPrefix("#") && $0.contains(" = ") }
        XCTAssertGreaterThanOrEqual(keys.count, 30)
        // Each key line is preceded by a comment line.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where !line.hasPrefix("#") && line.contains(" = ") {
            XCTAssertTrue(lines[i - 1].hasPrefix("#"), "key line \(line) has no comment above it")
        }
    }

    func testErrorsNameTheKey() {
        let cases: [(String, String)] = [
            ("[server]\nsocket_mode = \"0999\"", "[server] socket_mode"),
            ("[server]\nmax_body_bytes = \"big\"", "[server] max_body_bytes"),
            ("[scheduler]\nmax_running = 0", "[scheduler] max_running"),
            ("[scheduler]\nmax_runing = 4", "[scheduler] max_runing"),
            ("[adapters]\nstore_url = \"ftp://x\"", "[adapters] store_url"),
            ("[adapters]\nrequire_signature = true", "[adapters] require_signature"),
            ("[auth]\nmanage_uids = [\"no-such-user-xyz\"]", "[auth] manage_uids"),
            ("[finetune]\nwindow = \"25:00-26:00\"", "[finetune] window"),
            ("[logging]\nlevel = \"loud\"", "[logging] level"),
            ("[serverr]\n", "[serverr]"),
        ]
        for (text, key) in cases {
            XCTAssertThrowsError(try DaemonConfiguration.parse(text, path: "/etc/x.toml")) { e in
                let message = "\(e)"
                XCTAssertTrue(message.contains(key) && message.contains("/etc/x.toml"), "\(text) → \(message)")
            }
        }
        XCTAssertThrowsError(try DaemonConfiguration.parse("[server\n", path: "/etc/x.toml")) { e in
            XCTAssertTrue("\(e)".contains("line 1"), "\(e)")
        }
    }

    func testValuesAndNamesAreRead() throws {
        let c = try DaemonConfiguration.parse("""
            [server]
            socket = "/tmp/x.sock"
            socket_mode = "0600"
            request_timeout = 2.5
            [auth]
            inference_uids = [0, "root", 1000]
            inference_gids = [0]
            [finetune]
            window = "22:30-05:00"
            """, path: "t")
        XCTAssertEqual(c.server.socket, "/tmp/x.sock")
        XCTAssertEqual(c.server.socketMode, 0o600)
        XCTAssertEqual(c.server.requestTimeout, 2.5)
        XCTAssertEqual(c.auth.inferenceUIDs, [0, 0, 1000])
        XCTAssertEqual(c.auth.inferenceGIDs, [0])
        XCTAssertEqual(DaemonConfiguration.parseWindow(c.finetune.window)?.start, 22 * 60 + 30)
    }

    func testMissingDefaultFileMeansDefaultsButMissingExplicitFileFails() throws {
        XCTAssertNoThrow(try DaemonConfiguration.load(path: "/nonexistent/config.toml", mustExist: false))
        XCTAssertThrowsError(try DaemonConfiguration.load(path: "/nonexistent/config.toml", mustExist: true)) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent/config.toml"))
        }
    }

    func testAccessPolicy() {
        var auth = DaemonConfiguration.Auth()
        auth.inferenceUIDs = [1000]
        auth.inferenceGIDs = [2000]
        auth.manageUIDs = []
        auth.manageGIDs = []
        auth.allowDaemonUser = false
        let p = AccessPolicy(auth, daemonUID: 999)
        XCTAssertTrue(p.allows(PeerCredentials(pid: 1, uid: 1000, gid: 1), .inference))
        XCTAssertTrue(p.allows(PeerCredentials(pid: 1, uid: 4242, gid: 2000), .inference))
        XCTAssertFalse(p.allows(PeerCredentials(pid: 1, uid: 4242, gid: 1), .inference))
        XCTAssertFalse(p.allows(PeerCredentials(pid: 1, uid: 1000, gid: 1), .manage))
        XCTAssertFalse(p.allows(.unknown, .inference))
        auth.allowDaemonUser = true
        XCTAssertTrue(AccessPolicy(auth, daemonUID: 999).allows(PeerCredentials(pid: 1, uid: 999, gid: 1), .manage))
    }
}

extension CPUScheduling {
    /// The policy of thread `tid` of process `pid` (field 41 of its /proc stat), or nil.
    static func policy(pid: Int32, tid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name, which may hold spaces: state is field 3, policy field 41.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 38 ? Int32(fields[38]) : nil
    }
}
