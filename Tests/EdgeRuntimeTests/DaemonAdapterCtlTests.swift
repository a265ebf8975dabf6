import AdapterCache
import EdgeRuntime
import Foundation
import XCTest

/// `edgectl adapter pull|list|info|pin|unpin|evict` through the real `edge-runtimed` binary: a
/// model imported from the tiny GGUF fixture, a `file://` store the test publishes a LoRA adapter
/// of the tiny model's shapes into (with `edgectl adapter pack/publish`), and the daemon's cache.
final class DaemonAdapterCtlTests: XCTestCase {
    /// A PEFT directory whose LoRA shapes match the model directory's config.json.
    static func writeAdapter(to dir: String, model: String, rank: Int, seed: UInt64) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model + "/config.json"))) as? [String: Any])
        func int(_ key: String) throws -> Int { try XCTUnwrap(config[key] as? Int, "config.json has no \(key)") }
        let hidden = try int("hidden_size"), intermediate = try int("intermediate_size"), layers = try int("num_hidden_layers")
        let heads = try int("num_attention_heads")
        let headDim = (config["head_dim"] as? Int) ?? hidden / heads
        let kvDim = ((config["num_key_value_heads"] as? Int) ?? heads) * headDim
        var state = seed
        func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(state >> 40) / Float(1 << 24) - 0.5
        }
        var writer = SafetensorsWriter()
        let shapes: [(String, String, Int, Int)] = [
            ("self_attn", "q_proj", heads * headDim, hidden), ("self_attn", "v_proj", kvDim, hidden), ("mlp", "down_proj", hidden, intermediate),
        ]
        for l in 0..<layers {
            for (parent, proj, out, inp) in shapes {
                let prefix = "base_model.model.model.layers.\(l).\(parent).\(proj)"
                writer.add("\(prefix).lora_A.weight", shape: [rank, inp], floats: (0..<(rank * inp)).map { _ in next() * 0.2 })
                writer.add("\(prefix).lora_B.weight", shape: [out, rank], floats: (0..<(out * rank)).map { _ in next() * 0.05 })
            }
        }
        try writer.write(to: dir + "/adapter_model.safetensors")
        try """
            {"peft_type": "LORA", "r": \(rank), "lora_alpha": \(2 * rank), "target_modules": ["q_proj", "v_proj", "down_proj"],
             "bias": "none", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama"}
            """.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
    }

    static func edgectl(_ args: [String], env: [String: String] = [:]) async throws -> (status: Int32, out: String, err: String) {
        try await offPool { try DaemonEdgectlTests.run(args, env: env) }
    }

    static func json(_ text: String) throws -> JSONValue {
        try JSONValue.parse(Array(text.utf8))
    }

    func testPullListPinUnpinEvictThroughTheDaemon() async throws {
        let dir = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let model = dir + "/model", store = dir + "/store", cache = dir + "/cache"
        _ = try ModelImporter(source: ModelTestSupport.fixture("model/tiny_llama.gguf"), output: model).run()
        try Self.writeAdapter(to: dir + "/peft", model: model, rank: 2, seed: 11)
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        for version in ["1", "2"] {
            let packed = try await Self.edgectl(["adapter", "pack", dir + "/peft", "-o", "\(dir)/helper-\(version).tar.zst", "--name", "tiny-helper@\(version)", "--base-model", model])
            XCTAssertEqual(packed.status, 0, packed.err)
            let published = try await Self.edgectl(["adapter", "publish", "\(dir)/helper-\(version).tar.zst", "--to", store])
            XCTAssertEqual(published.status, 0, published.err)
        }

        let config = dir + "/config.toml"
        try """
            [server]
            shutdown_grace = 2
            socket_group = ""
            [adapters]
            store_url = "file://\(store)"
            cache_dir = "\(cache)"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let notify = try NotifySocket(path: dir + "/notify")
        let socket = dir + "/edge.sock"
        let daemon = try DaemonProcess(DaemonProcessTests.binary, ["--config", config, "--socket", socket, "--model", model],
                                       environment: ["NOTIFY_SOCKET": notify.path])
        defer { daemon.kill() }
        XCTAssertNotNil(notify.wait(for: "READY=1", timeout: 60), "no READY=1; stderr: \(daemon.stderr)")

        let empty = try await Self.edgectl(["adapter", "list", "--json", "--socket", socket])
        XCTAssertEqual(empty.status, 0, empty.err)
        XCTAssertEqual(try Self.json(empty.out), .array([]))

        // Not a TTY: no progress bar, only the JSON entry.
        let pulled = try await Self.edgectl(["adapter", "pull", "tiny-helper@1", "--json", "--socket", socket])
        XCTAssertEqual(pulled.status, 0, pulled.err + daemon.stderr)
        XCTAssertEqual(pulled.err, "")
        let entry = try Self.json(pulled.out)
        XCTAssertEqual(entry["name"], "tiny-helper")
        XCTAssertEqual(entry["version"], "1")
        XCTAssertEqual(entry["pinned"], false)
        XCTAssertEqual(entry["rank"]?.intValue, 2)
        XCTAssertGreaterThan(entry["disk_bytes"]?.intValue ?? 0, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache), "the daemon's cache directory holds the pull")

        // EDGE_SOCKET instead of --socket; the newest version.
        let newest = try await Self.edgectl(["adapter", "pull", "tiny-helper", "--json"], env: ["EDGE_SOCKET": socket])
        XCTAssertEqual(newest.status, 0, newest.err)
        XCTAssertEqual(try Self.json(newest.out)["version"], "2")

        let listed = try await Self.edgectl(["adapter", "list", "--json", "--socket", socket])
        XCTAssertEqual(listed.status, 0, listed.err)
        let versions = try XCTUnwrap(Self.json(listed.out).arrayValue).compactMap { $0["version"]?.stringValue }.sorted()
        XCTAssertEqual(versions, ["1", "2"])
        let table = try await Self.edgectl(["adapter", "list", "--socket", socket])
        XCTAssertEqual(table.status, 0, table.err)
        XCTAssertTrue(table.out.hasPrefix("NAME"), table.out)
        XCTAssertEqual(table.out.split(separator: "\n").filter { $0.hasPrefix("tiny-helper") }.count, 2, table.out)

        // NAME unpins the newest cached version, so pin that one (NAME@VERSION is below).
        let pinned = try await Self.edgectl(["adapter", "pin", "tiny-helper@2", "--json", "--socket", socket])
        XCTAssertEqual(pinned.status, 0, pinned.err)
        XCTAssertEqual(try Self.json(pinned.out)["pinned"], true)
        let info = try await Self.edgectl(["adapter", "info", "tiny-helper@2", "--json", "--socket", socket])
        XCTAssertEqual(info.status, 0, info.err)
        XCTAssertEqual(try Self.json(info.out)["pinned"], true)
        let first = try await Self.edgectl(["adapter", "info", "tiny-helper@1", "--json", "--socket", socket])
        XCTAssertEqual(try Self.json(first.out)["sha256"], entry["sha256"])
        XCTAssertEqual(try Self.json(first.out)["pinned"], false)
        let text = try await Self.edgectl(["adapter", "info", "tiny-helper@2", "--socket", socket])
        XCTAssertTrue(text.out.contains("pinned:      true"), text.out)

        let unpinned = try await Self.edgectl(["adapter", "unpin", "tiny-helper", "--json", "--socket", socket])
        XCTAssertEqual(unpinned.status, 0, unpinned.err)
        XCTAssertEqual(try Self.json(unpinned.out)["pinned"], false)
        XCTAssertEqual(try Self.json(unpinned.out)["version"], "2")

        // NAME@VERSION addresses one version through the daemon: unpin and evict only that one.
        for version in ["1", "2"] {
            let p = try await Self.edgectl(["adapter", "pin", "tiny-helper@\(version)", "--json", "--socket", socket])
            XCTAssertEqual(p.status, 0, p.err)
        }
        let unpinOne = try await Self.edgectl(["adapter", "unpin", "tiny-helper@1", "--json", "--socket", socket])
        XCTAssertEqual(unpinOne.status, 0, unpinOne.err + daemon.stderr)
        XCTAssertEqual(try Self.json(unpinOne.out)["version"], "1")
        XCTAssertEqual(try Self.json(unpinOne.out)["pinned"], false)
        let stillPinned = try await Self.edgectl(["adapter", "info", "tiny-helper@2", "--json", "--socket", socket])
        XCTAssertEqual(try Self.json(stillPinned.out)["pinned"], true, "unpinning @1 left @2 pinned")
        let evictOne = try await Self.edgectl(["adapter", "evict", "tiny-helper@1", "--json", "--socket", socket])
        XCTAssertEqual(evictOne.status, 0, evictOne.err + daemon.stderr)
        XCTAssertEqual(try XCTUnwrap(Self.json(evictOne.out).arrayValue).compactMap { $0["version"]?.stringValue }, ["1"], evictOne.out)
        let left = try await Self.edgectl(["adapter", "list", "--json", "--socket", socket])
        let kept = try XCTUnwrap(Self.json(left.out).arrayValue)
        XCTAssertEqual(kept.compactMap { $0["version"]?.stringValue }, ["2"], "evicting @1 kept @2")
        XCTAssertEqual(kept.first?["pinned"], true, "and @2's pin")
        let unpinTwo = try await Self.edgectl(["adapter", "unpin", "tiny-helper@2", "--socket", socket])
        XCTAssertEqual(unpinTwo.status, 0, unpinTwo.err)
        XCTAssertEqual(unpinTwo.out, "unpinned tiny-helper@2\n")
        let gone = try await Self.edgectl(["adapter", "evict", "tiny-helper@1", "--socket", socket])
        XCTAssertEqual(gone.status, 1, "evicting a version no longer cached: \(gone.err)")
        let pulledAgain = try await Self.edgectl(["adapter", "pull", "tiny-helper@1", "--json", "--socket", socket])
        XCTAssertEqual(pulledAgain.status, 0, pulledAgain.err)

        let evicted = try await Self.edgectl(["adapter", "evict", "tiny-helper", "--json", "--socket", socket])
        XCTAssertEqual(evicted.status, 0, evicted.err + daemon.stderr)
        XCTAssertEqual(try XCTUnwrap(Self.json(evicted.out).arrayValue).count, 2, evicted.out)
        let after = try await Self.edgectl(["adapter", "list", "--json", "--socket", socket])
        XCTAssertEqual(try Self.json(after.out), .array([]))

        // The daemon's refusals: exit 1 with its message.
        let missing = try await Self.edgectl(["adapter", "info", "tiny-helper", "--socket", socket])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.err.contains("not in the daemon's adapter cache"), missing.err)
        let unknown = try await Self.edgectl(["adapter", "pull", "no-such-adapter", "--socket", socket])
        XCTAssertEqual(unknown.status, 1, unknown.err)
        XCTAssertTrue(unknown.err.hasPrefix("edgectl: ") && unknown.err.contains("no-such-adapter"), unknown.err)

        // Local-only options in daemon mode are usage errors, not silently ignored.
        let mixed = try await Self.edgectl(["adapter", "pull", "tiny-helper", "--store", "file://\(store)", "--socket", socket])
        XCTAssertEqual(mixed.status, 64, mixed.err)
        XCTAssertTrue(mixed.err.contains("--store applies only with --cache-dir"), mixed.err)

        // The offline mode still works on its own directory, without the daemon.
        let local = try await Self.edgectl(["adapter", "pull", "tiny-helper@1", "--json", "--cache-dir", dir + "/offline", "--store", "file://\(store)"])
        XCTAssertEqual(local.status, 0, local.err)
        XCTAssertEqual(try Self.json(local.out)["version"], "1")
        let localList = try await Self.edgectl(["adapter", "list", "--json", "--cache-dir", dir + "/offline"])
        XCTAssertEqual(try XCTUnwrap(Self.json(localList.out).arrayValue).count, 1, localList.out)
        // NAME@VERSION offline too: pin, unpin and evict that version.
        let localTwo = try await Self.edgectl(["adapter", "pull", "tiny-helper@2", "--cache-dir", dir + "/offline", "--store", "file://\(store)"])
        XCTAssertEqual(localTwo.status, 0, localTwo.err)
        let localPin = try await Self.edgectl(["adapter", "pin", "tiny-helper@1", "--cache-dir", dir + "/offline"])
        XCTAssertEqual(localPin.status, 0, localPin.err)
        let localUnpin = try await Self.edgectl(["adapter", "unpin", "tiny-helper@1", "--json", "--cache-dir", dir + "/offline"])
        XCTAssertEqual(localUnpin.status, 0, localUnpin.err)
        XCTAssertEqual(try Self.json(localUnpin.out)["version"], "1")
        XCTAssertEqual(try Self.json(localUnpin.out)["pinned"], false)
        let localEvict = try await Self.edgectl(["adapter", "evict", "tiny-helper@1", "--json", "--cache-dir", dir + "/offline"])
        XCTAssertEqual(localEvict.status, 0, localEvict.err)
        XCTAssertEqual(try XCTUnwrap(Self.json(localEvict.out).arrayValue).compactMap { $0["version"]?.stringValue }, ["1"], localEvict.out)
        let localLeft = try await Self.edgectl(["adapter", "list", "--json", "--cache-dir", dir + "/offline"])
        XCTAssertEqual(try XCTUnwrap(Self.json(localLeft.out).arrayValue).compactMap { $0["version"]?.stringValue }, ["2"], localLeft.out)

        daemon.signal(SIGTERM)
        XCTAssertEqual(daemon.waitForExit(timeout: 15), 0, daemon.stderr)
    }

    func testDaemonNotRunningIsOneSentenceAndExit3() async throws {
        let path = "/tmp/no-such-dir/edge.sock"
        let sentence = "edgectl: the daemon is not running at \(path): start it with `systemctl start edge-runtime.socket` or `edge-runtimed --socket \(path)`\n"
        for args in [["list"], ["pull", "x@1"], ["info", "x"], ["pin", "x"], ["unpin", "x"], ["evict", "x"]] {
            let r = try await Self.edgectl(["adapter"] + args + ["--json", "--socket", path])
            XCTAssertEqual(r.status, 3, "\(args): \(r.err)")
            XCTAssertEqual(r.err, sentence, "\(args)")
            XCTAssertEqual(r.out, "")
        }
        let viaEnv = try await Self.edgectl(["adapter", "list"], env: ["EDGE_SOCKET": "/tmp/no-such-dir/other.sock"])
        XCTAssertEqual(viaEnv.status, 3)
        XCTAssertTrue(viaEnv.err.contains("/tmp/no-such-dir/other.sock"), viaEnv.err)
    }

    func testHelpSaysWhichModeIsUsedWithExamples() async throws {
        for command in ["pull", "list", "info", "evict", "pin", "unpin"] {
            let r = try await Self.edgectl(["adapter", command, "--help"])
            let flat = r.out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
            XCTAssertTrue(flat.contains("by default the running daemon"), "\(command): \(r.out)")
            XCTAssertTrue(flat.contains("--cache-dir DIR"), "\(command)")
            XCTAssertTrue(flat.contains("edgectl adapter \(command) "), "\(command) has an example")
            XCTAssertTrue(flat.contains("3 the daemon is not reachable"), "\(command)")
        }
    }
}
