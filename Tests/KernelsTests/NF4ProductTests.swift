import Kernels
import XCTest

/// NF4 products: scalar against a double-precision dequantise-then-multiply reference, every SIMD
/// variant against scalar, int8 activations against their error budget, the transposed product against
/// the plain one.
final class NF4ProductTests: XCTestCase {
    /// |y - reference| <= tolerance * sum_k |w_k x_k| per output (fp32 accumulation over up to 11008 terms).
    static let scalarVsDouble = 1e-5
    /// SIMD variant vs scalar, f32 paths (summation order and FMA contraction differ).
    static let variantVsScalar = 1e-5
    /// int8 variant vs the scalar int8 reference: same integer sums, float combination order differs.
    static let int8VariantVsScalar = 1e-5

    struct Case { var rows, cols, n, blocksize: Int; var dq: Bool }
    static let cases: [Case] = [
        Case(rows: 1, cols: 64, n: 1, blocksize: 64, dq: false),
        Case(rows: 3, cols: 128, n: 3, blocksize: 32, dq: true),
        Case(rows: 17, cols: 576, n: 1, blocksize: 64, dq: false),
        Case(rows: 63, cols: 576, n: 3, blocksize: 64, dq: true),
        Case(rows: 65, cols: 1536, n: 2, blocksize: 64, dq: false),
        Case(rows: 129, cols: 576, n: 5, blocksize: 128, dq: false),
        Case(rows: 576, cols: 576, n: 1, blocksize: 64, dq: true),
        Case(rows: 192, cols: 576, n: 17, blocksize: 64, dq: false),
        Case(rows: 64, cols: 4096, n: 1, blocksize: 256, dq: false),
        Case(rows: 33, cols: 11008, n: 2, blocksize: 64, dq: true),
        Case(rows: 1536, cols: 576, n: 4, blocksize: 64, dq: false),
        Case(rows: 17, cols: 1536, n: 9, blocksize: 4096, dq: false),
        // Decode batches (the int8 kernel's 2 x 8 tile, passes of 8): partial groups (704 = 5.5 x 128),
        // blocksize 32 / 128, row counts that leave partial weight-row passes.
        Case(rows: 130, cols: 704, n: 8, blocksize: 64, dq: true),
        Case(rows: 66, cols: 1536, n: 16, blocksize: 128, dq: false),
        Case(rows: 37, cols: 320, n: 7, blocksize: 32, dq: true),
        // Layouts the SIMD paths do not take (blocks spanning rows, odd element count): portable path.
        Case(rows: 17, cols: 65, n: 3, blocksize: 64, dq: false),
        Case(rows: 3, cols: 96, n: 2, blocksize: 64, dq: true),
        Case(rows: 5, cols: 13, n: 1, blocksize: 32, dq: false),
    ]

    struct Reference { var y: [Double]; var magnitude: [Double] }

    /// y[i, r] = sum_c W[r, c] x[i, c] and sum |W x| in Double.
    static func reference(_ w: [Double], rows: Int, cols: Int, x: [Float], n: Int) -> Reference {
        var y = [Double](repeating: 0, count: n * rows), mag = y
        for i in 0..<n {
            for r in 0..<rows {
                var s = 0.0, m = 0.0
                for c in 0..<cols {
                    let p = w[r * cols + c] * Double(x[i * cols + c])
                    s += p; m += abs(p)
                }
                y[i * rows + r] = s; mag[i * rows + r] = m
            }
        }
        return Reference(y: y, magnitude: mag)
    }

    func assertClose(_ got: [Float], _ want: [Double], _ mag: [Double], tol: Double, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        var worst = 0.0, at = 0
        for k in 0..<want.count {
            let e = abs(Double(got[k]) - want[k]) / (mag[k] + 1e-30)
            if e > worst || e.isNaN { worst = e.isNaN ? .infinity : e; at = k }
        }
        XCTAssertLessThanOrEqual(worst, tol, "\(what): worst relative error \(worst) at \(at) (got \(got[at]), want \(want[at]))",
                                 file: file, line: line)
    }

    func product(_ t: NF4TestMatrix, _ x: [Float], n: Int, flags: Int32, gemm: Bool = false, auto: Bool = false) -> [Float] {
        var m = t.matrix
        var y = [Float](repeating: .nan, count: n * t.rows)
        let st: Int32
        if auto { st = ek_nf4_matmul(&m, x, Int64(n), Int64(t.cols), &y, Int64(t.rows), flags) }
        else if gemm { st = ek_nf4_gemm(&m, x, Int64(n), Int64(t.cols), &y, Int64(t.rows), flags) }
        else { st = ek_nf4_gemv(&m, x, Int64(n), Int64(t.cols), &y, Int64(t.rows), flags) }
        XCTAssertEqual(st, Int32(EK_OK), String(cString: ek_status_message(st)))
        return y
    }

    func testScalarEqualsDoubleReference() {
        _ = forEachVariant(["scalar"]) { _ in
            for (ci, c) in Self.cases.enumerated() {
                let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(ci + 1))
                var rng = SplitMix(seed: UInt64(100 + ci))
                let x = rng.floats(c.n * c.cols)
                let ref = Self.reference(t.dense(), rows: c.rows, cols: c.cols, x: x, n: c.n)
                assertClose(product(t, x, n: c.n, flags: 0), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "scalar gemv \(c)")
                assertClose(product(t, x, n: c.n, flags: 0, gemm: true), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "scalar gemm \(c)")
                assertClose(product(t, x, n: c.n, flags: Int32(EK_GEMM_TILES), gemm: true), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "scalar gemm tiles \(c)")
            }
        }
    }

    func testEveryVariantEqualsScalar() {
        // The scalar products below are computed by switching the active variant: put back the one
        // the process had, or every later test in this process would run on the scalar kernels.
        let original = String(cString: ek_variant_name())
        defer { _ = ek_set_variant(original) }
        for (ci, c) in Self.cases.enumerated() {
            let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(ci + 1))
            var rng = SplitMix(seed: UInt64(200 + ci))
            let x = rng.floats(c.n * c.cols)
            let ref = Self.reference(t.dense(), rows: c.rows, cols: c.cols, x: x, n: c.n)
            _ = ek_set_variant("scalar")
            let scalarF32 = product(t, x, n: c.n, flags: 0).map(Double.init)
            let scalarQ8 = product(t, x, n: c.n, flags: Int32(EK_ACT_INT8)).map(Double.init)
            let tested = forEachVariant(["avx2", "avx512", "neon"]) { v in
                assertClose(product(t, x, n: c.n, flags: 0), scalarF32, ref.magnitude, tol: Self.variantVsScalar, "\(v) gemv \(c)")
                assertClose(product(t, x, n: c.n, flags: 0, gemm: true), scalarF32, ref.magnitude, tol: Self.variantVsScalar, "\(v) gemm \(c)")
                assertClose(product(t, x, n: c.n, flags: Int32(EK_GEMM_TILES), gemm: true), scalarF32, ref.magnitude,
                            tol: Self.variantVsScalar, "\(v) gemm tiles \(c)")
                assertClose(product(t, x, n: c.n, flags: 0, auto: true), scalarF32, ref.magnitude, tol: Self.variantVsScalar, "\(v) matmul \(c)")
                assertClose(product(t, x, n: c.n, flags: Int32(EK_ACT_INT8)), scalarQ8, ref.magnitude, tol: Self.int8VariantVsScalar, "\(v) int8 gemv \(c)")
            }
            #if arch(x86_64)
            // This project's CI machines have AVX-512; on any x86-64 CPU with AVX2 the avx2 variant must run.
            if ek_variant_supported("avx2") == 1 { XCTAssertTrue(tested.contains("avx2")) }
            #endif
        }
    }

    /// Row lengths that are not a multiple of the block size (blocks span rows, e.g. 3×96 at block 64)
    /// through the public entry points a caller uses — matmul (GEMV and GEMM sides), gemv, gemm, with
    /// and without int8 activations (which fall back to the f32 portable path here) — against the
    /// double reference in every variant. Guards against a path that silently writes zeros.
    func testBlocksSpanningRowsThroughEveryEntryPoint() {
        let shapes: [(rows: Int, cols: Int, bs: Int, dq: Bool)] = [
            (3, 96, 64, true), (3, 96, 64, false), (7, 80, 32, false), (5, 200, 128, true), (9, 33, 64, true), (2, 4100, 4096, false),
        ]
        for (si, s) in shapes.enumerated() {
            let t = NF4TestMatrix(rows: s.rows, cols: s.cols, blocksize: s.bs, doubleQuant: s.dq, seed: UInt64(300 + si))
            let dense = t.dense()
            for n in [1, 3, 9, 20] {
                var rng = SplitMix(seed: UInt64(400 + 10 * si + n))
                let x = rng.floats(n * s.cols)
                let ref = Self.reference(dense, rows: s.rows, cols: s.cols, x: x, n: n)
                XCTAssertTrue(ref.y.contains { $0 != 0 })
                _ = forEachVariant { v in
                    for flags in [Int32(0), Int32(EK_ACT_INT8)] {
                        let what = "\(v) \(s.rows)x\(s.cols) block \(s.bs) n=\(n) flags=\(flags)"
                        assertClose(product(t, x, n: n, flags: flags, auto: true), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "matmul " + what)
                        assertClose(product(t, x, n: n, flags: flags), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "gemv " + what)
                        assertClose(product(t, x, n: n, flags: flags, gemm: true), ref.y, ref.magnitude, tol: Self.scalarVsDouble, "gemm " + what)
                    }
                }
            }
        }
    }

    func testAccumulateAddsToOutput() {
        let t = NF4TestMatrix(rows: 65, cols: 576, doubleQuant: true, seed: 7)
        var rng = SplitMix(seed: 8)
        let x = rng.floats(3 * 576), base = rng.floats(3 * 65)
        _ = forEachVariant { v in
            let plain = product(t, x, n: 3, flags: 0)
            for (gemm, flags) in [(false, Int32(0)), (true, 0), (true, Int32(EK_GEMM_TILES)), (false, Int32(EK_ACT_INT8))] {
                var m = t.matrix
                var y = base
                let st = gemm ? ek_nf4_gemm(&m, x, 3, 576, &y, 65, Int32(EK_ACCUMULATE) | Int32(flags))
                              : ek_nf4_gemv(&m, x, 3, 576, &y, 65, Int32(EK_ACCUMULATE) | Int32(flags))
                XCTAssertEqual(st, Int32(EK_OK))
                let single = product(t, x, n: 3, flags: Int32(flags), gemm: gemm)
                for k in 0..<y.count { XCTAssertEqual(y[k], base[k] + single[k], accuracy: 1e-5, "\(v) accumulate gemm=\(gemm)") }
                _ = plain
            }
        }
    }

    /// The int8-activation path stays inside EK_INT8_REL_ERROR of sum |w x|, and its typical error is
    /// printed (the accuracy cost quoted in the README of the kernels).
    func testInt8ErrorInsideBudget() {
        var worst = 0.0, sumSq = 0.0, refSq = 0.0
        for (ci, c) in Self.cases.enumerated() where c.cols % c.blocksize == 0 {
            let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(ci + 1))
            var rng = SplitMix(seed: UInt64(300 + ci))
            // Activations with a heavy-tailed component, like real hidden states.
            let x = (0..<(c.n * c.cols)).map { _ -> Float in let v = rng.signed(); return rng.unit() < 0.01 ? v * 20 : v }
            let ref = Self.reference(t.dense(), rows: c.rows, cols: c.cols, x: x, n: c.n)
            _ = forEachVariant { v in
                let y = product(t, x, n: c.n, flags: Int32(EK_ACT_INT8))
                assertClose(y, ref.y, ref.magnitude, tol: Double(EK_INT8_REL_ERROR), "\(v) int8 budget \(c)")
                for k in 0..<y.count {
                    let e = abs(Double(y[k]) - ref.y[k])
                    worst = max(worst, e / ref.magnitude[k])
                    sumSq += e * e; refSq += ref.y[k] * ref.y[k]
                }
            }
        }
        print("KernelsTests: int8 activations: worst |err|/sum|wx| = \(worst), rms err / rms y = \((sumSq / refSq).squareRoot())")
    }

    func testTransposedEqualsPlainTransposed() {
        let shapes: [(Int, Int, Int, Int, Bool)] = [(17, 576, 3, 64, false), (576, 192, 5, 64, true), (63, 1536, 9, 64, false),
                                                    (17, 65, 2, 64, true), (129, 128, 1, 32, false), (40, 4096, 2, 128, false)]
        for (si, s) in shapes.enumerated() {
            let (rows, cols, n, bs, dq) = s
            let t = NF4TestMatrix(rows: rows, cols: cols, blocksize: bs, doubleQuant: dq, seed: UInt64(50 + si))
            let w = t.dense()
            var rng = SplitMix(seed: UInt64(60 + si))
            let dy = rng.floats(n * rows)
            // dX = dY · W in Double, i.e. the plain product's transpose (Wᵀ dYᵀ)ᵀ.
            var want = [Double](repeating: 0, count: n * cols), mag = want
            for i in 0..<n { for r in 0..<rows { let g = Double(dy[i * rows + r]); for c in 0..<cols {
                want[i * cols + c] += g * w[r * cols + c]; mag[i * cols + c] += abs(g * w[r * cols + c]) } } }
            // The same through the plain kernel: X = identity rows picks columns of Wᵀ, i.e. rows of W.
            _ = forEachVariant { v in
                var m = t.matrix
                var dx = [Float](repeating: .nan, count: n * cols)
                XCTAssertEqual(ek_nf4_matmul_t(&m, dy, Int64(n), Int64(rows), &dx, Int64(cols), 0), Int32(EK_OK))
                assertClose(dx, want, mag, tol: Self.scalarVsDouble, "\(v) transposed \(s)")
                // Adjoint identity against the plain product: <dY, X Wᵀ> == <dY W, X>.
                let x = rng.floats(n * cols)
                let y = product(t, x, n: n, flags: 0, gemm: true)
                var lhs = 0.0, rhs = 0.0, scale = 0.0
                for k in 0..<(n * rows) { lhs += Double(dy[k]) * Double(y[k]) }
                for k in 0..<(n * cols) { rhs += Double(dx[k]) * Double(x[k]); scale += abs(mag[k] * Double(x[k])) }
                XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * scale + 1e-9, "\(v) adjoint \(s)")
            }
        }
    }

    /// A decode batch must not change any row's result: every row of an n-row int8 (and f32) GEMV has
    /// the bits of the same row computed alone, in every variant (the scheduler's batch invariance rests
    /// on it). Shapes with partial 128-groups, blocksizes 32/64/128/256, row counts that leave partial
    /// passes, double-quantised and plain absmax, and the blocks-spanning-rows layout.
    func testBatchRowsEqualSingleRowsBitForBit() {
        let shapes: [(rows: Int, cols: Int, bs: Int, dq: Bool)] = [
            (37, 576, 64, true), (130, 1536, 64, false), (19, 704, 128, true), (9, 192, 32, false),
            (5, 4096, 256, true), (66, 320, 64, true), (7, 96, 64, false),
        ]
        for (si, s) in shapes.enumerated() {
            let t = NF4TestMatrix(rows: s.rows, cols: s.cols, blocksize: s.bs, doubleQuant: s.dq, seed: UInt64(700 + si))
            var rng = SplitMix(seed: UInt64(800 + si))
            let x = rng.floats(16 * s.cols, scale: 2)
            _ = forEachVariant { v in
                for flags in [Int32(EK_ACT_INT8), Int32(0)] {
                    var alone = [[Float]]()
                    for i in 0..<16 { alone.append(product(t, Array(x[(i * s.cols)..<((i + 1) * s.cols)]), n: 1, flags: flags)) }
                    for n in Array(1...9) + [16] {
                        let y = product(t, Array(x[0..<(n * s.cols)]), n: n, flags: flags)
                        for i in 0..<n {
                            let got = Array(y[(i * s.rows)..<((i + 1) * s.rows)])
                            let same = zip(got, alone[i]).allSatisfy { $0.bitPattern == $1.bitPattern }
                            XCTAssertTrue(same, "\(v) flags \(flags) \(s) n=\(n): row \(i) differs from the row computed alone")
                        }
                    }
                }
            }
        }
    }

    /// Every variant decodes the absmax of blocks [first, first + count) for each range bit for bit as
    /// the fp32 rule does.
    func assertAbsmaxDecodeBitForBit(_ t: NF4TestMatrix, _ ranges: [(Int, Int)], _ what: String) {
        var m = t.matrix
        _ = forEachVariant { v in
            for (first, count) in ranges {
                var a = [Float](repeating: .nan, count: count)
                XCTAssertEqual(ek_nf4_decode_absmax(&m, Int64(first), Int64(count), &a), Int32(EK_OK))
                for b in 0..<count {
                    XCTAssertEqual(a[b].bitPattern, t.absmaxValue(first + b).bitPattern, "\(v) \(what) block \(first + b)")
                }
            }
        }
    }

    /// Every variant's absmax decoding (vectorised where it can be) equals the fp32 rule bit for bit,
    /// across nested-block boundaries and from unaligned first blocks.
    func testAbsmaxDecodeBitForBitInEveryVariant() {
        let t = NF4TestMatrix(rows: 40, cols: 1536, blocksize: 64, doubleQuant: true, seed: 11)
        assertAbsmaxDecodeBitForBit(t, [(0, t.blocks), (3, 200), (250, 17), (255, 2), (511, 1), (t.blocks - 37, 37)], "nested 256")
    }

    /// The same for nested blocks of other sizes: AVX-512 VBMI decodes 64 blocks per step when nested
    /// blocks hold at least 64 (runs cut at each nested boundary) and falls back below that.
    func testAbsmaxDecodeBitForBitWithOtherNestedBlocksizes() {
        for nbs in [32, 64, 100, 4096] {
            let t = NF4TestMatrix(rows: 24, cols: 1536, blocksize: 64, doubleQuant: true, nestedBlocksize: nbs, seed: UInt64(12 + nbs))
            assertAbsmaxDecodeBitForBit(t, [(0, t.blocks), (5, 300), (63, 130), (t.blocks - 70, 70)], "nested \(nbs)")
        }
    }

    func testDequantizeAndAbsmaxDecode() {
        let t = NF4TestMatrix(rows: 7, cols: 96, blocksize: 32, doubleQuant: true, seed: 9)
        var m = t.matrix
        var a = [Float](repeating: 0, count: t.blocks)
        XCTAssertEqual(ek_nf4_decode_absmax(&m, 0, Int64(t.blocks), &a), Int32(EK_OK))
        for b in 0..<t.blocks { XCTAssertEqual(a[b].bitPattern, t.absmaxValue(b).bitPattern) }
        _ = forEachVariant { v in
            var out = [Float](repeating: .nan, count: 7 * 100)
            XCTAssertEqual(ek_nf4_dequantize(&m, 0, 7, &out, 100), Int32(EK_OK))
            for r in 0..<7 { for c in 0..<96 { XCTAssertEqual(Double(out[r * 100 + c]), t.weight(r, c), "\(v) W[\(r),\(c)]") } }
        }
    }

    func testBadArgumentsAreRejected() {
        let t = NF4TestMatrix(rows: 4, cols: 64, seed: 1)
        var x = [Float](repeating: 1, count: 64), y = [Float](repeating: 0, count: 4)
        var m = t.matrix
        m.blocksize = 48
        XCTAssertEqual(ek_nf4_gemv(&m, &x, 1, 64, &y, 4, 0), Int32(EK_ERR_BLOCKSIZE))
        m = t.matrix
        m.absmax_f32 = nil
        XCTAssertEqual(ek_nf4_gemv(&m, &x, 1, 64, &y, 4, 0), Int32(EK_ERR_ABSMAX))
        m = t.matrix
        XCTAssertEqual(ek_nf4_gemv(&m, &x, 1, 63, &y, 4, 0), Int32(EK_ERR_STRIDE))
        XCTAssertEqual(ek_nf4_gemm(&m, &x, -1, 64, &y, 4, 0), Int32(EK_ERR_SHAPE))
        XCTAssertEqual(ek_nf4_matmul_t(&m, nil, 1, 4, &x, 64, 0), Int32(EK_ERR_NULL))
        XCTAssertEqual(ek_nf4_gemv(&m, &x, 0, 64, &y, 4, 0), Int32(EK_OK))
        XCTAssertFalse(String(cString: ek_status_message(Int32(EK_ERR_BLOCKSIZE))).isEmpty)
    }
}
