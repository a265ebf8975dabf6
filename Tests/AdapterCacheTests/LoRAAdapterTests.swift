@testable import AdapterCache
import Foundation
import PEFTFixtures
import XCTest

final class LoRAAdapterTests: XCTestCase {
    /// The rebuilt fixture is the file PEFT wrote, byte for byte (FixtureAdapterA replays torch's RNG).
    func testRebuiltFixtureAdapterIsTheOriginalFile() throws {
        XCTAssertEqual(try FileDigest.sha256(file: TestSupport.fixtureA + "/adapter_model.safetensors"), FixtureAdapterA.sha256)
    }

    func testFixtureAdapterDecodesWithPEFTScaleAndShapes() throws {
        let adapter = try LoRAAdapterDecoder.load(directory: TestSupport.fixtureA)
        // SmolLM2-135M: 30 layers × 7 projections, hidden 576, intermediate 1536, 3 KV heads × 64.
        XCTAssertEqual(adapter.modules.count, 210)
        XCTAssertEqual(adapter.layerCount, 30)
        XCTAssertEqual(adapter.maxRank, 8)
        XCTAssertEqual(Set(adapter.projections), Set(LoRAProjection.allCases))
        let q = try XCTUnwrap(adapter.module(layer: 3, projection: .q))
        XCTAssertEqual(q.scale, 2.0)  // lora_alpha 16 / r 8
        XCTAssertEqual([q.rank, q.inFeatures, q.outFeatures], [8, 576, 576])
        let k = try XCTUnwrap(adapter.module(layer: 29, projection: .k))
        XCTAssertEqual([k.inFeatures, k.outFeatures], [576, 192])
        let down = try XCTUnwrap(adapter.module(layer: 0, projection: .down))
        XCTAssertEqual([down.inFeatures, down.outFeatures], [1536, 576])

        // Values are the file's, bit for bit, in the documented layout.
        let file = try SafetensorsFile(path: TestSupport.fixtureA + "/adapter_model.safetensors")
        let a = try file.floats("base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight")
        let b = try file.floats("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight")
        XCTAssertEqual(Array(adapter.a(q)), a)
        XCTAssertEqual(Array(adapter.b(down)), b)
        XCTAssertEqual(Int(bitPattern: adapter.a(q).baseAddress!) % 64, 0)
        XCTAssertEqual(Int(bitPattern: adapter.b(q).baseAddress!) % 64, 0)

        try adapter.validate(layerCount: 30, shapes: [.q: (576, 576), .k: (192, 576), .v: (192, 576), .o: (576, 576),
                                                     .gate: (1536, 576), .up: (1536, 576), .down: (576, 1536)])
    }

    /// The serving form: A and Bᵀ as halves (nearest even), half the bytes, aligned matrices, and the
    /// way back to f32 widens exactly to the rounded values.
    func testHalfPrecisionFormRoundsTransposesAndHalvesTheBytes() throws {
        let adapter = try LoRAAdapterDecoder.load(directory: TestSupport.fixtureA)
        let half = adapter.converted(to: .f16)
        XCTAssertEqual(half.precision, .f16)
        XCTAssertTrue(adapter.converted(to: .f32) === adapter)
        XCTAssertEqual(half.modules.count, adapter.modules.count)
        // Same padding rule (64-byte lines): exactly half the arena bytes.
        XCTAssertEqual(half.byteCount * 2, adapter.byteCount)
        for (m32, m16) in zip(adapter.modules, half.modules) {
            XCTAssertEqual([m32.layer, m32.rank, m32.inFeatures, m32.outFeatures], [m16.layer, m16.rank, m16.inFeatures, m16.outFeatures])
            XCTAssertEqual(m32.projection, m16.projection)
            XCTAssertEqual(Int(bitPattern: half.a16(m16).baseAddress!) % 64, 0)
            XCTAssertEqual(Int(bitPattern: half.bt16(m16).baseAddress!) % 64, 0)
            let a = adapter.a(m32), b = adapter.b(m32), a16 = half.a16(m16), bt16 = half.bt16(m16)
            for i in 0..<a.count { XCTAssertEqual(a16[i], Float16(a[i]).bitPattern, "\(m32.keyA)[\(i)]") }
            let r = m32.rank, out = m32.outFeatures
            for j in 0..<out { for t in 0..<r where bt16[t * out + j] != Float16(b[j * r + t]).bitPattern {
                XCTFail("\(m32.keyB)[\(j), \(t)]: Bᵀ must be B transposed")
            } }
        }
        let back = half.converted(to: .f32)
        XCTAssertEqual(back.precision, .f32)
        let down = try XCTUnwrap(back.module(layer: 0, projection: .down)), down32 = try XCTUnwrap(adapter.module(layer: 0, projection: .down))
        XCTAssertEqual(Array(back.b(down)), adapter.b(down32).map { Float(Float16($0)) })
        XCTAssertEqual(Array(back.a(down)), adapter.a(down32).map { Float(Float16($0)) })
    }

    /// The fastest mode's form (EK_DTYPE_I8): A and Bᵀ as int8 rows with one scale each (max |row| / 127),
    /// A rows padded to the kernels' stride, Bᵀ in rank quads, aligned matrices and scales, about a
    /// quarter of the f32 bytes; back to f32 every value is within half a step of the original, and
    /// f16 ↔ int8 goes through f32.
    func testInt8FormQuantisesEachRowAndQuartersTheBytes() throws {
        let adapter = try LoRAAdapterDecoder.load(directory: TestSupport.fixtureA)
        let q8 = adapter.converted(to: .int8)
        XCTAssertEqual(q8.precision, .int8)
        XCTAssertLessThan(Double(q8.byteCount), Double(adapter.byteCount) * 0.3)
        for (m32, m8) in zip(adapter.modules, q8.modules) {
            XCTAssertEqual([m32.layer, m32.rank, m32.inFeatures, m32.outFeatures], [m8.layer, m8.rank, m8.inFeatures, m8.outFeatures])
            let a = adapter.a(m32), b = adapter.b(m32), a8 = q8.a8(m8), bt8 = q8.bt8(m8)
            for p in [UnsafeRawPointer(a8.values.baseAddress!), UnsafeRawPointer(a8.scales.baseAddress!),
                      UnsafeRawPointer(bt8.values.baseAddress!), UnsafeRawPointer(bt8.scales.baseAddress!)] {
                XCTAssertEqual(Int(bitPattern: p) % 64, 0, "\(m32.keyA): every matrix and scale list starts a cache line")
            }
            let r = m32.rank, inF = m32.inFeatures, out = m32.outFeatures, lda = LoRAAdapter.int8AStride(m8)
            XCTAssertEqual(lda % 64, 0)
            XCTAssertGreaterThanOrEqual(lda, inF)
            for t in 0..<r {
                let amax = (0..<inF).map { abs(a[t * inF + $0]) }.max()!
                XCTAssertEqual(a8.scales[t], amax / 127, "\(m32.keyA) row \(t)")
                for k in 0..<inF where abs(Float(a8.values[t * lda + k]) * a8.scales[t] - a[t * inF + k]) > a8.scales[t] * 0.5001 {
                    XCTFail("\(m32.keyA)[\(t), \(k)] is more than half a step off"); break
                }
                XCTAssertTrue(a8.values[(t * lda + inF)..<((t + 1) * lda)].allSatisfy { $0 == 0 }, "\(m32.keyA) row \(t): zero past in")
                let bmax = (0..<out).map { abs(b[$0 * r + t]) }.max()!
                XCTAssertEqual(bt8.scales[t], bmax / 127, "\(m32.keyB) column \(t)")
                for j in 0..<out where abs(Float(bt8.values[LoRAAdapter.int8BtIndex(t, j, out: out)]) * bt8.scales[t] - b[j * r + t]) > bt8.scales[t] * 0.5001 {
                    XCTFail("\(m32.keyB)[\(j), \(t)]: Bᵀ row \(t) must be B's column \(t), within half a step"); break
                }
            }
        }
        let back = q8.converted(to: .f32)
        let down = try XCTUnwrap(back.module(layer: 0, projection: .down)), down8 = try XCTUnwrap(q8.module(layer: 0, projection: .down))
        let a8 = q8.a8(down8)
        XCTAssertEqual(back.a(down)[5], Float(a8.values[5]) * a8.scales[0])
        let viaF32 = adapter.converted(to: .f16).converted(to: .int8)
        XCTAssertEqual(viaF32.precision, .int8)
        XCTAssertEqual(viaF32.byteCount, q8.byteCount)
        XCTAssertEqual(q8.converted(to: .f16).precision, .f16)
    }

    func testValidateAgainstModelNamesTheOffendingKey() throws {
        let adapter = try LoRAAdapterDecoder.load(directory: TestSupport.fixtureA)
        let shapes: [LoRAProjection: (out: Int, in: Int)] = [.q: (576, 576), .k: (256, 576), .v: (192, 576), .o: (576, 576), .gate: (1536, 576), .up: (1536, 576), .down: (576, 1536)]
        XCTAssertAdapterError(try adapter.validate(layerCount: 30, shapes: shapes)) {
            if case .shapeMismatch(let key, _, _) = $0 { return key.hasSuffix("self_attn.k_proj.lora_B.weight") }
            return false
        }
        var right = shapes
        right[.k] = (192, 576)
        XCTAssertAdapterError(try adapter.validate(layerCount: 24, shapes: right)) {
            if case .shapeMismatch(let key, _, _) = $0 { return key.contains("layers.24.") }
            return false
        }
    }

    func testHalfAndBFloat16AreWidenedExactly() throws {
        for dtype in [SafetensorsDType.f16, .bf16] {
            let dir = TestSupport.tempDir("dt")
            let written = try TestSupport.writePEFT(dir, modules: TestSupport.llamaModules(layers: 1, dtype: dtype))
            let adapter = try LoRAAdapterDecoder.load(directory: dir)
            let m = try XCTUnwrap(adapter.module(layer: 0, projection: .up))
            let expected = written[m.keyA]!.map { dtype == .f16 ? Float(Float16($0)) : Float(bitPattern: UInt32(FloatConversion.bfloat16Bits($0)) << 16) }
            XCTAssertEqual(Array(adapter.a(m)), expected, "\(dtype)")
        }
    }

    func testRSLoRAAndRankAlphaPatternsFollowPEFT() throws {
        let dir = TestSupport.tempDir("pat")
        // q_proj everywhere gets rank 2; layer 1's k_proj rank 6 (a more specific key listed first wins);
        // alpha 32 for any mlp projection by regex.
        let modules = TestSupport.llamaModules(layers: 2, rank: 4) { l, p in
            if p == .q { return 2 }
            if p == .k && l == 1 { return 6 }
            return -1
        }
        try TestSupport.writePEFT(dir, modules: modules, config: """
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
         "rank_pattern": {"layers.1.self_attn.k_proj": 6, "q_proj": 2, "k_proj": 3},
         "alpha_pattern": {"mlp\\\\..*_proj": 32},
         "target_modules": "model\\\\.layers\\\\.\\\\d+\\\\.(self_attn|mlp)\\\\..*"}
        """)
        XCTAssertAdapterError(try LoRAAdapterDecoder.load(directory: dir)) {
            // layer 0 k_proj has rank 4 in the file but the pattern "k_proj" says 3.
            if case .badTensor(_, let key, let reason) = $0 { return key.contains("layers.0.self_attn.k_proj.lora_A") && reason.contains("r=3") }
            return false
        }
        try TestSupport.writePEFT(dir, modules: modules, config: """
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true,
         "rank_pattern": {"layers.1.self_attn.k_proj": 6, "q_proj": 2},
         "alpha_pattern": {"mlp\\\\..*_proj": 32},
         "target_modules": "model\\\\.layers\\\\.\\\\d+\\\\.(self_attn|mlp)\\\\..*"}
        """)
        let adapter = try LoRAAdapterDecoder.load(directory: dir)
        XCTAssertEqual(adapter.module(layer: 0, projection: .q)?.rank, 2)
        XCTAssertEqual(adapter.module(layer: 0, projection: .q)!.scale, Float(8 / 2.0.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(adapter.module(layer: 1, projection: .k)?.rank, 6)
        XCTAssertEqual(adapter.module(layer: 0, projection: .k)!.scale, Float(8 / 2.0), accuracy: 1e-6)  // rank 4, rsLoRA
        XCTAssertEqual(adapter.module(layer: 1, projection: .gate)!.scale, Float(32 / 2.0), accuracy: 1e-6)
        XCTAssertTrue(adapter.config.targets(module: "model.layers.3.mlp.up_proj"))
        XCTAssertFalse(adapter.config.targets(module: "lm_head"))
    }

    func testPatternKeyIsPEFTsGetPatternKey() {
        let keys = ["q_proj", "layers.1.self_attn.k_proj", "mlp\\..*"]
        XCTAssertEqual(PEFTConfig.patternKey(keys, matching: "model.layers.0.self_attn.q_proj"), "q_proj")
        XCTAssertEqual(PEFTConfig.patternKey(keys, matching: "model.layers.1.self_attn.k_proj"), "layers.1.self_attn.k_proj")
        XCTAssertNil(PEFTConfig.patternKey(keys, matching: "model.layers.11.self_attn.k_proj"))  // ".layers.1" must follow a dot boundary
        XCTAssertEqual(PEFTConfig.patternKey(keys, matching: "model.layers.2.mlp.down_proj"), "mlp\\..*")
        XCTAssertNil(PEFTConfig.patternKey(["_proj"], matching: "model.layers.0.self_attn.q_proj"))  // suffix must start at a dot
    }

    /// `layers_to_transform` as PEFT writes it: one index or a list; the layers it names load.
    func testLayersToTransformListsTheAdaptedLayers() throws {
        XCTAssertNil(try PEFTConfig(data: Data(#"{"r": 4}"#.utf8), label: "c").layersToTransform)
        XCTAssertEqual(try PEFTConfig(data: Data(#"{"r": 4, "layers_to_transform": 3}"#.utf8), label: "c").layersToTransform, [3])
        XCTAssertEqual(try PEFTConfig(data: Data(#"{"r": 4, "layers_to_transform": [0, 2, 2]}"#.utf8), label: "c").layersToTransform, [0, 2])
        let dir = TestSupport.tempDir("layers")
        try TestSupport.writePEFT(dir, modules: TestSupport.llamaModules(layers: 2), config: #"{"r": 4, "lora_alpha": 8, "layers_to_transform": [0, 1]}"#)
        XCTAssertEqual(try LoRAAdapterDecoder.load(directory: dir).layerCount, 2)
    }

    /// Keys past 256 characters (where Foundation's regex leaked its pattern copy) match as short ones do.
    func testLongPatternKeysAndTargetRegex() throws {
        let layers = (0..<40).map { "layers\\.\($0)" }.joined(separator: "|")
        let key = "(\(layers))\\.self_attn\\.q_proj"
        XCTAssertGreaterThan(key.utf16.count, 300)
        XCTAssertEqual(PEFTConfig.patternKey(["mlp\\..*", key], matching: "model.layers.37.self_attn.q_proj"), key)
        XCTAssertNil(PEFTConfig.patternKey([key], matching: "model.layers.41.self_attn.q_proj"))
        let config = try PEFTConfig(data: Data("""
            {"r": 4, "lora_alpha": 8, "rank_pattern": {\(String(reflecting: key)): 2},
             "target_modules": \(String(reflecting: "model\\.(\(layers))\\.self_attn\\.(q|v)_proj"))}
            """.utf8), label: "long.json")
        XCTAssertEqual(config.rankAndAlpha(forModule: "model.layers.3.self_attn.q_proj").rank, 2)
        XCTAssertEqual(config.rankAndAlpha(forModule: "model.layers.3.self_attn.k_proj").rank, 4)
        XCTAssertTrue(config.targets(module: "model.layers.39.self_attn.v_proj"))
        XCTAssertFalse(config.targets(module: "model.layers.39.self_attn.k_proj"))
        XCTAssertFalse(config.targets(module: "model.layers.40.self_attn.q_proj"))
        XCTAssertThrowsError(try PEFTConfig(data: Data(#"{"r": 4, "rank_pattern": {"q_proj(": 2}}"#.utf8), label: "bad.json"))
    }

    func testRefusalsNameTheKey() throws {
        func expect(_ modules: [TestSupport.Module], config: String? = nil, _ check: (AdapterError) -> Bool, line: UInt = #line) throws {
            let dir = TestSupport.tempDir("bad")
            if let config { try TestSupport.writePEFT(dir, modules: modules, config: config) } else { try TestSupport.writePEFT(dir, modules: modules) }
            XCTAssertAdapterError(try LoRAAdapterDecoder.load(directory: dir), line: line, check)
        }
        var ms = TestSupport.llamaModules(layers: 1)
        // Missing partner.
        try expect(ms.filter { !$0.key.contains("v_proj.lora_B") }) {
            if case .missingPartner(_, let k, let p) = $0 { return k.contains("v_proj.lora_A") && p.contains("v_proj.lora_B") }
            return false
        }
        // lora_B columns disagree with lora_A rows.
        ms = TestSupport.llamaModules(layers: 1)
        let bi = ms.firstIndex { $0.key.contains("o_proj.lora_B") }!
        ms[bi].shape = [16, 5]
        try expect(ms) {
            if case .badTensor(_, let k, let r) = $0 { return k.contains("o_proj.lora_B") && r.contains("rank 4") }
            return false
        }
        // Not a Llama projection.
        ms = TestSupport.llamaModules(layers: 1) + [.init(key: "base_model.model.model.layers.0.mlp.fc1.lora_A.weight", shape: [4, 16]),
                                                    .init(key: "base_model.model.model.layers.0.mlp.fc1.lora_B.weight", shape: [16, 4])]
        try expect(ms) {
            if case .unsupported(_, let k, let r) = $0 { return k.contains("mlp.fc1.lora_") && r.contains("not a Llama projection") }
            return false
        }
        // Embedding LoRA.
        ms = TestSupport.llamaModules(layers: 1) + [.init(key: "base_model.model.model.embed_tokens.lora_embedding_A", shape: [4, 100])]
        try expect(ms) {
            if case .unsupported(_, let k, let r) = $0 { return k.hasSuffix("lora_embedding_A") && r.contains("embedding LoRA") }
            return false
        }
        // Full weights saved beside the LoRA tensors (modules_to_save).
        ms = TestSupport.llamaModules(layers: 1) + [.init(key: "base_model.model.lm_head.modules_to_save.default.weight", shape: [100, 16])]
        try expect(ms) {
            if case .unsupported(_, let k, _) = $0 { return k.contains("modules_to_save") }
            return false
        }
        try expect(TestSupport.llamaModules(layers: 1), config: #"{"r": 4, "lora_alpha": 8, "modules_to_save": ["lm_head"]}"#) {
            if case .unsupported(_, let k, _) = $0 { return k == "modules_to_save" }
            return false
        }
        try expect(TestSupport.llamaModules(layers: 1), config: #"{"r": 4, "lora_alpha": 8, "use_dora": true}"#) {
            if case .unsupported(_, let k, _) = $0 { return k == "use_dora" }
            return false
        }
        try expect(TestSupport.llamaModules(layers: 1), config: #"{"r": "eight"}"#) {
            if case .badConfig(_, let k, _) = $0 { return k == "r" }
            return false
        }
        // Weights for a layer the config's layers_to_transform leaves out (PEFT would drop them).
        try expect(TestSupport.llamaModules(layers: 2), config: #"{"r": 4, "lora_alpha": 8, "layers_to_transform": [0]}"#) {
            if case .badTensor(_, let k, let r) = $0 { return k.contains("layers.1.") && r.contains("layers_to_transform") }
            return false
        }
        try expect(TestSupport.llamaModules(layers: 1), config: #"{"r": 4, "layers_to_transform": ["0"]}"#) {
            if case .badConfig(_, let k, _) = $0 { return k == "layers_to_transform" }
            return false
        }
        try expect(TestSupport.llamaModules(layers: 1), config: #"{"r": 4, "layers_to_transform": -1}"#) {
            if case .badConfig(_, let k, _) = $0 { return k == "layers_to_transform" }
            return false
        }
        // Integer tensors and NaNs.
        ms = TestSupport.llamaModules(layers: 1)
        ms[0].dtype = .i32
        try expect(ms) {
            if case .badTensor(_, let k, let r) = $0 { return k == ms[0].key && r.contains("I32") }
            return false
        }
        ms = TestSupport.llamaModules(layers: 1)
        ms[3].values = [Float](repeating: .nan, count: ms[3].shape.reduce(1, *))
        try expect(ms) {
            if case .badTensor(_, let k, let r) = $0 { return k == ms[3].key && r.contains("NaN") }
            return false
        }
    }
}
