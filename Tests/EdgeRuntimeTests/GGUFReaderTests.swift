@testable import EdgeRuntime
import Foundation
import XCTest

/// The GGUF reader and ggml block decoding, against blocks built here by hand from the format's
/// layout (the expected values are computed in the test, not by the decoder).
final class GGUFReaderTests: XCTestCase {
    private func f16(_ x: Float) -> [UInt8] { GGUFTestBuilder.le(Float16(x).bitPattern) }

    private func open(_ b: GGUFTestBuilder) throws -> GGUFFile {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let url = dir.appendingPathComponent("t.gguf")
        try b.write(to: url)
        return try GGUFFile(path: url.path)
    }

    private func expectError(_ b: GGUFTestBuilder, file: StaticString = #filePath, line: UInt = #line, _ check: (ModelError) -> Bool) throws {
        let dir = try ModelTestSupport.scratchDirectory(self)
        let url = dir.appendingPathComponent("bad.gguf")
        try b.write(to: url)
        do {
            _ = try GGUFFile(path: url.path)
            XCTFail("expected an error", file: file, line: line)
        } catch {
            XCTAssertTrue(check(error), "unexpected \(error)", file: file, line: line)
            XCTAssertTrue(error.description.contains(url.path), "error names the file: \(error)", file: file, line: line)
        }
    }

    // MARK: - Block formats

    func testQ8_0() throws {
        let qs: [Int8] = (0..<32).map { Int8(truncatingIfNeeded: $0 * 9 - 128) }
        var b = GGUFTestBuilder()
        b.tensor("t", dims: [32], type: 8, data: f16(0.5) + qs.map { UInt8(bitPattern: $0) })
        let g = try open(b)
        XCTAssertEqual(try g.dequantize(g.tensor("t")!), qs.map { 0.5 * Float($0) })
    }

    func testQ4_0AndQ4_1() throws {
        let lo: [UInt8] = (0..<16).map { UInt8($0) }, hi: [UInt8] = (0..<16).map { UInt8(15 - $0) }
        let qs = zip(lo, hi).map { $0 | ($1 << 4) }
        var b = GGUFTestBuilder()
        b.tensor("q40", dims: [32], type: 2, data: f16(0.25) + qs)
        b.tensor("q41", dims: [32], type: 3, data: f16(0.5) + f16(-1) + qs)
        let g = try open(b)
        // Elements 0..15 are the low nibbles, 16..31 the high ones.
        XCTAssertEqual(try g.dequantize(g.tensor("q40")!), lo.map { (Float($0) - 8) * 0.25 } + hi.map { (Float($0) - 8) * 0.25 })
        XCTAssertEqual(try g.dequantize(g.tensor("q41")!), lo.map { Float($0) * 0.5 - 1 } + hi.map { Float($0) * 0.5 - 1 })
    }

    func testQ4_K() throws {
        // 8 sub-blocks of 32 with 6-bit scales and mins, values ≥ 16 in sub-blocks 4–7 to exercise the
        // high bits stored in bytes 0–7.
        let sc: [UInt8] = [1, 2, 3, 63, 17, 33, 48, 60]
        let mn: [UInt8] = [0, 1, 5, 63, 20, 40, 2, 59]
        var scales = [UInt8](repeating: 0, count: 12)
        for j in 0..<4 {
            scales[j] = sc[j] | ((sc[j + 4] >> 4) << 6)
            scales[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6)
            scales[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4)
        }
        let q: [UInt8] = (0..<256).map { UInt8(($0 * 7 + $0 / 32) % 16) }
        var qs = [UInt8](repeating: 0, count: 128)
        for s in 0..<8 {
            for l in 0..<32 {
                let byte = 32 * (s / 2) + l
                qs[byte] |= s % 2 == 0 ? q[32 * s + l] : q[32 * s + l] << 4
            }
        }
        var b = GGUFTestBuilder()
        b.tensor("t", dims: [256], type: 12, data: f16(1.0) + f16(0.5) + scales + qs)
        let g = try open(b)
        let expected: [Float] = (0..<256).map { i in let s = i / 32; return 1.0 * Float(sc[s]) * Float(q[i]) - 0.5 * Float(mn[s]) }
        XCTAssertEqual(try g.dequantize(g.tensor("t")!), expected)
    }

    func testQ6_K() throws {
        let scales: [Int8] = [-3, 1, 2, 5, -8, 7, 127, -128, 4, -1, 9, 10, -11, 12, 3, 6]
        let q: [UInt8] = (0..<256).map { UInt8(($0 * 37 + 11) % 64) }
        var ql = [UInt8](repeating: 0, count: 128), qh = [UInt8](repeating: 0, count: 64)
        for i in 0..<256 {
            let half = i / 128, r = i % 128, k = r / 32, l = r % 32
            let low = q[i] & 0x0f, high = q[i] >> 4
            let qlIndex = half * 64 + (k % 2 == 0 ? l : l + 32)
            ql[qlIndex] |= k < 2 ? low : low << 4
            qh[half * 32 + l] |= high << (2 * k)
        }
        var b = GGUFTestBuilder()
        b.tensor("t", dims: [256], type: 14, data: ql + qh + scales.map { UInt8(bitPattern: $0) } + f16(0.125))
        let g = try open(b)
        let expected: [Float] = (0..<256).map { i in
            let half = i / 128, r = i % 128, k = r / 32, l = r % 32
            return 0.125 * Float(scales[half * 8 + l / 16 + 2 * k]) * Float(Int(q[i]) - 32)
        }
        XCTAssertEqual(try g.dequantize(g.tensor("t")!), expected)
    }

    func testFloatTypesAndShapeOrder() throws {
        var b = GGUFTestBuilder()
        let f32: [Float] = [1, -2, 3.5, 0.25, 5, 6]
        b.tensor("f32", dims: [3, 2], type: 0, data: f32.flatMap { GGUFTestBuilder.le($0.bitPattern) })
        b.tensor("f16", dims: [2], type: 1, data: f16(1.5) + f16(-2))
        b.tensor("bf16", dims: [2], type: 30, data: GGUFTestBuilder.le(UInt16(0x3FC0)) + GGUFTestBuilder.le(UInt16(0xC100)))
        let g = try open(b)
        let t = g.tensor("f32")!
        XCTAssertEqual(t.dims, [3, 2])
        XCTAssertEqual(t.shape, [2, 3], "GGUF lists the innermost dimension first")
        XCTAssertEqual(try g.dequantize(t), f32)
        XCTAssertEqual(try g.dequantize(g.tensor("f16")!), [1.5, -2])
        XCTAssertEqual(try g.dequantize(g.tensor("bf16")!), [1.5, -8])
    }

    // MARK: - Metadata

    func testAllMetadataTypesAndAlignment() throws {
        var b = GGUFTestBuilder()
        b.alignment = 64
        b.add("general.alignment", type: 4, GGUFTestBuilder.le(UInt32(64)))
        b.add("u8", type: 0, [200]); b.add("i8", type: 1, [0xff]); b.add("u16", type: 2, GGUFTestBuilder.le(UInt16(65000)))
        b.add("i16", type: 3, GGUFTestBuilder.le(Int16(-300))); b.add("i32", type: 5, GGUFTestBuilder.le(Int32(-7)))
        b.add("u64", type: 10, GGUFTestBuilder.le(UInt64(1) << 40)); b.add("i64", type: 11, GGUFTestBuilder.le(Int64(-5)))
        b.add("f64", type: 12, GGUFTestBuilder.le((0.1).bitPattern)); b.f32("f32", 2.5); b.bool("b", true)
        b.string("s", "héllo")
        b.add("nested", type: 9, GGUFTestBuilder.le(UInt32(9)) + GGUFTestBuilder.le(UInt64(2))
            + GGUFTestBuilder.le(UInt32(4)) + GGUFTestBuilder.le(UInt64(1)) + GGUFTestBuilder.le(UInt32(3))
            + GGUFTestBuilder.le(UInt32(8)) + GGUFTestBuilder.le(UInt64(0)))
        b.tensor("a", dims: [1], type: 0, data: GGUFTestBuilder.le(Float(1).bitPattern))
        b.tensor("b", dims: [1], type: 0, data: GGUFTestBuilder.le(Float(2).bitPattern))
        let g = try open(b)
        XCTAssertEqual(g.alignment, 64)
        XCTAssertEqual(g.dataOffset % 64, 0)
        XCTAssertEqual(g.tensor("b")!.offset, 64)
        XCTAssertEqual(try g.dequantize(g.tensor("b")!), [2])
        XCTAssertEqual(g.metadata["u8"], .uint8(200)); XCTAssertEqual(g.metadata["i8"], .int8(-1))
        XCTAssertEqual(g.metadata["u16"], .uint16(65000)); XCTAssertEqual(g.metadata["i16"], .int16(-300))
        XCTAssertEqual(g.metadata["i32"], .int32(-7)); XCTAssertEqual(g.metadata["u64"], .uint64(1 << 40))
        XCTAssertEqual(g.metadata["i64"], .int64(-5)); XCTAssertEqual(g.metadata["f64"], .float64(0.1))
        XCTAssertEqual(g.metadata["f32"], .float32(2.5)); XCTAssertEqual(g.metadata["b"], .bool(true))
        XCTAssertEqual(g.metadata["s"], .string("héllo"))
        XCTAssertEqual(g.metadata["nested"], .array(elementType: 9, [.array(elementType: 4, [.uint32(3)]), .array(elementType: 8, [])]))
        XCTAssertEqual(g.metadataKeys.first, "general.alignment")
    }

    // MARK: - Bad input

    func testBadFiles() throws {
        var b = GGUFTestBuilder()
        b.magic = Array("GGUX".utf8)
        try expectError(b) { if case .badGGUF = $0 { return true }; return false }

        b = GGUFTestBuilder(); b.version = 1
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("version 1") }; return false }

        b = GGUFTestBuilder(); b.add("k", type: 8, GGUFTestBuilder.rawStr([0xff, 0xfe]))
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("UTF-8") }; return false }

        b = GGUFTestBuilder(); b.add("k", type: 13, [0])
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("unknown value type") }; return false }

        b = GGUFTestBuilder(); b.add("k", type: 8, GGUFTestBuilder.le(UInt64(1) << 40))
        try expectError(b) { if case .truncated = $0 { return true }; return false }

        b = GGUFTestBuilder(); b.string("k", "a"); b.string("k", "b")
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("twice") }; return false }

        b = GGUFTestBuilder(); b.tensor("t", dims: [32], type: 99, data: [UInt8](repeating: 0, count: 32))
        try expectError(b) { if case .unsupportedTensorType(_, "t", _) = $0 { return true }; return false }

        b = GGUFTestBuilder(); b.tensor("t", dims: [33], type: 8, data: [UInt8](repeating: 0, count: 34))
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("multiple") }; return false }

        b = GGUFTestBuilder(); b.tensor("t", dims: [8], type: 0, data: [UInt8](repeating: 0, count: 32)); b.offsetOverride["t"] = 4096
        try expectError(b) { if case .truncated(_, let r) = $0 { return r.contains("'t'") }; return false }

        b = GGUFTestBuilder(); b.tensor("t", dims: [8], type: 0, data: [UInt8](repeating: 0, count: 32)); b.offsetOverride["t"] = 4
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("alignment") }; return false }

        b = GGUFTestBuilder()
        b.tensor("a", dims: [16], type: 0, data: [UInt8](repeating: 0, count: 64))
        b.tensor("b", dims: [16], type: 0, data: [UInt8](repeating: 0, count: 64)); b.offsetOverride["b"] = 32
        try expectError(b) { if case .badGGUF(_, let r) = $0 { return r.contains("overlaps") }; return false }

        b = GGUFTestBuilder(); b.add("general.alignment", type: 4, GGUFTestBuilder.le(UInt32(48)))
        try expectError(b) { if case .badMetadata(_, "general.alignment", _) = $0 { return true }; return false }

        // Truncated in the middle of the tensor infos.
        b = GGUFTestBuilder(); b.tensor("t", dims: [8], type: 0, data: [UInt8](repeating: 0, count: 32))
        let dir = try ModelTestSupport.scratchDirectory(self)
        let url = dir.appendingPathComponent("cut.gguf")
        try b.build().prefix(40).write(to: url)
        XCTAssertThrowsError(try GGUFFile(path: url.path)) { e in
            guard case ModelError.truncated(let p, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(p, url.path)
        }
        XCTAssertThrowsError(try GGUFFile(path: dir.appendingPathComponent("absent.gguf").path)) { e in
            guard case ModelError.io = e else { return XCTFail("\(e)") }
        }
    }

    func testUnsupportedTypeIsRefusedOnDequantise() throws {
        var b = GGUFTestBuilder()
        b.tensor("q5k", dims: [256], type: 13, data: [UInt8](repeating: 0, count: 176))
        let g = try open(b)
        XCTAssertThrowsError(try g.dequantize(g.tensor("q5k")!)) { e in
            guard case ModelError.unsupportedTensorType(_, "q5k", "Q5_K") = e else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("Q5_K"))
        }
    }

    // MARK: - The real model

    func testSmolLM2Header() throws {
        let g = try GGUFFile(path: try ModelTestSupport.testGGUF())
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.architecture, "llama")
        XCTAssertEqual(g.tensors.count, 272)
        XCTAssertEqual(g.metadata["llama.block_count"]?.integer, 30)
        XCTAssertEqual(g.metadata["tokenizer.ggml.tokens"]?.array?.count, 49152)
        XCTAssertEqual(g.tensor("token_embd.weight")?.type, .q8_0)
        XCTAssertEqual(g.tensor("blk.0.attn_q.weight")?.type, .q4_1)
        XCTAssertEqual(g.tensor("blk.0.attn_k.weight")?.shape, [192, 576])
    }
}
