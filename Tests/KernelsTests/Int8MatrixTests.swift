import Kernels
import XCTest

/// The int8 per-row matrix of the fastest mode's output head (`ek_q8_quantize_rows` + `ek_q8_matmul`):
/// every variant equals scalar (the integer block sums are exact, only the float combination differs),
/// scalar stays inside the int8 error budget of the f32 product, and bad arguments are rejected.
final class Int8MatrixTests: XCTestCase {
    struct Quantised {
        var q: [Int8]
        var scale: [Float]
        var ld: Int
    }

    func quantise(_ w: [Float], rows: Int, cols: Int) -> Quantised {
        let ld = Int(ek_q8_row_stride(Int64(cols)))
        var q = [Int8](repeating: 99, count: rows * ld), scale = [Float](repeating: 0, count: rows)
        XCTAssertEqual(ek_q8_quantize_rows(w, Int64(rows), Int64(cols), Int64(cols), Int64(ld), &q, &scale), Int32(EK_OK))
        return Quantised(q: q, scale: scale, ld: ld)
    }

    func matmul(_ m: Quantised, rows: Int, cols: Int, _ x: [Float], n: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: n * rows)
        m.q.withUnsafeBufferPointer { q in
            m.scale.withUnsafeBufferPointer { s in
                var mat = ek_q8_matrix(q: q.baseAddress, scale: s.baseAddress, rows: Int64(rows), cols: Int64(cols), ld: Int64(m.ld))
                XCTAssertEqual(ek_q8_matmul(&mat, x, Int64(n), Int64(cols), &y, Int64(rows)), Int32(EK_OK))
            }
        }
        return y
    }

    func testQuantisationRule() {
        let w: [Float] = [0.5, -1.0, 0.25, 0, 0, 0, 0, 0]
        let m = quantise(w, rows: 2, cols: 4)
        XCTAssertEqual(m.ld, 64)
        XCTAssertEqual(Array(m.q[0..<4]), [64, -127, 32, 0])   // 0.5*127 = 63.5 rounds to even: 64
        XCTAssertTrue(m.q[4..<64].allSatisfy { $0 == 0 }, "padding past cols is zero")
        XCTAssertTrue(m.q[64..<128].allSatisfy { $0 == 0 }, "an all-zero row quantises to zeros")
        XCTAssertEqual(m.scale[0], 1.0 / 127, accuracy: 1e-9)
        XCTAssertEqual(m.scale[1], 0)
    }

    func testEveryVariantEqualsScalarAndStaysInBudget() {
        // The scalar products below are computed by switching the active variant: put back the one
        // the process had, or every later test in this process would run on the scalar kernels.
        let original = String(cString: ek_variant_name())
        defer { _ = ek_set_variant(original) }
        let shapes: [(rows: Int, cols: Int, n: Int)] = [(1, 1, 1), (3, 17, 2), (17, 65, 3), (63, 576, 1), (129, 576, 5),
                                                        (576, 1536, 1), (1031, 576, 9), (40, 4096, 2)]
        for (si, s) in shapes.enumerated() {
            var rng = SplitMix(seed: UInt64(500 + si))
            let w = rng.floats(s.rows * s.cols, scale: 0.05)
            var x = rng.floats(s.n * s.cols)
            for k in stride(from: 0, to: x.count, by: 37) { x[k] *= 20 }   // outliers, as hidden states have
            let m = quantise(w, rows: s.rows, cols: s.cols)
            _ = ek_set_variant("scalar")
            let scalar = matmul(m, rows: s.rows, cols: s.cols, x, n: s.n)
            var magnitude = [Double](repeating: 0, count: s.n * s.rows), exact = magnitude
            for i in 0..<s.n {
                for r in 0..<s.rows {
                    for c in 0..<s.cols {
                        let p = Double(w[r * s.cols + c]) * Double(x[i * s.cols + c])
                        exact[i * s.rows + r] += p
                        magnitude[i * s.rows + r] += abs(p)
                    }
                }
            }
            for k in scalar.indices {
                XCTAssertLessThanOrEqual(abs(Double(scalar[k]) - exact[k]), Double(EK_INT8_REL_ERROR) * magnitude[k] + 1e-30,
                                         "scalar int8 head \(s) output \(k)")
            }
            _ = forEachVariant(["avx2", "avx512", "neon"]) { v in
                let got = matmul(m, rows: s.rows, cols: s.cols, x, n: s.n)
                for k in got.indices {
                    XCTAssertLessThanOrEqual(abs(Double(got[k]) - Double(scalar[k])), 1e-5 * magnitude[k] + 1e-30, "\(v) int8 head \(s) output \(k)")
                }
            }
        }
    }

    /// The head applies each weight load to up to 8 activation rows; a row's logits must still have the
    /// bits it has when computed alone (integer block sums are exact, the float order per row is fixed).
    func testBatchRowsEqualSingleRowsBitForBit() {
        let shapes: [(rows: Int, cols: Int)] = [(1031, 576), (63, 1536), (5, 17), (10, 130)]
        for (si, s) in shapes.enumerated() {
            var rng = SplitMix(seed: UInt64(900 + si))
            let w = rng.floats(s.rows * s.cols, scale: 0.05)
            let x = rng.floats(16 * s.cols, scale: 3)
            let m = quantise(w, rows: s.rows, cols: s.cols)
            _ = forEachVariant { v in
                let alone = (0..<16).map { i in matmul(m, rows: s.rows, cols: s.cols, Array(x[(i * s.cols)..<((i + 1) * s.cols)]), n: 1) }
                for n in [2, 3, 5, 8, 9, 16] {
                    let y = matmul(m, rows: s.rows, cols: s.cols, Array(x[0..<(n * s.cols)]), n: n)
                    for i in 0..<n {
                        let same = zip(y[(i * s.rows)..<((i + 1) * s.rows)], alone[i]).allSatisfy { $0.bitPattern == $1.bitPattern }
                        XCTAssertTrue(same, "\(v) head \(s) n=\(n): row \(i) differs from the row computed alone")
                    }
                }
            }
        }
    }

    func testBadArgumentsAreRejected() {
        var q = [Int8](repeating: 0, count: 64), s: [Float] = [1]
        var y: [Float] = [0]
        let x: [Float] = [1, 2, 3]
        XCTAssertEqual(ek_q8_quantize_rows(x, 1, 3, 3, 32, &q, &s), Int32(EK_ERR_STRIDE), "ld below the 64-byte stride")
        XCTAssertEqual(ek_q8_quantize_rows(x, 0, 3, 3, 64, &q, &s), Int32(EK_ERR_SHAPE))
        q.withUnsafeBufferPointer { qp in
            s.withUnsafeBufferPointer { sp in
                var m = ek_q8_matrix(q: qp.baseAddress, scale: sp.baseAddress, rows: 1, cols: 3, ld: 64)
                XCTAssertEqual(ek_q8_matmul(&m, x, 1, 2, &y, 1), Int32(EK_ERR_STRIDE), "ldx below cols")
                var bad = ek_q8_matrix(q: nil, scale: sp.baseAddress, rows: 1, cols: 3, ld: 64)
                XCTAssertEqual(ek_q8_matmul(&bad, x, 1, 3, &y, 1), Int32(EK_ERR_NULL))
            }
        }
    }
}
