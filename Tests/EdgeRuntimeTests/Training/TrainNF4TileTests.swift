import AdapterCache
import Kernels
import XCTest
@testable import EdgeRuntime

/// The trainer's NF4 tiles against bitsandbytes' own dequantisation (fixtures made by real bnb),
/// and the NF4 projection's two products against the dequantised matrix.
final class TrainNF4TileTests: XCTestCase {
    func fixture(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: TrainingFixtures.path("nf4/" + name))
    }

    /// Blocks that span rows and a partial tail block, double-quantised absmax; every row band.
    func testDoubleQuantRowSpanningBlocksMatchBitsandbytes() throws {
        let f = try fixture("rowspan_3x96_bs64_dq.safetensors")
        let q8 = try f.bytes(of: "absmax"), packed = try f.bytes(of: "packed")
        let nested = try f.floats("nested_absmax"), map = try f.floats("nested_quant_map"), code = try f.floats("quant_map")
        let offset = try f.floats("nested_offset")[0]
        var absmax = [Float](repeating: 0, count: 5)
        et_nf4_decode_absmax(q8.bindMemory(to: UInt8.self).baseAddress!, nested, map, offset, 5, 256, &absmax)
        XCTAssertEqual(absmax, try f.floats("absmax_dequantized"))
        let ref = try f.floats("dequantized")
        for row0 in 0..<3 {
            for nrows in 1...(3 - row0) {
                var out = [Float](repeating: .nan, count: nrows * 96)
                et_nf4_dequant_rows(packed.bindMemory(to: UInt8.self).baseAddress!, absmax, code, 96, 64, row0, nrows, &out)
                XCTAssertEqual(out, Array(ref[(row0 * 96)..<((row0 + nrows) * 96)]), "rows \(row0)..<\(row0 + nrows)")
            }
        }
    }

    /// Odd element count (65): rows of 13 start on odd elements (low nibbles), tail block of 1.
    func testOddColumnsStartOnLowNibbles() throws {
        let f = try fixture("odd_5x13_bs64_nodq.safetensors")
        let packed = try f.bytes(of: "packed"), absmax = try f.floats("absmax"), code = try f.floats("quant_map")
        let ref = try f.floats("dequantized")
        for row0 in 0..<5 {
            var out = [Float](repeating: .nan, count: 13)
            et_nf4_dequant_rows(packed.bindMemory(to: UInt8.self).baseAddress!, absmax, code, 13, 64, row0, 1, &out)
            XCTAssertEqual(out, Array(ref[(row0 * 13)..<((row0 + 1) * 13)]), "row \(row0)")
        }
    }

    /// Forward and transposed products of the tiled NF4 projection equal the dense ones, with tile
    /// sizes that do not divide the row count.
    func testNF4ProjectionProductsMatchDense() throws {
        let f = try fixture("rowspan_3x96_bs64_dq.safetensors")
        let q8 = try f.bytes(of: "absmax"), packed = try f.bytes(of: "packed")
        var absmax = [Float](repeating: 0, count: 5)
        et_nf4_decode_absmax(q8.bindMemory(to: UInt8.self).baseAddress!, try f.floats("nested_absmax"), try f.floats("nested_quant_map"),
                             try f.floats("nested_offset")[0], 5, 256, &absmax)
        let nf4 = try NF4FrozenLinear(packed: packed.bindMemory(to: UInt8.self).baseAddress!, absmax: absmax, code: try f.floats("quant_map"),
                                      blocksize: 64, outFeatures: 3, inFeatures: 96, owner: f)
        nf4.tileRows = 2
        let dense = DenseFrozenLinear(weight: try f.floats("dequantized"), outFeatures: 3, inFeatures: 96)
        var rng = SplitMix64(seed: 11)
        let x = (0..<(4 * 96)).map { _ in rng.uniform(-1, 1) }, dy = (0..<(4 * 3)).map { _ in rng.uniform(-1, 1) }
        for backend in [NF4FrozenLinear.Backend.kernels, .tiledBLAS] {
            nf4.backend = backend
            var y1 = [Float](repeating: 0, count: 12), y2 = y1
            try nf4.forward(x, rows: 4, into: &y1); dense.forward(x, rows: 4, into: &y2)
            for i in 0..<12 { XCTAssertEqual(y1[i], y2[i], accuracy: 1e-5, "\(backend)") }
            var d1 = [Float](repeating: 1, count: 4 * 96), d2 = d1
            try nf4.backwardInput(dy, rows: 4, into: &d1, accumulate: true); dense.backwardInput(dy, rows: 4, into: &d2, accumulate: true)
            for i in 0..<(4 * 96) { XCTAssertEqual(d1[i], d2[i], accuracy: 1e-5, "\(backend)") }
            try nf4.backwardInput(dy, rows: 4, into: &d1, accumulate: false); dense.backwardInput(dy, rows: 4, into: &d2, accumulate: false)
            for i in 0..<(4 * 96) { XCTAssertEqual(d1[i], d2[i], accuracy: 1e-5, "\(backend)") }
        }
    }
}
