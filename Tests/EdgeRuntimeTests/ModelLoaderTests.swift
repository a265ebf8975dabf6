import AdapterCache
@testable import EdgeRuntime
import Foundation
import XCTest

/// The NF4 loader: validation of every kind of bad file (each a typed error naming the file), the
/// config reader, and the memory behaviour of the mapping on the real model.
final class ModelLoaderTests: XCTestCase {
    /// A freshly imported tiny model directory, copied per test so tests can damage it.
    private func tinyModel() throws -> String {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let out = dir.appendingPathComponent("m").path
        try ModelImporter(source: ModelImportTests.tinyGGUF, output: out).run()
        return out
    }

    /// Rewrites model.safetensors' header JSON (keeping the data section) through `edit`.
    private func editHeader(_ dir: String, _ edit: (inout [String: Any]) -> Void) throws {
        let path = dir + "/model.safetensors"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        edit(&header)
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        out += json
        out += data.subdata(in: (8 + n)..<data.count)
        try out.write(to: URL(fileURLWithPath: path))
    }

    private func expectFailure(_ dir: String, file: StaticString = #filePath, line: UInt = #line, _ check: (ModelError) -> Bool) {
        do {
            _ = try NF4Model(directory: dir)
            XCTFail("expected the model to be refused", file: file, line: line)
        } catch {
            XCTAssertTrue(check(error), "unexpected error: \(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(dir), "the error names the file: \(error)", file: file, line: line)
        }
    }

    func testValidModelOpensWithViews() throws {
        let dir = try tinyModel()
        let m = try NF4Model(directory: dir)
        XCTAssertEqual(m.config.hiddenSize, 256)
        XCTAssertFalse(m.config.tieWordEmbeddings)
        XCTAssertEqual(m.lmHead.shape, [319, 256]); XCTAssertEqual(m.embedTokens.dtype, .f32)
        let k = m.projection(layer: 0, .k)
        XCTAssertEqual(k.name, "model.layers.0.self_attn.k_proj")
        XCTAssertEqual([k.rows, k.cols], [128, 256])
        XCTAssertTrue(k.isDoubleQuantised)
        XCTAssertNotNil(k.absmaxQ8); XCTAssertNil(k.absmaxF32); XCTAssertNotNil(k.dqMap)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: k.quantMap, count: 16)), NF4Tables.codes)
        // The views point into the mapping: no copy.
        let fileStart = m.file.fileBytes.baseAddress!, fileEnd = fileStart + m.file.fileBytes.count
        XCTAssertTrue(UnsafeRawPointer(k.packed) >= fileStart && UnsafeRawPointer(k.packed) < fileEnd)
        XCTAssertEqual(m.digest().count, 64)
    }

    func testTruncatedAndBadHeaders() throws {
        let dir = try tinyModel()
        let path = dir + "/model.safetensors"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // Truncated data section.
        try original.prefix(original.count - 100).write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .safetensors(.truncated) = $0 { return true }; return false }
        // Header length past the end of the file.
        var bad = original
        bad.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(original.count).littleEndian) { Data($0) })
        try bad.write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .safetensors(.truncated) = $0 { return true }; return false }
        // Shorter than the length prefix.
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .safetensors(.truncated) = $0 { return true }; return false }
        // Invalid UTF-8 and invalid JSON in the header.
        bad = original
        bad[9] = 0xff
        try bad.write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .safetensors(.badHeader(_, let r)) = $0 { return r.contains("UTF-8") }; return false }
        bad = original
        bad[8] = UInt8(ascii: "[")
        try bad.write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .safetensors(.badHeader) = $0 { return true }; return false }
    }

    func testOverlappingOutOfRangeUnknownDtypeAndWrongShapes() throws {
        let w = "model.layers.0.self_attn.q_proj.weight"
        var dir = try tinyModel()
        try editHeader(dir) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            let o = e["data_offsets"] as! [Int]
            e["data_offsets"] = [o[0] + 4, o[1] + 4]
            h["model.norm.weight"] = e
        }
        expectFailure(dir) { if case .safetensors(.badTensor(_, _, let r)) = $0 { return r.contains("overlap") }; return false }

        dir = try tinyModel()
        try editHeader(dir) { h in
            var e = h[w] as! [String: Any]
            e["data_offsets"] = [100_000_000, 100_000_000 + 32768]
            h[w] = e
        }
        expectFailure(dir) { if case .safetensors(.truncated(_, let r)) = $0 { return r.contains(w) }; return false }

        dir = try tinyModel()
        try editHeader(dir) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            e["dtype"] = "F8_E4M3"
            h["model.norm.weight"] = e
        }
        expectFailure(dir) { if case .safetensors(.badTensor(_, "model.norm.weight", let r)) = $0 { return r.contains("unknown dtype") }; return false }

        // A shape that disagrees with config.json (byte length still consistent).
        dir = try tinyModel()
        try editHeader(dir) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            e["shape"] = [128, 2]
            h["model.norm.weight"] = e
        }
        expectFailure(dir) { if case .badTensor(_, "model.norm.weight", let r) = $0 { return r.contains("config.json") }; return false }

        // A tensor the config needs is absent.
        dir = try tinyModel()
        try editHeader(dir) { h in h["lm_head.weight.renamed"] = h.removeValue(forKey: "lm_head.weight") }
        expectFailure(dir) { $0 == .missingTensor(path: dir + "/model.safetensors", tensor: "lm_head.weight") }

        // absmax of the wrong length for the quant_state's blocksize.
        dir = try tinyModel()
        try editHeader(dir) { h in
            var e = h[w + ".absmax"] as! [String: Any]
            let o = e["data_offsets"] as! [Int]
            e["shape"] = [o[1] - o[0] - 2]
            e["data_offsets"] = [o[0], o[1] - 2]
            h[w + ".absmax"] = e
        }
        expectFailure(dir) { if case .badTensor(_, let t, _) = $0 { return t == w + ".absmax" }; return false }
    }

    func testInconsistentQuantState() throws {
        let dir = try tinyModel()
        let path = dir + "/model.safetensors"
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        // Same length JSON, different shape: [256, 256] → [128, 512].
        let from = Data("\"shape\": [256, 256]".utf8), to = Data("\"shape\": [128, 512]".utf8)
        let r = try XCTUnwrap(data.range(of: from))
        data.replaceSubrange(r, with: to)
        try data.write(to: URL(fileURLWithPath: path))
        expectFailure(dir) { if case .badQuantState(_, _, let r) = $0 { return r.contains("shape") }; return false }
    }

    func testConfigProblems() throws {
        var dir = try tinyModel()
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        expectFailure(dir) { if case .missingFile(let p, _) = $0 { return p.hasSuffix("config.json") }; return false }

        dir = try tinyModel()
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        expectFailure(dir) { if case .badConfig = $0 { return true }; return false }

        dir = try tinyModel()
        try Data([0x7b, 0xff, 0x7d]).write(to: URL(fileURLWithPath: dir + "/config.json"))
        expectFailure(dir) { if case .badConfig(_, _, let r) = $0 { return r.contains("UTF-8") }; return false }

        dir = try tinyModel()
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
        cfg["hidden_size"] = 512
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        expectFailure(dir) { if case .badTensor = $0 { return true }; if case .badQuantState = $0 { return true }; return false }

        dir = try tinyModel()
        cfg["hidden_size"] = 256
        cfg["model_type"] = "gpt_neox"
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        expectFailure(dir) { if case .unsupportedArchitecture = $0 { return true }; return false }

        dir = try tinyModel()
        cfg["model_type"] = "llama"
        cfg.removeValue(forKey: "num_hidden_layers")
        try JSONSerialization.data(withJSONObject: cfg).write(to: URL(fileURLWithPath: dir + "/config.json"))
        expectFailure(dir) { if case .badConfig(_, let k, _) = $0 { return k == "num_hidden_layers" }; return false }
    }

    func testConfigReadsBothTransformersGenerations() throws {
        let v4 = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
         "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
         "rope_theta": 500000.0, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
         "original_max_position_embeddings": 8192, "rope_type": "llama3"}, "max_position_embeddings": 131072,
         "vocab_size": 128256, "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
         "torch_dtype": "bfloat16"}
        """
        let a = try LlamaConfig.decode(Data(v4.utf8), path: "v4/config.json")
        XCTAssertEqual(a.headDim, 64, "missing head_dim = hidden / heads")
        XCTAssertEqual(a.ropeTheta, 500000)
        XCTAssertEqual(a.ropeScaling, .init(ropeType: "llama3", factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192))
        XCTAssertEqual(a.eosTokenIDs, [128001, 128008, 128009])
        XCTAssertEqual(a.torchDtype, "bfloat16")
        let v5 = """
        {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
         "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-05,
         "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "high_freq_factor": 4.0,
         "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}, "max_position_embeddings": 131072,
         "vocab_size": 128256, "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128001, "dtype": "bfloat16"}
        """
        let b = try LlamaConfig.decode(Data(v5.utf8), path: "v5/config.json")
        XCTAssertEqual(b.ropeTheta, a.ropeTheta)
        XCTAssertEqual(b.ropeScaling, a.ropeScaling)
        XCTAssertEqual(b.torchDtype, "bfloat16")
        // What we write reads back the same.
        let written = a.jsonObject(quantizationConfig: LlamaConfig.nf4QuantizationConfig).serialized()
        var back = try LlamaConfig.decode(Data(written.utf8), path: "w/config.json")
        XCTAssertNotNil(back.quantization)
        back.quantization = nil
        XCTAssertEqual(back, a)
        XCTAssertThrowsError(try LlamaConfig.decode(Data(#"{"model_type": "llama", "hidden_size": 10, "intermediate_size": 1, "num_hidden_layers": 1, "num_attention_heads": 3, "vocab_size": 5}"#.utf8), path: "c.json")) { e in
            guard case ModelError.badConfig("c.json", "head_dim", _) = e else { return XCTFail("\(e)") }
        }
    }

    // MARK: - Memory behaviour on the real model

    /// SmolLM2 imported once for the memory tests.
    static let smolDirectory: Result<String, Error> = Result(catching: { () throws -> String in
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edge-model-tests-smollm2-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        let gguf = ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ModelTestSupport.repoRoot.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        try ModelImporter(source: gguf, output: dir).run()
        return dir
    })

    override class func tearDown() {
        if case .success(let dir) = smolDirectory { try? FileManager.default.removeItem(atPath: dir) }
        super.tearDown()
    }

    func testSmolLM2ImportIsWithinNF4ErrorOfTheGGUFWeights() throws {
        let gguf = try ModelTestSupport.testGGUF()
        let model = try NF4Model(directory: try Self.smolDirectory.get())
        XCTAssertEqual(model.layers.count, 30)
        XCTAssertTrue(model.config.tieWordEmbeddings)
        let source = try GGUFModelSource(path: gguf)
        for (layer, p) in [(0, LlamaProjection.q), (0, .k), (17, .down), (29, .v)] {
            let view = model.projection(layer: layer, p)
            let original = try source.tensors["model.layers.\(layer).\(p.rawValue).weight"]!.load()
            let deq = view.dequantized(), stored = view.absmax()
            var worst: Float = 0
            for b in 0..<view.blockCount {
                let block = original[(b * 64)..<min(original.count, b * 64 + 64)]
                let a = block.map(abs).max()!
                for i in block.indices {
                    let excess = abs(deq[i] - original[i]) - (0.153 * a + abs(stored[b] - a))
                    worst = max(worst, excess)
                }
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(view.name) exceeds the NF4 error bound")
        }
        // Embeddings and norms are kept exactly.
        XCTAssertEqual(model.norm.floats(), try source.tensors["model.norm.weight"]!.load())
    }

    /// The smaps fields of the mapping that contains `address`.
    static func smaps(pid: String = "self", containing address: UnsafeRawPointer) throws -> [String: Int] {
        // procfs files report size 0: read to the end rather than by size.
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/smaps"))
        defer { try? handle.close() }
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var inside = false
        var fields: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if let range = parts.first, range.contains("-"), parts.count >= 5, !range.hasSuffix(":") {
                let bounds = range.split(separator: "-").compactMap { UInt($0, radix: 16) }
                if inside { break }
                inside = bounds.count == 2 && bounds[0] <= target && target < bounds[1]
                continue
            }
            if inside, parts.count >= 2, parts[0].hasSuffix(":"), let v = Int(parts[1]) {
                fields[String(parts[0].dropLast())] = v
            }
        }
        return fields
    }

    func testMappingStaysCleanAndIsSharedWithAnotherProcess() throws {
        _ = try ModelTestSupport.testGGUF()
        let dir = try Self.smolDirectory.get()
        let model = try NF4Model(directory: dir)
        let bytes = model.file.fileBytes
        // Touch every page of the mapping (as inference eventually does).
        var sum: UInt64 = 0
        for offset in stride(from: 0, to: bytes.count, by: 4096) { sum &+= UInt64(bytes[offset]) }
        XCTAssertNotEqual(sum, 1)
        let sizeKB = bytes.count / 1024
        let mine = try Self.smaps(containing: bytes.baseAddress!)
        XCTAssertGreaterThan(mine["Rss"] ?? 0, sizeKB * 9 / 10, "all pages resident: \(mine)")
        XCTAssertLessThan(mine["Private_Dirty"] ?? .max, 64, "no private copy of the weights: \(mine)")
        XCTAssertLessThan(mine["Anonymous"] ?? .max, 64, "\(mine)")
        XCTAssertLessThan(mine["Shared_Clean"] ?? .max, sizeKB / 10, "only this process maps the file yet: \(mine)")

        // A second process maps the same file: the pages become shared between the two, i.e. both
        // map the same page-cache pages.
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        child.arguments = ["python3", "-c", """
        import mmap, sys
        f = open(sys.argv[1], 'rb'); m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        s = sum(m[i] for i in range(0, len(m), 4096))
        print('ready', flush=True); sys.stdin.readline()
        """, model.modelPath]
        let input = Pipe(), output = Pipe()
        child.standardInput = input
        child.standardOutput = output
        try child.run()
        defer { try? input.fileHandleForWriting.close(); child.waitUntilExit() }
        let ready = output.fileHandleForReading.availableData
        XCTAssertEqual(String(decoding: ready, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), "ready")
        let shared = try Self.smaps(containing: bytes.baseAddress!)
        XCTAssertGreaterThan(shared["Shared_Clean"] ?? 0, sizeKB * 9 / 10, "pages shared with the other process: \(shared)")
        XCTAssertLessThan(shared["Private_Dirty"] ?? .max, 64, "\(shared)")
    }
}
