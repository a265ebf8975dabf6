import AdapterCache
@testable import EdgeRuntime
import Foundation
import Kernels
import XCTest

/// The quantiser against bitsandbytes 0.50.2's own output (Tests/Fixtures/nf4, made on CPU by
/// `quantize_4bit`): every case in index.json, byte for byte where NF4.md says so.
final class NF4QuantizerTests: XCTestCase {
    struct Case {
        let file: String
        let blocksize: Int
        let doubleQuant: Bool
        let quantStateJSON: String
        let st: SafetensorsFile
    }

    func cases() throws -> [Case] {
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelTestSupport.fixture("nf4/index.json")))) as! [String: Any]
        let files = index["files"] as! [String: [[String: Any]]]
        XCTAssertEqual(files.count, 9, "index.json lists every bitsandbytes case")
        return try files.keys.sorted().map { name in
            let meta = files[name]![1]
            return Case(file: name, blocksize: Int(meta["blocksize"] as! String)!, doubleQuant: (meta["compress_statistics"] as! String) == "True",
                        quantStateJSON: meta["quant_state_json"] as! String, st: try SafetensorsFile(path: ModelTestSupport.fixture("nf4/" + name)))
        }
    }

    private func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    func testPackedCodesAndPlainAbsmaxAreByteExact() throws {
        for c in try cases() {
            let input = try c.st.floats("input")
            let shape = try c.st.info("input").shape
            let q = NF4Quantizer.quantize(input, shape: shape, blocksize: c.blocksize, doubleQuant: c.doubleQuant)
            XCTAssertEqual(q.packed, Array(try c.st.bytes(of: "packed")), "\(c.file): packed codes")
            XCTAssertEqual(try c.st.info("packed").shape, [q.packed.count, 1], c.file)
            // The unpacked codes, high nibble first.
            let codes = Array(try c.st.bytes(of: "codes_unpacked"))
            var unpacked = [UInt8](repeating: 0, count: input.count)
            for k in 0..<input.count {
                let byte: UInt8 = q.packed[k / 2]
                unpacked[k] = k % 2 == 0 ? byte >> 4 : byte & 0x0f
            }
            XCTAssertEqual(unpacked, codes, "\(c.file): codes")
            if input.count % 2 == 1 { XCTAssertEqual(q.packed.last! & 0x0f, 7, "\(c.file): odd count is padded with code 7") }
            let plain = NF4Quantizer.quantize(input, shape: shape, blocksize: c.blocksize, doubleQuant: false)
            guard case .plain(let absmax) = plain.absmax else { return XCTFail("plain absmax expected") }
            let expected = try c.st.floats(c.doubleQuant ? "absmax_fp32_before_double_quant" : "absmax")
            XCTAssertEqual(bits(absmax), bits(expected), "\(c.file): absmax")
            XCTAssertEqual(bits(try c.st.floats("quant_map")), bits(NF4Tables.codes), "\(c.file): quant_map")
        }
    }

    func testDoubleQuantMatchesBitsandbytes() throws {
        var codesTotal = 0, codesEqual = 0
        for c in try cases() where c.doubleQuant {
            let input = try c.st.floats("input")
            let q = NF4Quantizer.quantize(input, shape: try c.st.info("input").shape, blocksize: c.blocksize, doubleQuant: true)
            guard case .double(let q8, let nested, let offset) = q.absmax else { return XCTFail("double quant expected") }
            let bnbOffset = try c.st.floats("nested_offset")[0]
            let bnbQ8 = Array(try c.st.bytes(of: "absmax"))
            let bnbNested = try c.st.floats("nested_absmax")
            // The offset is torch's float32 mean: ours (double-accumulated) is within a few ulps.
            let ulps = abs(Int64(offset.bitPattern) - Int64(bnbOffset.bitPattern))
            XCTAssertLessThanOrEqual(ulps, 4, "\(c.file): offset \(offset) vs bitsandbytes \(bnbOffset)")
            if offset == bnbOffset {
                XCTAssertEqual(q8, bnbQ8, "\(c.file): q8 codes")
                XCTAssertEqual(bits(nested), bits(bnbNested), "\(c.file): nested absmax")
            }
            codesTotal += q8.count
            codesEqual += zip(q8, bnbQ8).filter { $0 == $1 }.count
            // Given bitsandbytes' own offset, the codes are a pure function of it: all must match.
            let plainAbsmax = try c.st.floats("absmax_fp32_before_double_quant")
            var q8b = [UInt8](repeating: 0, count: plainAbsmax.count)
            var nestedB = [Float](repeating: 0, count: bnbNested.count)
            ek_bnb_double_quantize_with_offset(plainAbsmax, Int64(plainAbsmax.count), 256, bnbOffset, &q8b, &nestedB)
            XCTAssertEqual(q8b, bnbQ8, "\(c.file): q8 codes with bitsandbytes' offset")
            XCTAssertEqual(bits(nestedB), bits(bnbNested), "\(c.file): nested absmax with bitsandbytes' offset")
            XCTAssertEqual(bits(try c.st.floats("nested_quant_map")), bits(NF4Tables.dynamicMap), "\(c.file): nested_quant_map")
        }
        XCTAssertGreaterThan(codesTotal, 0)
        XCTAssertGreaterThanOrEqual(Double(codesEqual) / Double(codesTotal), 0.999)
    }

    func testDequantisingStoredBytesIsBitExact() throws {
        for c in try cases() {
            let packed = Array(try c.st.bytes(of: "packed"))
            let quantMap = try c.st.floats("quant_map")
            let shape = try c.st.info("dequantized").shape
            let n = shape.reduce(1, *)
            var absmax: [Float]
            if c.doubleQuant {
                let q8 = Array(try c.st.bytes(of: "absmax"))
                absmax = [Float](repeating: 0, count: q8.count)
                ek_bnb_dequantize_absmax(q8, Int64(q8.count), try c.st.floats("nested_quant_map"), try c.st.floats("nested_absmax"), 256,
                                         try c.st.floats("nested_offset")[0], &absmax)
                XCTAssertEqual(bits(absmax), bits(try c.st.floats("absmax_dequantized")), "\(c.file): dequantised absmax")
            } else {
                absmax = try c.st.floats("absmax")
            }
            var out = [Float](repeating: .nan, count: n)
            ek_bnb_dequantize_nf4(packed, Int64(n), Int32(c.blocksize), quantMap, absmax, &out)
            XCTAssertEqual(bits(out), bits(try c.st.floats("dequantized")), "\(c.file): dequantised weights")
        }
    }

    func testQuantStateJSONMatches() throws {
        for c in try cases() {
            let shape = try c.st.info("input").shape
            var nested: NF4QuantState.Nested?
            if c.doubleQuant { nested = .init(blocksize: 256, offset: Double(try c.st.floats("nested_offset")[0])) }
            let state = NF4QuantState(blocksize: c.blocksize, dtype: "float32", shape: shape, nested: nested)
            XCTAssertEqual(state.encoded(), c.quantStateJSON, c.file)
            let parsed = try Data(c.quantStateJSON.utf8).withUnsafeBytes { try NF4QuantState.decode($0, path: c.file, tensor: "w") }
            XCTAssertEqual(parsed, state, c.file)
            if let n = parsed.nested { XCTAssertEqual(Float(n.offset), try c.st.floats("nested_offset")[0], "offset round-trips through a double") }
            // Our own quantiser writes the same JSON whenever its offset equals bitsandbytes'.
            let q = NF4Quantizer.quantize(try c.st.floats("input"), shape: shape, blocksize: c.blocksize, doubleQuant: c.doubleQuant)
            if case .double(_, _, let off) = q.absmax, off != (try c.st.floats("nested_offset")[0]) { continue }
            XCTAssertEqual(q.state.encoded(), c.quantStateJSON, c.file)
        }
    }

    func testSpecExampleQuantStateAndTables() throws {
        let facts = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ModelTestSupport.fixture("nf4/spec_facts.json")))) as! [String: Any]
        // The example is the quant_state as a dict: our JSON for those values parses back to it.
        let example = facts["quant_state_json_example"] as! [String: Any]
        // (JSONSerialization's double parsing may be off by an ulp; the stored value is the fp32.)
        let offset = Double(Float((example["nested_offset"] as! NSNumber).doubleValue))
        let nested = NF4QuantState.Nested(blocksize: example["nested_blocksize"] as! Int, offset: offset)
        let state = NF4QuantState(blocksize: example["blocksize"] as! Int, dtype: example["dtype"] as! String, shape: example["shape"] as! [Int], nested: nested)
        XCTAssertEqual(state.encoded(), "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [256, 512], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.052389100193977356}")
        let back = try Data(state.encoded().utf8).withUnsafeBytes { try NF4QuantState.decode($0, path: "spec_facts.json", tensor: "example") }
        XCTAssertEqual(back, state)
        let noDQ = facts["quant_state_json_no_double_quant"] as! [String: Any]
        let s2 = NF4QuantState(blocksize: noDQ["blocksize"] as! Int, dtype: noDQ["dtype"] as! String, shape: noDQ["shape"] as! [Int], nested: nil)
        XCTAssertEqual(s2.encoded(), "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [256, 512]}")
        let codeHex = (facts["nf4_code_hex"] as! [String]).map { UInt32($0.dropFirst(2), radix: 16)! }
        XCTAssertEqual(bits(NF4Tables.codes), codeHex)
    }

    func testPythonReprOfOffsets() {
        XCTAssertEqual(NF4QuantState.pythonRepr(Double(Float(0.0523891))), "0.052389100193977356")
        XCTAssertEqual(NF4QuantState.pythonRepr(1e-05), "1e-05")
        XCTAssertEqual(NF4QuantState.pythonRepr(10.0), "10.0")
        XCTAssertEqual(NF4QuantState.pythonRepr(1e16), "1e+16")
    }

    func testBadQuantStateJSONIsATypedError() {
        for bad in ["{", "[1]", "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2, 2]}",
                    "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"dtype\": \"float32\", \"shape\": [2, 2]}",
                    "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [2, 2], \"nested_blocksize\": 256}"] {
            XCTAssertThrowsError(try Data(bad.utf8).withUnsafeBytes { try NF4QuantState.decode($0, path: "m.safetensors", tensor: "w") }) { error in
                guard case ModelError.badQuantState(let p, let t, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(p, "m.safetensors"); XCTAssertEqual(t, "w")
            }
        }
        XCTAssertThrowsError(try Data([0xff, 0xfe]).withUnsafeBytes { try NF4QuantState.decode($0, path: "m", tensor: "w") })
    }
}
