import Foundation
import XCTest

/// `edgectl model import` and `model info` on the real SmolLM2 GGUF, as a user runs them.
final class ModelCommandTests: XCTestCase {
    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static func gguf() throws -> String {
        let env = ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"]
        let path = (env?.isEmpty == false) ? env! : repoRoot.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("the test model is missing at \(path): run scripts/fetch-test-model (or set EDGE_TEST_GGUF)")
            throw CocoaError(.fileNoSuchFile)
        }
        return path
    }

    private func scratch() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("edgectl-model-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func header(_ path: String) throws -> [String: [String: Any]] {
        let h = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? h.close() }
        let n = try h.read(upToCount: 8)!.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let json = try JSONSerialization.jsonObject(with: try h.read(upToCount: Int(n))!) as! [String: Any]
        return json.compactMapValues { $0 as? [String: Any] }
    }

    func testImportThenInfoOnSmolLM2() throws {
        let gguf = try Self.gguf()
        let dir = try scratch()
        let out = dir.appendingPathComponent("smollm2").path
        let result = try EdgectlProcess.run(["model", "import", gguf, "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("imported"), result.stdout)
        XCTAssertFalse(result.stderr.contains("\r"), "no progress line when stderr is not a terminal")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(),
                       ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])

        // Structure of model.safetensors (NF4.md §6): 210 NF4 projections, embeddings and norms in f32.
        let h = try header(out + "/model.safetensors")
        let states = h.keys.filter { $0.hasSuffix(".quant_state.bitsandbytes__nf4") }
        XCTAssertEqual(states.count, 210)
        let q = "model.layers.7.self_attn.q_proj.weight"
        XCTAssertEqual(h[q]?["dtype"] as? String, "U8"); XCTAssertEqual(h[q]?["shape"] as? [Int], [576 * 576 / 2, 1])
        XCTAssertEqual(h[q + ".absmax"]?["dtype"] as? String, "U8"); XCTAssertEqual(h[q + ".absmax"]?["shape"] as? [Int], [576 * 576 / 64])
        XCTAssertEqual(h[q + ".nested_absmax"]?["shape"] as? [Int], [(576 * 576 / 64 + 255) / 256])
        XCTAssertEqual(h[q + ".quant_map"]?["shape"] as? [Int], [16]); XCTAssertEqual(h[q + ".nested_quant_map"]?["shape"] as? [Int], [256])
        XCTAssertEqual(h["model.embed_tokens.weight"]?["dtype"] as? String, "F32")
        XCTAssertEqual(h["model.embed_tokens.weight"]?["shape"] as? [Int], [49152, 576])
        XCTAssertNil(h["lm_head.weight"], "SmolLM2 ties lm_head to the embedding")
        XCTAssertEqual(h["model.layers.29.post_attention_layernorm.weight"]?["dtype"] as? String, "F32")

        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        XCTAssertEqual(config["num_key_value_heads"] as? Int, 3)
        XCTAssertEqual(config["rope_theta"] as? Double, 100000)
        XCTAssertEqual((config["quantization_config"] as? [String: Any])?["bnb_4bit_use_double_quant"] as? Bool, true)
        let tok = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/tokenizer.json"))) as! [String: Any]
        XCTAssertEqual((tok["model"] as? [String: Any])?["type"] as? String, "BPE")
        XCTAssertEqual(((tok["model"] as? [String: Any])?["vocab"] as? [String: Any])?.count, 49152)
        let tc = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/tokenizer_config.json"))) as! [String: Any]
        XCTAssertEqual(tc["eos_token"] as? String, "<|im_end|>")
        XCTAssertTrue((tc["chat_template"] as? String)?.contains("<|im_start|>") == true)

        // info --json
        let info = try EdgectlProcess.run(["model", "info", out, "--json"])
        XCTAssertEqual(info.status, 0, info.stderr)
        let j = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(j["architecture"] as? String, "LlamaForCausalLM")
        let hp = j["hyperparameters"] as! [String: Any]
        XCTAssertEqual(hp["hidden_size"] as? Int, 576); XCTAssertEqual(hp["num_hidden_layers"] as? Int, 30)
        XCTAssertEqual(hp["num_attention_heads"] as? Int, 9); XCTAssertEqual(hp["vocab_size"] as? Int, 49152)
        XCTAssertEqual(j["parameters"] as? Int, 134_515_008)
        let bits = try XCTUnwrap(j["quantized_bits_per_weight"] as? Double)
        // 4-bit codes + an 8-bit absmax per 64 + an f32 per 16384, plus per-tensor maps and JSON (~1.3 KB).
        let floor: Double = 4.0 + 8.0 / 64.0 + 32.0 / 16384.0
        XCTAssertGreaterThanOrEqual(bits, floor - 0.001)
        XCTAssertLessThan(bits, floor + 0.05)
        let perDType = j["bytes_per_dtype"] as! [String: Int]
        XCTAssertEqual(perDType["F32"].map { $0 >= 49152 * 576 * 4 }, true)
        // The digest is the sha256 of model.safetensors.
        let sum = Process()
        sum.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        sum.arguments = [out + "/model.safetensors"]
        let pipe = Pipe()
        sum.standardOutput = pipe
        try sum.run()
        let hex = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: " ").first.map(String.init)
        sum.waitUntilExit()
        XCTAssertEqual(j["digest"] as? String, "sha256:" + (hex ?? "?"))

        let text = try EdgectlProcess.run(["model", "info", out])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("digest        sha256:\(hex ?? "?")"), text.stdout)

        // An existing output is refused without --force, replaced with it.
        let again = try EdgectlProcess.run(["model", "import", gguf, "--out", out])
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("already exists") && again.stderr.contains("--force"), again.stderr)
        let forced = try EdgectlProcess.run(["model", "import", out, "--out", dir.appendingPathComponent("copy").path])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertTrue(forced.stdout.contains("(nf4)"), forced.stdout)
    }

    func testBadArgumentsAndSources() throws {
        let dir = try scratch()
        let r = try EdgectlProcess.run(["model", "import", dir.path, "--out", dir.appendingPathComponent("o").path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("config.json"), r.stderr)
        let badFlag = try EdgectlProcess.run(["model", "import", dir.path, "--out", "x", "--keep-dtype", "f8"])
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.stderr.contains("--keep-dtype"), badFlag.stderr)
        let info = try EdgectlProcess.run(["model", "info", dir.appendingPathComponent("none").path])
        XCTAssertEqual(info.status, 1)
        XCTAssertTrue(info.stderr.contains("none"), info.stderr)
    }
}
