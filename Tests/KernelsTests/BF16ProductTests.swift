import Foundation
import Kernels
import XCTest

/// The bf16 prompt product (EK_ACT_BF16): the portable reference against an independent emulation of
/// its documented arithmetic, the native kernel against the reference bit for bit (so a row's result
/// never depends on its batch), every variant within the bf16 error budget of the f32 product, and
/// variants without bf16 instructions falling back to f32.
final class BF16ProductTests: XCTestCase {
    /// Shapes the bf16 path takes (cols a multiple of 32 and of the block size): SmolLM2's and 7B-like
    /// row lengths, panel remainders (rows not a multiple of 16 or 4) and activation-row remainders.
    static let cases: [(rows: Int, cols: Int, n: Int, blocksize: Int, dq: Bool)] = [
        (1, 64, 1, 64, false), (3, 128, 3, 32, true), (17, 576, 5, 64, false), (63, 576, 17, 64, true),
        (65, 1536, 9, 64, false), (192, 576, 33, 64, true), (21, 4096, 4, 256, false), (33, 11008, 2, 64, true),
        (129, 576, 128, 64, false), (40, 1024, 7, 128, false),
    ]

    /// f32 -> bf16 -> f32 as the header documents it: nearest even, denormals to signed zero.
    static func bf16(_ f: Float) -> Float {
        let u = f.bitPattern
        if u & 0x7f80_0000 == 0 { return Float(bitPattern: u & 0x8000_0000) }
        return Float(bitPattern: (u &+ 0x7fff &+ ((u >> 16) & 1)) & 0xffff_0000)
    }

    /// The documented order, written independently of the C reference: 16 partial sums over the
    /// pairs, odd element first, flushed below FLT_MIN, then the halving tree.
    static func emulate(_ t: NF4TestMatrix, _ x: [Float], n: Int) -> [Float] {
        var y = [Float](repeating: 0, count: n * t.rows)
        for r in 0..<t.rows {
            let w = (0..<t.cols).map { bf16(Float(t.weight(r, $0))) }
            for i in 0..<n {
                var p = [Float](repeating: 0, count: 16)
                for s in stride(from: 0, to: t.cols, by: 32) {
                    for l in 0..<16 {
                        for k in [s + 2 * l + 1, s + 2 * l] {
                            let v = p[l] + bf16(x[i * t.cols + k]) * w[k]
                            p[l] = abs(v) < Float.leastNormalMagnitude ? (v.sign == .minus ? -0.0 : 0) : v
                        }
                    }
                }
                var h = 8
                while h >= 1 { for l in 0..<h { p[l] += p[l + h] }; h /= 2 }
                y[i * t.rows + r] = p[0]
            }
        }
        return y
    }

    func run(_ t: NF4TestMatrix, _ x: [Float], n: Int, flags: Int32, reference: Bool = false, into base: [Float]? = nil) -> [Float] {
        var m = t.matrix
        var y = base ?? [Float](repeating: .nan, count: n * t.rows)
        let st = reference ? ek_nf4_gemm_bf16_reference(&m, x, Int64(n), Int64(t.cols), &y, Int64(t.rows), flags)
                           : ek_nf4_gemm(&m, x, Int64(n), Int64(t.cols), &y, Int64(t.rows), flags)
        XCTAssertEqual(st, Int32(EK_OK), String(cString: ek_status_message(st)))
        return y
    }

    /// Bit equality, reporting the first difference (not two whole arrays).
    func assertSameBits<A: Collection, B: Collection>(_ got: A, _ want: B, _ what: String, file: StaticString = #filePath, line: UInt = #line)
    where A.Element == Float, B.Element == Float {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        for (k, (g, w)) in zip(got, want).enumerated() where g.bitPattern != w.bitPattern {
            XCTFail("\(what): first difference at \(k): got \(g), want \(w)", file: file, line: line)
            return
        }
    }

    static func activations(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix(seed: seed)
        // Heavy-tailed, with a few tiny values that round to denormals or zero in bf16.
        return (0..<count).map { k in
            let v = rng.signed()
            if k % 97 == 5 { return v * 1e-39 }
            return rng.unit() < 0.01 ? v * 20 : v
        }
    }

    func testReferenceFollowsTheDocumentedArithmetic() {
        for (ci, c) in Self.cases.enumerated() where c.rows * c.cols * c.n <= 600_000 {
            let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(500 + ci))
            let x = Self.activations(c.n * c.cols, seed: UInt64(600 + ci))
            let got = run(t, x, n: c.n, flags: 0, reference: true)
            let want = Self.emulate(t, x, n: c.n)
            assertSameBits(got, want, "reference \(c)")
        }
    }

    /// On a CPU with AVX512_BF16 the avx512 variant must use it, and then equal the reference exactly,
    /// for every row whatever n (so a sequence's prompt gives the same bits alone or in a batch).
    func testNativeKernelEqualsReferenceBitForBit() throws {
        #if arch(x86_64)
        let cpuHasBF16 = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains(" avx512_bf16")
        var native: [String] = []
        _ = forEachVariant { v in
            XCTAssertEqual(ek_bf16_native() == 1, v == "avx512" && cpuHasBF16, "\(v): bf16 dot products used iff the CPU has them")
            guard ek_bf16_native() == 1 else { return }
            native.append(v)
            for (ci, c) in Self.cases.enumerated() {
                let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(700 + ci))
                let x = Self.activations(c.n * c.cols, seed: UInt64(800 + ci))
                let want = run(t, x, n: c.n, flags: 0, reference: true)
                assertSameBits(run(t, x, n: c.n, flags: Int32(EK_ACT_BF16)), want, "\(v) bf16 \(c)")
                // The last row alone: the same bits as inside the batch.
                let last = Array(x[((c.n - 1) * c.cols)...])
                assertSameBits(run(t, last, n: 1, flags: Int32(EK_ACT_BF16)), want[((c.n - 1) * c.rows)...], "\(v) bf16 \(c) row alone")
            }
        }
        if cpuHasBF16 { XCTAssertEqual(native, ["avx512"]) }
        #endif
    }

    /// Every variant: within EK_BF16_REL_ERROR of sum |w x| of the exact product; variants without
    /// bf16 instructions ignore the flag (the same bits as the f32 product).
    func testEveryVariantWithinBudgetAndFallbackIsF32() {
        var worst = 0.0
        for (ci, c) in Self.cases.enumerated() {
            let t = NF4TestMatrix(rows: c.rows, cols: c.cols, blocksize: c.blocksize, doubleQuant: c.dq, seed: UInt64(900 + ci))
            let x = Self.activations(c.n * c.cols, seed: UInt64(1000 + ci))
            let ref = NF4ProductTests.reference(t.dense(), rows: c.rows, cols: c.cols, x: x, n: c.n)
            _ = forEachVariant { v in
                let y = run(t, x, n: c.n, flags: Int32(EK_ACT_BF16))
                for k in 0..<y.count {
                    let e = abs(Double(y[k]) - ref.y[k]) / (ref.magnitude[k] + 1e-30)
                    XCTAssertLessThanOrEqual(e, Double(EK_BF16_REL_ERROR), "\(v) bf16 budget \(c) at \(k)")
                    worst = max(worst, e)
                }
                if ek_bf16_native() == 0 {
                    assertSameBits(y, run(t, x, n: c.n, flags: 0), "\(v) falls back to f32 \(c)")
                }
            }
        }
        print("KernelsTests: bf16 prompt products: worst |err|/sum|wx| = \(worst) (budget \(EK_BF16_REL_ERROR))")
    }

    func testAccumulateAndShapesTheKernelDoesNotTake() {
        let t = NF4TestMatrix(rows: 37, cols: 576, doubleQuant: true, seed: 11)
        let x = Self.activations(6 * 576, seed: 12)
        var rng = SplitMix(seed: 13)
        let base = rng.floats(6 * 37)
        _ = forEachVariant { v in
            let alone = run(t, x, n: 6, flags: Int32(EK_ACT_BF16))
            let summed = run(t, x, n: 6, flags: Int32(EK_ACT_BF16 | EK_ACCUMULATE), into: base)
            // The bf16 kernel adds its finished sum to y; the f32 paths may accumulate into y as they go.
            let tolerance: Float = ek_bf16_native() == 1 ? 0 : 1e-5
            for k in 0..<base.count { XCTAssertEqual(summed[k], base[k] + alone[k], accuracy: tolerance, "\(v) accumulate at \(k)") }
            let refSummed = run(t, x, n: 6, flags: Int32(EK_ACCUMULATE), reference: true, into: base)
            if ek_bf16_native() == 1 { self.assertSameBits(summed, refSummed, "\(v) accumulate = reference") }
        }
        // Row lengths that are not a multiple of 32 or of the block size: the f32 product, in every variant.
        for (rows, cols, bs) in [(5, 80, 16 * 2), (3, 96, 64), (4, 48, 32)] {
            let s = NF4TestMatrix(rows: rows, cols: cols, blocksize: bs, seed: UInt64(rows * cols))
            let xs = Self.activations(20 * cols, seed: 14)
            _ = forEachVariant { v in
                assertSameBits(run(s, xs, n: 20, flags: Int32(EK_ACT_BF16)), run(s, xs, n: 20, flags: 0), "\(v) \(rows)x\(cols) block \(bs)")
            }
            var m = s.matrix
            var y = [Float](repeating: 0, count: 20 * rows)
            XCTAssertEqual(ek_nf4_gemm_bf16_reference(&m, xs, 20, Int64(cols), &y, Int64(rows), 0), Int32(EK_ERR_SHAPE))
        }
    }
}
