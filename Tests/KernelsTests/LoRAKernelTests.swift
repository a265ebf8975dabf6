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
                                                      rank: Int32(slots[k].rank), scale: slots[k].scale)])
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
