import Kernels
import XCTest

/// `ek_nf4_gemv_multi` (several matrices over one prepared input, one pool job) must give exactly
/// the numbers of separate `ek_nf4_gemv` calls, in every variant, both activation modes, with and
/// without accumulation, for decode-sized and small odd shapes.
final class GemvMultiTests: XCTestCase {
    struct Shape { var rows: [Int]; var cols: Int; var blocksizes: [Int]; var dq: Bool }
    static let shapes: [Shape] = [
        Shape(rows: [576, 192, 192], cols: 576, blocksizes: [64, 64, 64], dq: false),   // SmolLM2 q/k/v
        Shape(rows: [1536, 1536], cols: 576, blocksizes: [64, 64], dq: true),           // gate/up
        Shape(rows: [17, 5, 33, 1], cols: 128, blocksizes: [32, 32, 32, 32], dq: false),
        Shape(rows: [40, 24], cols: 256, blocksizes: [64, 128], dq: true),               // same kernels, other blocks
        Shape(rows: [12, 8], cols: 96, blocksizes: [64, 32], dq: false),                 // portable and fast layouts mixed
    ]

    func testEqualsSeparateGemvBitForBit() {
        var seed: UInt64 = 1
        let tested = forEachVariant { v in
            for (si, s) in Self.shapes.enumerated() {
                let mats = zip(s.rows, s.blocksizes).map { r, bs -> NF4TestMatrix in
                    seed += 1
                    return NF4TestMatrix(rows: r, cols: s.cols, blocksize: bs, doubleQuant: s.dq, seed: seed)
                }
                for n in [1, 3, 6] {
                    for flags in [Int32(0), Int32(EK_ACT_INT8), Int32(EK_ACCUMULATE), Int32(EK_ACT_INT8) | Int32(EK_ACCUMULATE)] {
                        var rng = SplitMix(seed: UInt64(si * 100 + n))
                        let x = rng.floats(n * s.cols)
                        let lds = mats.map { Int64($0.rows + 3) }
                        let start = mats.indices.map { m in rng.floats(n * Int(lds[m])) }
                        var want = start
                        for (m, t) in mats.enumerated() {
                            var w = t.matrix
                            let st = ek_nf4_gemv(&w, x, Int64(n), Int64(s.cols), &want[m], lds[m], flags)
                            XCTAssertEqual(st, Int32(EK_OK))
                        }
                        let outs = start.map { a -> UnsafeMutablePointer<Float> in
                            let p = UnsafeMutablePointer<Float>.allocate(capacity: a.count)
                            p.initialize(from: a, count: a.count)
                            return p
                        }
                        defer { outs.forEach { $0.deallocate() } }
                        let ws = mats.map(\.matrix)
                        let ys: [UnsafeMutablePointer<Float>?] = outs
                        let st = ek_nf4_gemv_multi(ws, Int32(ws.count), x, Int64(n), Int64(s.cols), ys, lds, flags)
                        XCTAssertEqual(st, Int32(EK_OK), String(cString: ek_status_message(st)))
                        for m in mats.indices {
                            let got = Array(UnsafeBufferPointer(start: outs[m], count: want[m].count))
                            XCTAssertEqual(got.map(\.bitPattern), want[m].map(\.bitPattern),
                                           "\(v) shape \(si) matrix \(m) n \(n) flags \(flags)")
                        }
                    }
                }
            }
        }
        XCTAssertFalse(tested.isEmpty)
    }

    func testRejectsBadArguments() {
        let a = NF4TestMatrix(rows: 8, cols: 64, seed: 1), b = NF4TestMatrix(rows: 8, cols: 128, seed: 2)
        let x = [Float](repeating: 1, count: 128)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { y.deallocate() }
        let ys: [UnsafeMutablePointer<Float>?] = [y, y]
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix, b.matrix], 2, x, 1, 128, ys, [8, 8], 0), Int32(EK_ERR_SHAPE), "different cols")
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix], 0, x, 1, 64, ys, [8], 0), Int32(EK_ERR_SHAPE), "no matrices")
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix], Int32(EK_GEMV_MULTI_MAX) + 1, x, 1, 64, ys, [8], 0), Int32(EK_ERR_SHAPE))
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix, a.matrix], 2, x, 1, 64, ys, [8, 7], 0), Int32(EK_ERR_STRIDE), "ldy < rows")
        let missing: [UnsafeMutablePointer<Float>?] = [y, nil]
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix, a.matrix], 2, x, 1, 64, missing, [8, 8], 0), Int32(EK_ERR_NULL))
        XCTAssertEqual(ek_nf4_gemv_multi([a.matrix, a.matrix], 2, x, 0, 64, ys, [8, 8], 0), Int32(EK_OK), "no rows")
    }
}
