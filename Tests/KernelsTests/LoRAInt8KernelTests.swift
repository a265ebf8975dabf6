import Kernels
import XCTest

/// A slot quantised as the engine binds it: A rows, and B transposed then quantised per rank row.
private struct Quantized {
    var a: [Int8], aScale: [Float], bt: [Int8], btScale: [Float]

    init(_ s: LoRAKernelTests.Slot) {
        let out = s.b.count / s.rank, inF = s.a.count / s.rank
        a = [Int8](repeating: 0, count: s.a.count); aScale = [Float](repeating: 0, count: s.rank)
        var btf = [Float](repeating: 0, count: s.b.count)
        ek_lora_transpose_b(s.b, Int64(out), Int32(s.rank), &btf)
        bt = [Int8](repeating: 0, count: s.b.count); btScale = [Float](repeating: 0, count: s.rank)
        ek_lora_quantize_rows(s.a, Int64(s.rank), Int64(inF), Int64(inF), &a, &aScale)
        ek_lora_quantize_rows(btf, Int64(s.rank), Int64(out), Int64(out), &bt, &btScale)
    }

    /// The f32 slot the int8 kernel computes with exactly (value = scale × int8).
    func dequantized(rank: Int, scale: Float) -> LoRAKernelTests.Slot {
        let inF = a.count / rank, out = bt.count / rank
        var af = [Float](repeating: 0, count: a.count), bf = [Float](repeating: 0, count: bt.count)
        for t in 0..<rank { for k in 0..<inF { af[t * inF + k] = Float(a[t * inF + k]) * aScale[t] } }
        for t in 0..<rank { for j in 0..<out { bf[j * rank + t] = Float(bt[t * out + j]) * btScale[t] } }
        return LoRAKernelTests.Slot(a: af, b: bf, rank: rank, scale: scale)
    }
}

/// int8 LoRA slots (EK_DTYPE_I8: A and Bᵀ as int8 rows with one f32 scale each), the fastest mode's
/// serving form: every variant against dense math on the dequantised weights, and the quantisation's
/// own error against the f32 weights.
extension LoRAKernelTests {
    fileprivate func withI8Slots<R>(_ slots: [LoRAKernelTests.Slot], _ q: [Quantized], _ body: ([ek_lora_slot]) -> R) -> R {
        func go(_ k: Int, _ acc: [ek_lora_slot]) -> R {
            if k == slots.count { return body(acc) }
            return q[k].a.withUnsafeBufferPointer { a in
                q[k].aScale.withUnsafeBufferPointer { sa in
                    q[k].bt.withUnsafeBufferPointer { bt in
                        q[k].btScale.withUnsafeBufferPointer { sb in
                            var s = ek_lora_slot()
                            s.rank = Int32(slots[k].rank); s.scale = slots[k].scale; s.dtype = Int32(EK_DTYPE_I8)
                            s.a8 = a.baseAddress; s.a8_scale = sa.baseAddress; s.bt8 = bt.baseAddress; s.bt8_scale = sb.baseAddress
                            return go(k + 1, acc + [s])
                        }
                    }
                }
            }
        }
        return go(0, [])
    }

    func testQuantizeRowsRoundsEachRowToItsOwnScale() {
        let m: [Float] = [0.5, -1.0, 0.25, 0.0, /* zero row */ 0, 0, 0, 0, /* its own smaller scale */ 0.25, -0.5, 0, 0.125]
        var q = [Int8](repeating: 99, count: m.count), scale = [Float](repeating: -1, count: 3)
        ek_lora_quantize_rows(m, 3, 4, 4, &q, &scale)
        XCTAssertEqual(Array(q[0..<4]), [64, -127, 32, 0])   // 0.5 * 127 = 63.5 rounds to even
        XCTAssertEqual(scale[0], 1.0 / 127)
        XCTAssertEqual(Array(q[4..<8]), [0, 0, 0, 0])
        XCTAssertEqual(scale[1], 0, "an all-zero row gets scale 0")
        XCTAssertEqual(Array(q[8..<12]), [64, -127, 0, 32])
        XCTAssertEqual(scale[2], 0.5 / 127)
    }

    /// The most int8 storage can move row i's output j away from the f32 weights' result: each A value
    /// is off by at most half a step (max |A row t| / 254), each Bᵀ value by max |Bᵀ row t| / 254, so
    /// |Δy_ij| <= s Σ_t (|b_jt| δa_t Σ_k|x_ik| + δb_t Σ_k|a_tk x_ik| + δa_t δb_t Σ_k|x_ik|).
    private func int8Bound(_ slots: [LoRAKernelTests.Slot], slotOfRow: [Int32], x: [Float], in inF: Int, out: Int) -> [Double] {
        var bound = [Double](repeating: 0, count: slotOfRow.count * out)
        for (i, si) in slotOfRow.enumerated() where si >= 0 {
            let s = slots[Int(si)], r = s.rank
            let xs = (0..<inF).reduce(0.0) { $0 + abs(Double(x[i * inF + $1])) }
            var da = [Double](repeating: 0, count: r), db = da, ax = da
            for t in 0..<r {
                da[t] = Double((0..<inF).map { abs(s.a[t * inF + $0]) }.max() ?? 0) / 254
                db[t] = Double((0..<out).map { abs(s.b[$0 * r + t]) }.max() ?? 0) / 254
                ax[t] = (0..<inF).reduce(0.0) { $0 + abs(Double(s.a[t * inF + $1]) * Double(x[i * inF + $1])) }
            }
            for j in 0..<out {
                var e = 0.0
                for t in 0..<r { e += abs(Double(s.b[j * r + t])) * da[t] * xs + db[t] * ax[t] + da[t] * db[t] * xs }
                bound[i * out + j] = e * Double(s.scale)
            }
        }
        return bound
    }

    /// Every variant, odd and real shapes, ranks 1, 7, 16, 256: equal to dense math on the dequantised
    /// weights at the f32 tolerance, and to dense math on the f32 weights within int8's rounding bound
    /// (`int8Bound`; the measured share of the bound used is printed).
    func testInt8SlotsEqualDenseMath() {
        for (inF, out) in [(1, 3), (17, 63), (65, 129), (576, 1536), (1536, 576), (4096, 11008)] {
            let n = 4
            let slots = makeSlots(in: inF, out: out)
            let q = slots.map(Quantized.init)
            let slotOfRow: [Int32] = [3, 2, 0, 1]   // ranks 7, 256, 1, 16
            var rng = SplitMix(seed: UInt64(inF * 5 + out))
            let x = rng.floats(n * inF), y0 = rng.floats(n * out)
            let exact = zip(slots, q).map { $1.dequantized(rank: $0.rank, scale: $0.scale) }
            let (want, mag) = dense(exact, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            let (wantF32, magF32) = dense(slots, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            let bound = int8Bound(slots, slotOfRow: slotOfRow, x: x, in: inF, out: out)
            var used = 0.0
            _ = forEachVariant { v in
                var y = y0
                let st = withI8Slots(slots, q) { s in
                    ek_lora_bgmv(s, Int64(s.count), slotOfRow, x, Int64(n), Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
                }
                XCTAssertEqual(st, Int32(EK_OK))
                check(y, want, mag, "\(v) int8 bgmv \(inF)->\(out)")
                for k in 0..<y.count {
                    let e = abs(Double(y[k]) - wantF32[k])
                    used = max(used, e / (bound[k] + 1e-30))
                    XCTAssertLessThanOrEqual(e, bound[k] + Self.tolerance * magF32[k] + 1e-7, "\(v) int8 vs f32 weights \(inF)->\(out) at \(k)")
                }
            }
            print("LoRAInt8KernelTests: int8 storage \(inF)->\(out): worst error / rounding bound = \(used)")
        }
    }

    func testInt8SGMVEveryRank() {
        let inF = 40, out = 72
        var rng = SplitMix(seed: 11)
        let slots = (1...256).map { r in LoRAKernelTests.Slot(a: rng.floats(r * inF, scale: 0.1), b: rng.floats(out * r, scale: 0.1), rank: r, scale: 0.75) }
        let q = slots.map(Quantized.init)
        let n = slots.count
        let segStart = (0...n).map { Int64($0) }, segSlot = (0..<Int32(n)).map { $0 }
        let x = rng.floats(n * inF), y0 = rng.floats(n * out)
        let exact = zip(slots, q).map { $1.dequantized(rank: $0.rank, scale: $0.scale) }
        let (want, mag) = dense(exact, slotOfRow: segSlot, x: x, y0: y0, in: inF, out: out)
        _ = forEachVariant { v in
            var y = y0
            let st = withI8Slots(slots, q) { s in
                ek_lora_sgmv(s, Int64(s.count), segSlot, segStart, Int64(n), x, Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
            }
            XCTAssertEqual(st, Int32(EK_OK))
            check(y, want, mag, "\(v) int8 sgmv ranks 1...256")
        }
    }

    func testIncompleteInt8SlotsAreRejected() {
        var y = [Float](repeating: 0, count: 8)
        let x = [Float](repeating: 1, count: 8)
        let ones = [Int8](repeating: 127, count: 8), scale: [Float] = [1.0 / 127]
        ones.withUnsafeBufferPointer { v in
            scale.withUnsafeBufferPointer { sc in
                var s = ek_lora_slot()
                s.rank = 1; s.scale = 1; s.dtype = Int32(EK_DTYPE_I8)
                s.a8 = v.baseAddress; s.a8_scale = sc.baseAddress; s.bt8 = v.baseAddress
                XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_ADAPTER), "Bᵀ without its scales")
                s.bt8_scale = sc.baseAddress
                XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_OK))
                for v in y { XCTAssertEqual(v, 8, accuracy: 1e-5, "A = B = 1: each output gains scale * sum(x) = 8") }
            }
        }
    }
}
