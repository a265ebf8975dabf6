import AdapterCache
import Crypto
@testable import EdgeRuntime
import Foundation
import XCTest

/// The importer on tiny_llama.gguf (every tensor type, untied output, SentencePiece tokenizer), whose
/// expected values transformers produced (Tests/Fixtures/model/make_tiny_llama.py), plus the other
/// source kinds, atomicity and refusals.
final class ModelImportTests: XCTestCase {
    static let tinyGGUF = ModelTestSupport.fixture("model/tiny_llama.gguf")

    func expected() throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelTestSupport.fixture("model/tiny_llama_expected.json")))) as! [String: Any]
    }

    private func sha256(_ values: [Float]) -> String {
        values.withUnsafeBytes { SHA256.hash(data: Data($0)).map { String(format: "%02x", $0) }.joined() }
    }

    func testGGUFTensorsEqualTransformersLoad() throws {
        // Dequantised, renamed and (q/k) un-permuted f32 weights equal transformers' GGUF load bit for bit.
        let source = try GGUFModelSource(path: Self.tinyGGUF)
        let exp = try expected()
        let hashes = exp["state_dict_sha256_f32le"] as! [String: String]
        let shapes = exp["shapes"] as! [String: [Int]]
        XCTAssertEqual(Set(source.tensors.keys), Set(hashes.keys))
        for (name, hash) in hashes {
            let t = source.tensors[name]!
            XCTAssertEqual(t.shape, shapes[name], name)
            XCTAssertEqual(sha256(try t.load()), hash, "\(name) differs from transformers' f32")
        }
        let cfg = exp["config"] as! [String: Any]
        let c = source.config
        XCTAssertEqual(c.vocabSize, cfg["vocab_size"] as? Int); XCTAssertEqual(c.hiddenSize, cfg["hidden_size"] as? Int)
        XCTAssertEqual(c.intermediateSize, cfg["intermediate_size"] as? Int); XCTAssertEqual(c.numHiddenLayers, cfg["num_hidden_layers"] as? Int)
        XCTAssertEqual(c.numAttentionHeads, cfg["num_attention_heads"] as? Int); XCTAssertEqual(c.numKeyValueHeads, cfg["num_key_value_heads"] as? Int)
        XCTAssertEqual(c.headDim, cfg["head_dim"] as? Int); XCTAssertEqual(c.maxPositionEmbeddings, cfg["max_position_embeddings"] as? Int)
        XCTAssertEqual(c.tieWordEmbeddings, cfg["tie_word_embeddings"] as? Bool)
        XCTAssertEqual(Float(c.rmsNormEps), Float(cfg["rms_norm_eps"] as! Double))
        XCTAssertEqual(c.ropeTheta, (cfg["rope_parameters"] as! [String: Any])["rope_theta"] as? Double)
        XCTAssertEqual(c.bosTokenID, cfg["bos_token_id"] as? Int); XCTAssertEqual(c.eosTokenIDs, [cfg["eos_token_id"] as! Int])
    }

    func testSentencePieceTokenizerJSONMatchesTransformers() throws {
        let conv = try GGUFTokenizerConverter(gguf: try GGUFFile(path: Self.tinyGGUF))
        let ours = try JSONSerialization.jsonObject(with: Data(conv.tokenizerJSON().serialized().utf8)) as! NSDictionary
        let theirs = try expected()["tokenizer_json"] as! NSDictionary
        for key in theirs.allKeys as! [String] {
            XCTAssertEqual(ours[key] as? NSObject, theirs[key] as? NSObject, "tokenizer.json '\(key)' differs")
        }
        XCTAssertEqual(ours, theirs)
        let cfg = try JSONSerialization.jsonObject(with: Data(conv.tokenizerConfigJSON(modelMaxLength: 512).serialized().utf8)) as! [String: Any]
        let tc = try expected()["tokenizer_config"] as! [String: Any]
        for key in ["bos_token", "eos_token", "unk_token"] { XCTAssertEqual(cfg[key] as? String, tc[key] as? String, key) }
        XCTAssertTrue(cfg["pad_token"] is NSNull)
        XCTAssertEqual(cfg["add_bos_token"] as? Bool, true)
        XCTAssertEqual(cfg["chat_template"] as? String, "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}")
    }

    func testSmolLM2TokenizerJSONMatchesTransformers() throws {
        // Reference: transformers' GGUF converter on the same file (vocab and merges as digests).
        let ref = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelTestSupport.fixture("model/smollm2_tokenizer_reference.json")))) as! [String: Any]
        let conv = try GGUFTokenizerConverter(gguf: try GGUFFile(path: try ModelTestSupport.testGGUF()))
        var ours = try JSONSerialization.jsonObject(with: Data(conv.tokenizerJSON().serialized().utf8)) as! [String: Any]
        var model = ours["model"] as! [String: Any]
        let vocab = model.removeValue(forKey: "vocab") as! [String: Int]
        let merges = model.removeValue(forKey: "merges") as! [[String]]
        ours["model"] = model
        XCTAssertEqual(ours as NSDictionary, ref["tokenizer_json_without_vocab_and_merges"] as! NSDictionary)
        XCTAssertEqual(vocab.count, ref["vocab_count"] as? Int)
        XCTAssertEqual(merges.count, ref["merges_count"] as? Int)
        let vocabText = vocab.sorted { $0.value < $1.value }.map { "\($0.key)\t\($0.value)\n" }.joined()
        let mergesText = merges.map { "\($0[0]) \($0[1])\n" }.joined()
        func hex(_ s: String) -> String { SHA256.hash(data: Data(s.utf8)).map { String(format: "%02x", $0) }.joined() }
        XCTAssertEqual(hex(vocabText), ref["vocab_sha256"] as? String)
        XCTAssertEqual(hex(mergesText), ref["merges_sha256"] as? String)
        let config = try JSONSerialization.jsonObject(with: Data(conv.tokenizerConfigJSON(modelMaxLength: 8192).serialized().utf8)) as! [String: Any]
        let refConfig = ref["tokenizer_config"] as! [String: Any]
        for key in ["bos_token", "eos_token", "pad_token", "unk_token"] { XCTAssertEqual(config[key] as? String, refConfig[key] as? String, key) }
        XCTAssertEqual(config["chat_template"] as? String, ref["chat_template"] as? String)
    }

    func testImportWritesAnNF4DirectoryThatLoads() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let out = dir.appendingPathComponent("tiny").path
        let importer = ModelImporter(source: Self.tinyGGUF, output: out)
        var phases = Set<String>()
        importer.progress = { phases.insert($0.phase.rawValue) }
        let summary = try importer.run()
        XCTAssertEqual(summary.kind, .gguf)
        XCTAssertEqual(summary.quantisedCount, 7)
        XCTAssertEqual(phases, ["quantising", "writing"])
        let names = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        XCTAssertEqual(names, ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["tiny"], "no temporary directory is left")

        // config.json: HF Llama config + NF4.md's quantization_config, exactly.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as! [String: Any]
        XCTAssertEqual(config["architectures"] as? [String], ["LlamaForCausalLM"])
        XCTAssertEqual(config["model_type"] as? String, "llama")
        XCTAssertEqual(config["tie_word_embeddings"] as? Bool, false)
        XCTAssertEqual(config["torch_dtype"] as? String, "float32")
        let q = config["quantization_config"] as! NSDictionary
        let expectedQ: NSDictionary = ["quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false, "bnb_4bit_quant_type": "nf4",
                                       "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": "float32", "bnb_4bit_quant_storage": "uint8",
                                       "llm_int8_threshold": 6.0, "llm_int8_skip_modules": NSNull(), "llm_int8_enable_fp32_cpu_offload": false,
                                       "llm_int8_has_fp16_weight": false, "_load_in_4bit": true, "_load_in_8bit": false]
        XCTAssertEqual(q, expectedQ)

        // model.safetensors: NF4.md §6 keys, dtypes, shapes; quantised values = the quantiser on the source f32.
        let st = try SafetensorsFile(path: out + "/model.safetensors")
        XCTAssertEqual(st.metadata, ["format": "pt"])
        let source = try GGUFModelSource(path: Self.tinyGGUF)
        let w = "model.layers.0.self_attn.q_proj.weight"
        XCTAssertEqual(try st.info(w).dtype, .u8); XCTAssertEqual(try st.info(w).shape, [256 * 256 / 2, 1])
        XCTAssertEqual(try st.info(w + ".absmax").dtype, .u8); XCTAssertEqual(try st.info(w + ".absmax").shape, [1024])
        XCTAssertEqual(try st.info(w + ".nested_absmax").shape, [4]); XCTAssertEqual(try st.info(w + ".quant_map").shape, [16])
        XCTAssertEqual(try st.info(w + ".nested_quant_map").shape, [256])
        for name in ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"] { XCTAssertEqual(try st.info(name).dtype, .f32, name) }
        XCTAssertEqual(st.tensors.count, 5 + 7 * 6, "embeddings, lm_head, 3 norms, 6 tensors per NF4 projection")
        for p in LlamaProjection.allCases {
            let name = "model.layers.0.\(p.rawValue).weight"
            let t = source.tensors[name]!
            let ref = NF4Quantizer.quantize(try t.load(), shape: t.shape)
            XCTAssertEqual(Array(try st.bytes(of: name)), ref.packed, name)
            guard case .double(let q8, let nested, _) = ref.absmax else { return XCTFail() }
            XCTAssertEqual(Array(try st.bytes(of: name + ".absmax")), q8, name)
            XCTAssertEqual(try st.floats(name + ".nested_absmax"), nested, name)
            XCTAssertEqual(String(decoding: try st.bytes(of: name + ".quant_state.bitsandbytes__nf4"), as: UTF8.self), ref.state.encoded())
        }
        XCTAssertEqual(try st.floats("lm_head.weight"), try source.tensors["lm_head.weight"]!.load())

        // The loader accepts it and its views dequantise to within NF4 error of the source.
        let model = try NF4Model(directory: out)
        XCTAssertEqual(model.layers.count, 1)
        let view = model.projection(layer: 0, .q)
        XCTAssertEqual(view.rows, 256); XCTAssertEqual(view.cols, 256); XCTAssertEqual(view.blocksize, 64); XCTAssertEqual(view.nestedBlocksize, 256)
        let original = try source.tensors[w]!.load()
        let deq = view.dequantized()
        let stored = view.absmax()
        for i in 0..<original.count {
            // NF4's widest gap between adjacent codes is 0.304 of the block absmax, so rounding is off by at
            // most half of it; the 8-bit absmax adds its own error |a' - a| (|code| <= 1).
            let block = (i / 64) * 64
            let a = original[block..<(block + 64)].map(abs).max()!
            XCTAssertLessThanOrEqual(abs(deq[i] - original[i]), 0.153 * a + abs(stored[i / 64] - a) + 1e-6, "element \(i)")
        }
    }

    func testKeepDTypeWritesHalfPrecisionTensors() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        for (dtype, st) in [(KeptTensorDType.f16, SafetensorsDType.f16), (.bf16, .bf16)] {
            let out = dir.appendingPathComponent(dtype.rawValue).path
            let importer = ModelImporter(source: Self.tinyGGUF, output: out)
            importer.keepDType = dtype
            try importer.run()
            let model = try NF4Model(directory: out)
            XCTAssertEqual(model.embedTokens.dtype.rawValue, st.rawValue)
            XCTAssertEqual(model.config.torchDtype, dtype == .f16 ? "float16" : "bfloat16")
            let source = try GGUFModelSource(path: Self.tinyGGUF).tensors["model.norm.weight"]!.load()
            let stored = model.norm.floats()
            for (a, b) in zip(stored, source) { XCTAssertEqual(a, b, accuracy: abs(b) * 0.008) }
        }
    }

    func testOutputExistsIsRefusedUnlessForced() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let out = dir.appendingPathComponent("m").path
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: out + "/marker"))
        XCTAssertThrowsError(try ModelImporter(source: Self.tinyGGUF, output: out).run()) { e in
            XCTAssertEqual(e as? ModelError, .outputExists(path: out))
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/marker"), "the existing directory is untouched")
        let importer = ModelImporter(source: Self.tinyGGUF, output: out)
        importer.force = true
        try importer.run()
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/marker"))
        XCTAssertNoThrow(try NF4Model(directory: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["m"])
    }

    func testFailureWhileWritingLeavesNothingBehind() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let out = dir.appendingPathComponent("m").path
        let importer = ModelImporter(source: Self.tinyGGUF, output: out)
        importer.failAfterTensors = 5
        XCTAssertThrowsError(try importer.run()) { e in
            guard case ModelError.diskFull(let p) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(p.hasSuffix("model.safetensors"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [], "no half-written model")
    }

    func testDiskFullOnARealSmallFileSystem() throws {
        // A 256 KiB tmpfs cannot hold the ~1 MB model: the write fails with ENOSPC.
        let dir = try ModelTestSupport.scratchDirectory(self)
        let mnt = dir.appendingPathComponent("small").path
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt]
        try mount.run(); mount.waitUntilExit()
        XCTAssertEqual(mount.terminationStatus, 0, "mounting a tmpfs needs root (CI runs as root)")
        guard mount.terminationStatus == 0 else { return }
        defer {
            let u = Process(); u.executableURL = URL(fileURLWithPath: "/bin/umount"); u.arguments = [mnt]
            try? u.run(); u.waitUntilExit()
        }
        let out = mnt + "/m"
        XCTAssertThrowsError(try ModelImporter(source: Self.tinyGGUF, output: out).run()) { e in
            guard case ModelError.diskFull = e else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("disk is full"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: mnt), [], "no half-written model")
    }

    func testSafetensorsDirectoryAndNF4DirectoryImports() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let gguf = dir.appendingPathComponent("from-gguf").path
        try ModelImporter(source: Self.tinyGGUF, output: gguf).run()
        // A Hugging Face directory holding the same f32 weights, sharded, norms in bf16-exact values.
        let source = try GGUFModelSource(path: Self.tinyGGUF)
        let hf = dir.appendingPathComponent("hf").path
        try FileManager.default.createDirectory(atPath: hf, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: gguf + "/config.json", toPath: hf + "/config.json")
        try FileManager.default.copyItem(atPath: gguf + "/tokenizer.json", toPath: hf + "/tokenizer.json")
        try FileManager.default.copyItem(atPath: gguf + "/tokenizer_config.json", toPath: hf + "/tokenizer_config.json")
        var shards = [SafetensorsWriter(), SafetensorsWriter()]
        var weightMap: [String: String] = [:]
        for (i, name) in source.tensors.keys.sorted().enumerated() {
            let t = source.tensors[name]!
            shards[i % 2].add(name, shape: t.shape, floats: try t.load())
            weightMap[name] = "model-0000\(i % 2 + 1)-of-00002.safetensors"
        }
        for (i, s) in shards.enumerated() { try s.write(to: hf + "/model-0000\(i + 1)-of-00002.safetensors") }
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap]).write(to: URL(fileURLWithPath: hf + "/model.safetensors.index.json"))
        XCTAssertEqual(try ModelImporter.detect(hf), .safetensors)
        let fromHF = dir.appendingPathComponent("from-hf").path
        XCTAssertEqual(try ModelImporter(source: hf, output: fromHF).run().kind, .safetensors)
        let a = try Data(contentsOf: URL(fileURLWithPath: gguf + "/model.safetensors"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fromHF + "/model.safetensors")), a, "same f32 weights give the same file")

        // An NF4 directory is validated and copied, not re-quantised.
        XCTAssertEqual(try ModelImporter.detect(gguf), .nf4)
        let copy = dir.appendingPathComponent("copy").path
        XCTAssertEqual(try ModelImporter(source: gguf, output: copy).run().kind, .nf4)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: copy + "/model.safetensors")), a)
    }

    func testUnsupportedSources() throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let out = dir.appendingPathComponent("o").path
        // A directory without config.json.
        let empty = dir.appendingPathComponent("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ModelImporter(source: empty, output: out).run()) { e in
            XCTAssertEqual(e as? ModelError, .missingFile(path: empty + "/config.json", what: "a model directory needs config.json (a Hugging Face Llama config)"))
        }
        // Not a GGUF file.
        let text = dir.appendingPathComponent("x.bin").path
        try Data("hello".utf8).write(to: URL(fileURLWithPath: text))
        XCTAssertThrowsError(try ModelImporter(source: text, output: out).run()) { e in
            guard case ModelError.unsupportedSource(text, _) = e else { return XCTFail("\(e)") }
        }
        // A GGUF of another architecture.
        var b = GGUFTestBuilder()
        b.string("general.architecture", "gpt2")
        let other = dir.appendingPathComponent("gpt2.gguf")
        try b.write(to: other)
        XCTAssertThrowsError(try ModelImporter(source: other.path, output: out).run()) { e in
            XCTAssertEqual(e as? ModelError, .unsupportedArchitecture(path: other.path, architecture: "gpt2"))
        }
        // A llama GGUF with a tensor type we cannot dequantise.
        b = try Self.tinyBuilder(qType: 13)
        let q5 = dir.appendingPathComponent("q5k.gguf")
        try b.write(to: q5)
        XCTAssertThrowsError(try ModelImporter(source: q5.path, output: out).run()) { e in
            guard case ModelError.unsupportedTensorType(q5.path, "blk.0.attn_q.weight", "Q5_K") = e else { return XCTFail("\(e)") }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }, [])
    }

    /// A minimal llama GGUF (hidden 256, 1 layer) whose attn_q has ggml type `qType`, other tensors F32.
    static func tinyBuilder(qType: UInt32) throws -> GGUFTestBuilder {
        var b = GGUFTestBuilder()
        b.string("general.architecture", "llama")
        b.u32("llama.block_count", 1); b.u32("llama.embedding_length", 256); b.u32("llama.feed_forward_length", 32)
        b.u32("llama.attention.head_count", 4); b.u32("llama.attention.head_count_kv", 4); b.u32("llama.context_length", 64)
        b.string("tokenizer.ggml.model", "gpt2")
        b.strings("tokenizer.ggml.tokens", ["a", "b", "ab", "<|end|>"]); b.strings("tokenizer.ggml.merges", ["a b"])
        b.int32s("tokenizer.ggml.token_type", [1, 1, 1, 3])
        func f32(_ name: String, _ dims: [UInt64]) {
            let n = Int(dims.reduce(1, *))
            b.tensor(name, dims: dims, type: 0, data: (0..<n).flatMap { GGUFTestBuilder.le(Float(Double($0 % 17) * 0.01).bitPattern) })
        }
        f32("token_embd.weight", [256, 4]); f32("output_norm.weight", [256])
        f32("blk.0.attn_norm.weight", [256]); f32("blk.0.ffn_norm.weight", [256])
        let qBytes = qType == 13 ? 176 * 256 : 256 * 256 * 4
        b.tensor("blk.0.attn_q.weight", dims: [256, 256], type: qType, data: [UInt8](repeating: 0, count: qBytes))
        f32("blk.0.attn_k.weight", [256, 256]); f32("blk.0.attn_v.weight", [256, 256]); f32("blk.0.attn_output.weight", [256, 256])
        f32("blk.0.ffn_gate.weight", [256, 32]); f32("blk.0.ffn_up.weight", [256, 32]); f32("blk.0.ffn_down.weight", [32, 256])
        return b
    }

    func testPermutationRoundTrips() {
        let rows = 3 * 8, cols = 5
        let x = (0..<(rows * cols)).map { Float($0) }
        XCTAssertEqual(LlamaPermutation.reversePermute(LlamaPermutation.permute(x, rows: rows, cols: cols, heads: 3), rows: rows, cols: cols, heads: 3), x)
        XCTAssertEqual(LlamaPermutation.permute(LlamaPermutation.reversePermute(x, rows: rows, cols: cols, heads: 3), rows: rows, cols: cols, heads: 3), x)
        // Within a head of 8 rows, GGUF rows 0,1,2,3,... hold HF rows 0,4,1,5,...
        let p = LlamaPermutation.permute(x, rows: rows, cols: cols, heads: 3)
        XCTAssertEqual(Array(p[(1 * cols)..<(2 * cols)]), Array(x[(4 * cols)..<(5 * cols)]))
        XCTAssertEqual(Array(p[(2 * cols)..<(3 * cols)]), Array(x[(1 * cols)..<(2 * cols)]))
    }

    func testSmolLM2RowsMatchTransformers() throws {
        // A handful of rows transformers loaded from the real GGUF (q/k un-permuted, f32).
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelTestSupport.fixture("model/smollm2_gguf_rows.json")))) as! [String: Any]
        let source = try GGUFModelSource(path: try ModelTestSupport.testGGUF())
        XCTAssertEqual(source.config.numAttentionHeads, 9); XCTAssertEqual(source.config.numKeyValueHeads, 3)
        XCTAssertTrue(source.config.tieWordEmbeddings)
        XCTAssertEqual(source.config.maxPositionEmbeddings, 8192)
        for (name, entry) in fixture["tensors"] as! [String: [String: Any]] {
            let t = source.tensors[name]!
            XCTAssertEqual(t.shape, entry["shape"] as? [Int], name)
            let values = try t.load()
            let cols = t.shape.count == 2 ? t.shape[1] : 0
            for (row, expectedRow) in entry["rows"] as! [String: [Double]] {
                let r = Int(row)!
                let got = Array(values[(r * cols)..<(r * cols + expectedRow.count)])
                XCTAssertEqual(got.map(\.bitPattern), expectedRow.map { Float($0).bitPattern }, "\(name) row \(r)")
            }
        }
    }
}
