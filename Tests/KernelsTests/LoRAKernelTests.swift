import Kernels
import XCTest

/// The gathered LoRA products (BGMV for mixed decode batches, SGMV for prefill segments) against
/// per-row dense math, for every variant and ranks from 1 to 256.
final class LoRAKernelTests: XCTestCase {
    static let tolerance = 1e-5   // relative to sum of |terms| per output

    struct Slot { var a: [Float]; var b: [Float]; var rank: Int; var scale: Float }

    func makeSlots(in inF: Int, out: Int) -> [Slot] {
        var rng = SplitMix(seed: 42)
        return [1, 16, 256, 7].enumerated().map { k, r in
            Slot(a: rng.floats(r * inF, scale: 0.1), b: rng.floats(out * r, scale: 0.1), rank: r, scale: Float(k + 1) * 0.5)
        }
    }

    /// y_i + s * B (A x_i) in Double, with the magnitude sum of |terms| for the tolerance.
    func dense(_ slots: [Slot], slotOfRow: [Int32], x: [Float], y0: [Float], in inF: Int, out: Int) -> ([Double], [Double]) {
        var y = y0.map(Double.init), mag = y0.map { abs(Double($0)) }
        for (i, s) in slotOfRow.enumerated() where s >= 0 {
            let slot = slots[Int(s)]
            var u = [Double](repeating: 0, count: slot.rank), um = u
            for t in 0..<slot.rank { for c in 0..<inF {
                let p = Double(slot.a[t * inF + c]) * Double(x[i * inF + c]); u[t] += p; um[t] += abs(p) } }
            for j in 0..<out { for t in 0..<slot.rank {
                let bj = Double(slot.b[j * slot.rank + t]) * Double(slot.scale)
                y[i * out + j] += bj * u[t]; mag[i * out + j] += abs(bj) * um[t] } }
        }
        return (y, mag)
    }

    /// transposed: also hand the kernel B transposed (ek_lora_slot.bt), as the adapter cache does.
    func withSlots<R>(_ slots: [Slot], transposed: Bool = false, _ body: ([ek_lora_slot]) -> R) -> R {
        // The arrays outlive the call: pointers are taken inside nested withUnsafeBufferPointer scopes.
        func go(_ k: Int, _ acc: [ek_lora_slot]) -> R {
            if k == slots.count { return body(acc) }
            let out = slots[k].b.count / max(slots[k].rank, 1)
            var bt = [Float](repeating: .nan, count: slots[k].b.count)
            if transposed { ek_lora_transpose_b(slots[k].b, Int64(out), Int32(slots[k].rank), &bt) }
            return slots[k].a.withUnsafeBufferPointer { a in
                slots[k].b.withUnsafeBufferPointer { b in
                    bt.withUnsafeBufferPointer { btp in
                        go(k + 1, acc + [ek_lora_slot(a: a.baseAddress, b: b.baseAddress, bt: transposed ? btp.baseAddress : nil,
                                                      rank: Int32(slots[k].rank), scale: slots[k].scale,
                                                      dtype: Int32(EK_DTYPE_F32), a16: nil, b16: nil, bt16: nil,
                                                      a8: nil, a8_scale: nil, bt8: nil, bt8_scale: nil, a8_ld: 0)])
                    }
                }
            }
        }
        return go(0, [])
    }

    func check(_ got: [Float], _ want: [Double], _ mag: [Double], _ what: String) {
        for k in 0..<want.count {
            XCTAssertLessThanOrEqual(abs(Double(got[k]) - want[k]), Self.tolerance * mag[k] + 1e-7, "\(what) at \(k)")
        }
    }

    func testBGMVEqualsPerRowDenseMath() {
        let inF = 96, out = 80, n = 9
        let slots = makeSlots(in: inF, out: out)
        let slotOfRow: [Int32] = [0, 1, 2, -1, 3, 1, 0, 2, 3]
        var rng = SplitMix(seed: 5)
        let x = rng.floats(n * inF), y0 = rng.floats(n * out)
        let (want, mag) = dense(slots, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
        _ = forEachVariant { v in
          for transposed in [false, true] {
            var y = y0
            let st = withSlots(slots, transposed: transposed) { s in
                ek_lora_bgmv(s, Int64(s.count), slotOfRow, x, Int64(n), Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
            }
            XCTAssertEqual(st, Int32(EK_OK))
            check(y, want, mag, "\(v) bgmv transposed=\(transposed)")
            XCTAssertEqual(y[3 * out ..< 4 * out].map { $0 }, y0[3 * out ..< 4 * out].map { $0 }, "row without adapter unchanged")
          }
        }
    }

    func testSGMVEqualsPerRowDenseMath() {
        let inF = 64, out = 48
        let slots = makeSlots(in: inF, out: out)
        let segStart: [Int64] = [0, 3, 3, 7, 11]
        let segSlot: [Int32] = [1, 0, -1, 2]
        let n = 11
        var slotOfRow = [Int32](repeating: -1, count: n)
        for j in 0..<segSlot.count { for i in Int(segStart[j])..<Int(segStart[j + 1]) { slotOfRow[i] = segSlot[j] } }
        var rng = SplitMix(seed: 6)
        let x = rng.floats(n * inF), y0 = rng.floats(n * out)
        let (want, mag) = dense(slots, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
        _ = forEachVariant { v in
            var y = y0
            let st = withSlots(slots, transposed: true) { s in
                ek_lora_sgmv(s, Int64(s.count), segSlot, segStart, Int64(segSlot.count), x, Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
            }
            XCTAssertEqual(st, Int32(EK_OK))
            check(y, want, mag, "\(v) sgmv")
        }
    }

    /// The same slots stored as halves (A, and B or Bᵀ), as serving binds them.
    func withF16Slots<R>(_ slots: [Slot], transposed: Bool, _ body: ([ek_lora_slot]) -> R) -> R {
        func go(_ k: Int, _ acc: [ek_lora_slot]) -> R {
            if k == slots.count { return body(acc) }
            let s = slots[k], out = s.b.count / s.rank
            var a16 = [UInt16](repeating: 0, count: s.a.count), b16 = [UInt16](repeating: 0, count: s.b.count)
            ek_f32_to_f16(s.a, &a16, Int64(s.a.count))
            if transposed { ek_lora_transpose_b_f16(s.b, Int64(out), Int32(s.rank), &b16) } else { ek_f32_to_f16(s.b, &b16, Int64(s.b.count)) }
            return a16.withUnsafeBufferPointer { a in
                b16.withUnsafeBufferPointer { b in
                    go(k + 1, acc + [ek_lora_slot(a: nil, b: nil, bt: nil, rank: Int32(s.rank), scale: s.scale, dtype: Int32(EK_DTYPE_F16),
                                                  a16: a.baseAddress, b16: transposed ? nil : b.baseAddress, bt16: transposed ? b.baseAddress : nil,
                                                  a8: nil, a8_scale: nil, bt8: nil, bt8_scale: nil, a8_ld: 0)])
                }
            }
        }
        return go(0, [])
    }

    /// A and B rounded to half and widened back: what the f16 kernels compute with exactly.
    func roundedToHalf(_ slots: [Slot]) -> [Slot] {
        slots.map { s in
            func r(_ v: [Float]) -> [Float] {
                var h = [UInt16](repeating: 0, count: v.count), f = [Float](repeating: 0, count: v.count)
                ek_f32_to_f16(v, &h, Int64(v.count))
                ek_f16_to_f32(h, &f, Int64(v.count))
                return f
            }
            return Slot(a: r(s.a), b: r(s.b), rank: s.rank, scale: s.scale)
        }
    }

    /// Half storage: every variant, both B layouts, odd and real shapes, ranks 1, 7, 16, 256, equals
    /// dense math on the half-rounded weights at the f32 tolerance (accumulation stays f32), and dense
    /// math on the original f32 weights within the rounding budget of half (2^-11 relative per weight,
    /// two weights per term: at most 1e-3 of the magnitude sum; measured worst 5e-5 on these shapes).
    func testF16SlotsEqualDenseMath() {
        for (inF, out) in [(1, 3), (17, 63), (65, 129), (576, 1536), (1536, 576), (4096, 11008)] {
            let n = 4
            let slots = makeSlots(in: inF, out: out)
            let slotOfRow: [Int32] = [3, 2, 0, 1]   // ranks 7, 256, 1, 16
            var rng = SplitMix(seed: UInt64(inF * 7 + out))
            let x = rng.floats(n * inF), y0 = rng.floats(n * out)
            let (want, mag) = dense(roundedToHalf(slots), slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            let (wantF32, magF32) = dense(slots, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            var worstHalf = 0.0
            _ = forEachVariant { v in
                for transposed in [false, true] {
                    var y = y0
                    let st = withF16Slots(slots, transposed: transposed) { s in
                        ek_lora_bgmv(s, Int64(s.count), slotOfRow, x, Int64(n), Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
                    }
                    XCTAssertEqual(st, Int32(EK_OK))
                    check(y, want, mag, "\(v) f16 bgmv \(inF)->\(out) transposed=\(transposed)")
                    for k in 0..<y.count {
                        let e = abs(Double(y[k]) - wantF32[k]) / (magF32[k] + 1e-30)
                        worstHalf = max(worstHalf, e)
                        XCTAssertLessThanOrEqual(e, 1.1e-3, "\(v) f16 vs f32 weights \(inF)->\(out) at \(k)")
                    }
                }
            }
            print("LoRAKernelTests: f16 storage \(inF)->\(out): worst |f16 - f32 weights| / magnitude = \(worstHalf)")
        }
    }

    func testF16SGMVAndRankRange() {
        // Every rank 1...256 on one shape (all through the scalar reference and each vector variant).
        let inF = 40, out = 72
        var rng = SplitMix(seed: 9)
        let ranks = Array(1...256)
        let slots = ranks.map { r in Slot(a: rng.floats(r * inF, scale: 0.1), b: rng.floats(out * r, scale: 0.1), rank: r, scale: 0.75) }
        let n = ranks.count
        let segStart = (0...n).map { Int64($0) }
        let segSlot = (0..<Int32(n)).map { $0 }
        let x = rng.floats(n * inF), y0 = rng.floats(n * out)
        let (want, mag) = dense(roundedToHalf(slots), slotOfRow: segSlot, x: x, y0: y0, in: inF, out: out)
        _ = forEachVariant { v in
            var y = y0
            let st = withF16Slots(slots, transposed: true) { s in
                ek_lora_sgmv(s, Int64(s.count), segSlot, segStart, Int64(n), x, Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
            }
            XCTAssertEqual(st, Int32(EK_OK))
            check(y, want, mag, "\(v) f16 sgmv ranks 1...256")
        }
    }

    func testBadF16SlotsAreRejected() {
        var y = [Float](repeating: 0, count: 8)
        let x = [Float](repeating: 1, count: 8)
        let h = [UInt16](repeating: 0x3c00, count: 64)
        h.withUnsafeBufferPointer { hp in
            // f16 slot without A16, and without either B layout.
            var s = ek_lora_slot(a: nil, b: nil, bt: nil, rank: 1, scale: 1, dtype: Int32(EK_DTYPE_F16), a16: nil, b16: hp.baseAddress, bt16: nil,
                                 a8: nil, a8_scale: nil, bt8: nil, bt8_scale: nil, a8_ld: 0)
            XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_ADAPTER))
            s.a16 = hp.baseAddress
            s.b16 = nil
            XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_ADAPTER))
            s.bt16 = hp.baseAddress
            s.dtype = 7
            XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_DTYPE))
            s.dtype = Int32(EK_DTYPE_F16)
            XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_OK))
            XCTAssertEqual(y, [Float](repeating: 8, count: 8), "A = B = 1 in half: each output gains scale * sum(x) = 8")
        }
    }

    func testBadSlotsAreRejected() {
        let slots = makeSlots(in: 8, out: 8)
        var y = [Float](repeating: 0, count: 8)
        let x = [Float](repeating: 1, count: 8)
        let st = withSlots(slots) { s in ek_lora_bgmv(s, Int64(s.count), [Int32(4)], x, 1, 8, 8, &y, 8, 8) }
        XCTAssertEqual(st, Int32(EK_ERR_ADAPTER))
        let bad = withSlots([Slot(a: [1], b: [1], rank: 1, scale: 1)].map { var s = $0; s.rank = 0; return s }) { s in ek_lora_bgmv(s, 1, [Int32(0)], x, 1, 8, 1, &y, 8, 1) }
        XCTAssertEqual(bad, Int32(EK_ERR_ADAPTER))
        let seg = withSlots(slots) { s in ek_lora_sgmv(s, Int64(s.count), [Int32(0)], [Int64(2), 1], 1, x, 8, 8, &y, 8, 8) }
        XCTAssertEqual(seg, Int32(EK_ERR_SHAPE))
    }
}
