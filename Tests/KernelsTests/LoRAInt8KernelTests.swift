import Foundation
import Kernels
import XCTest

/// A slot quantised as the engine binds it (EK_DTYPE_I8): A rows padded to `ek_q8_row_stride`,
/// Bᵀ quantised per rank row in rank quads.
struct Quantized {
    var a: [Int8], aScale: [Float], bt: [Int8], btScale: [Float]
    let rank: Int, inF: Int, out: Int, lda: Int

    init(_ s: LoRAKernelTests.Slot) {
        rank = s.rank
        out = s.b.count / s.rank
        inF = s.a.count / s.rank
        lda = Int(ek_q8_row_stride(Int64(inF)))
        a = [Int8](repeating: 99, count: rank * lda); aScale = [Float](repeating: 0, count: rank)
        bt = [Int8](repeating: 99, count: Int(ek_lora_i8_bt_bytes(Int32(rank), Int64(out)))); btScale = [Float](repeating: 0, count: rank)
        XCTAssertEqual(ek_q8_quantize_rows(s.a, Int64(rank), Int64(inF), Int64(inF), Int64(lda), &a, &aScale), Int32(EK_OK))
        ek_lora_quantize_bt(s.b, Int32(rank), Int64(out), &bt, &btScale)
    }

    /// Element (t, j) of Bᵀ.
    func bt(_ t: Int, _ j: Int) -> Int8 { bt[((t / 4) * out + j) * 4 + t % 4] }
}

/// The arithmetic edge_kernels.h defines for an int8 slot, written out in Swift: row x (in values)
/// updates y (out values). Every variant must produce these bits.
private func referenceInt8(_ q: Quantized, scale: Float, x: [Float], y: inout [Float]) {
    let ld = q.lda
    var xq = [Int8](repeating: 0, count: ld), xd = [Float](repeating: 0, count: ld / 32)
    for b in 0..<(ld / 32) {
        let k0 = 32 * b, k1 = min(q.inF, k0 + 32)
        var amax: Float = 0
        for k in stride(from: k0, to: k1, by: 1) { amax = max(amax, abs(x[k])) }
        let id: Float = amax > 0 ? 127 / amax : 0
        for k in stride(from: k0, to: k1, by: 1) { xq[k] = Int8(truncatingIfNeeded: lrintf(x[k] * id)) }
        xd[b] = amax / 127
    }
    var u = [Float](repeating: 0, count: q.rank)
    for t in 0..<q.rank {
        var f = [Float](repeating: 0, count: 16)
        for c in 0..<(ld / 64) {
            for l in 0..<16 {
                var lane: Int32 = 0
                for e in 0..<4 { lane += Int32(q.a[t * ld + 64 * c + 4 * l + e]) * Int32(xq[64 * c + 4 * l + e]) }
                f[l] = f[l].addingProduct(Float(lane), xd[2 * c + l / 8])
            }
        }
        var st = 8
        while st > 0 {
            for l in 0..<st { f[l] += f[l + st] }
            st >>= 1
        }
        u[t] = f[0] * q.aScale[t]
    }
    var vmax: Float = 0
    for t in 0..<q.rank {
        u[t] = u[t] * scale * q.btScale[t]
        vmax = max(vmax, abs(u[t]))
    }
    guard vmax > 0 else { return }
    let id = 127 / vmax, sv = vmax / 127
    let v8 = (0..<q.rank).map { Int32(Int8(truncatingIfNeeded: lrintf(u[$0] * id))) }
    for j in 0..<q.out {
        var acc: Int32 = 0
        for t in 0..<q.rank { acc += Int32(q.bt(t, j)) * v8[t] }
        y[j] = y[j].addingProduct(sv, Float(acc))
    }
}

/// int8 LoRA slots (EK_DTYPE_I8), the fastest mode's serving form: the layouts, every variant bit for
/// bit against the arithmetic the header defines, that arithmetic against dense f32 math within the
/// bound its roundings allow, and the multi-target call against separate calls.
extension LoRAKernelTests {
    func withI8Slots<R>(_ slots: [LoRAKernelTests.Slot], _ q: [Quantized], _ body: ([ek_lora_slot]) -> R) -> R {
        func go(_ k: Int, _ acc: [ek_lora_slot]) -> R {
            if k == slots.count { return body(acc) }
            return q[k].a.withUnsafeBufferPointer { a in
                q[k].aScale.withUnsafeBufferPointer { sa in
                    q[k].bt.withUnsafeBufferPointer { bt in
                        q[k].btScale.withUnsafeBufferPointer { sb in
                            var s = ek_lora_slot()
                            s.rank = Int32(slots[k].rank); s.scale = slots[k].scale; s.dtype = Int32(EK_DTYPE_I8)
                            s.a8 = a.baseAddress; s.a8_scale = sa.baseAddress; s.bt8 = bt.baseAddress; s.bt8_scale = sb.baseAddress
                            s.a8_ld = Int64(q[k].lda)
                            return go(k + 1, acc + [s])
                        }
                    }
                }
            }
        }
        return go(0, [])
    }

    private func reference(_ slots: [LoRAKernelTests.Slot], _ q: [Quantized], slotOfRow: [Int32], x: [Float], y0: [Float], in inF: Int, out: Int) -> [Float] {
        var y = y0
        for (i, s) in slotOfRow.enumerated() where s >= 0 {
            var row = Array(y[(i * out)..<((i + 1) * out)])
            referenceInt8(q[Int(s)], scale: slots[Int(s)].scale, x: Array(x[(i * inF)..<((i + 1) * inF)]), y: &row)
            y.replaceSubrange((i * out)..<((i + 1) * out), with: row)
        }
        return y
    }

    func assertBits(_ got: [Float], _ want: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        for k in 0..<min(got.count, want.count) where got[k].bitPattern != want[k].bitPattern {
            XCTFail("\(what): element \(k) is \(got[k]), the defined arithmetic gives \(want[k])", file: file, line: line)
            return
        }
    }

    /// A's rows are quantised as the int8 head's (ek_q8_quantize_rows): each row to its own scale.
    func testQuantizeRowsRoundsEachRowToItsOwnScale() {
        let m: [Float] = [0.5, -1.0, 0.25, 0.0, /* zero row */ 0, 0, 0, 0, /* its own smaller scale */ 0.25, -0.5, 0, 0.125]
        var q = [Int8](repeating: 99, count: 3 * 64), scale = [Float](repeating: -1, count: 3)
        XCTAssertEqual(ek_q8_quantize_rows(m, 3, 4, 4, 64, &q, &scale), Int32(EK_OK))
        XCTAssertEqual(Array(q[0..<4]), [64, -127, 32, 0])   // 0.5 * 127 = 63.5 rounds to even
        XCTAssertEqual(scale[0], 1.0 / 127)
        XCTAssertEqual(Array(q[64..<68]), [0, 0, 0, 0])
        XCTAssertEqual(scale[1], 0, "an all-zero row gets scale 0")
        XCTAssertEqual(Array(q[128..<132]), [64, -127, 0, 32])
        XCTAssertEqual(scale[2], 0.5 / 127)
        XCTAssertTrue(q[4..<64].allSatisfy { $0 == 0 } && q[132...].allSatisfy { $0 == 0 }, "zero past cols")
    }

    /// A rows sit ek_q8_row_stride apart with zeros past `in`; Bᵀ row t (B's column t, its own scale)
    /// is spread over rank quads with zeros for the ranks past `rank`.
    func testInt8LayoutsPadAStrideAndQuadBt() {
        let rank = 5, inF = 70, out = 3
        var rng = SplitMix(seed: 3)
        let a = rng.floats(rank * inF), b = rng.floats(out * rank)
        XCTAssertEqual(ek_q8_row_stride(70), 128)
        XCTAssertEqual(ek_q8_row_stride(64), 64)
        XCTAssertEqual(ek_lora_i8_bt_bytes(5, 3), 2 * 3 * 4)
        let q = Quantized(LoRAKernelTests.Slot(a: a, b: b, rank: rank, scale: 1))
        for t in 0..<rank {
            let amax = (0..<inF).map { abs(a[t * inF + $0]) }.max()!
            XCTAssertEqual(q.aScale[t], amax / 127)
            for k in 0..<inF { XCTAssertEqual(q.a[t * 128 + k], Int8(lrintf(a[t * inF + k] * (127 / amax)))) }
            XCTAssertEqual(Array(q.a[(t * 128 + inF)..<((t + 1) * 128)]), [Int8](repeating: 0, count: 128 - inF), "row \(t) padding")
            let bmax = (0..<out).map { abs(b[$0 * rank + t]) }.max()!
            XCTAssertEqual(q.btScale[t], bmax / 127)
            for j in 0..<out { XCTAssertEqual(q.bt(t, j), Int8(lrintf(b[j * rank + t] * (127 / bmax))), "Bᵀ[\(t), \(j)]") }
        }
        for t in rank..<8 { for j in 0..<out { XCTAssertEqual(q.bt(t, j), 0, "padding rank \(t)") } }
    }

    /// The most the int8 form can move row i's output j from dense math on the f32 weights: A and Bᵀ
    /// each off by half a step of their row, x by half a step of its block of 32, v by half of sv;
    /// plus the f32 tolerance on the magnitudes.
    private func int8Bound(_ slots: [LoRAKernelTests.Slot], _ q: [Quantized], slotOfRow: [Int32], x: [Float], in inF: Int, out: Int) -> [Double] {
        var bound = [Double](repeating: 0, count: slotOfRow.count * out)
        for (i, si) in slotOfRow.enumerated() where si >= 0 {
            let s = slots[Int(si)], qs = q[Int(si)], r = s.rank
            let xr = (0..<inF).map { Double(x[i * inF + $0]) }
            let dx = (0..<inF).map { k -> Double in
                let b = k / 32
                return (b * 32..<min(inF, b * 32 + 32)).map { abs(xr[$0]) }.max()! / 254
            }
            var uErr = [Double](repeating: 0, count: r), uAbs = uErr
            for t in 0..<r {
                let da = Double(qs.aScale[t]) / 2
                var e = 0.0, u = 0.0
                for k in 0..<inF {
                    let ak = Double(s.a[t * inF + k])
                    e += da * abs(xr[k]) + abs(ak) * dx[k] + da * dx[k]
                    u += ak * xr[k]
                }
                uErr[t] = e
                uAbs[t] = abs(u) + e
            }
            let scale = Double(s.scale)
            let vmax = (0..<r).map { uAbs[$0] * scale * Double(qs.btScale[$0]) }.max()! * 1.0001
            for j in 0..<out {
                var e = 0.0
                for t in 0..<r {
                    let bj = abs(Double(s.b[j * r + t])), db = Double(qs.btScale[t]) / 2
                    e += scale * ((bj + db) * uErr[t] + db * uAbs[t])
                    e += abs(Double(qs.bt(t, j))) * vmax / 254
                }
                bound[i * out + j] = e
            }
        }
        return bound
    }

    /// Every variant, odd and real shapes, ranks 1, 7, 16, 256: bit for bit the defined arithmetic, and
    /// that within the rounding bound of dense math on the f32 weights (the share of the bound used is
    /// printed).
    func testInt8SlotsComputeTheDefinedArithmeticInEveryVariant() {
        for (inF, out) in [(1, 3), (17, 63), (65, 129), (576, 1536), (1536, 576)] {
            let n = 5
            let slots = makeSlots(in: inF, out: out)
            let q = slots.map(Quantized.init)
            let slotOfRow: [Int32] = [3, 2, 0, 1, -1]   // ranks 7, 256, 1, 16, none
            var rng = SplitMix(seed: UInt64(inF * 5 + out))
            let x = rng.floats(n * inF), y0 = rng.floats(n * out)
            let want = reference(slots, q, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            let (wantF32, magF32) = dense(slots, slotOfRow: slotOfRow, x: x, y0: y0, in: inF, out: out)
            let bound = int8Bound(slots, q, slotOfRow: slotOfRow, x: x, in: inF, out: out)
            var used = 0.0
            for k in 0..<want.count {
                let e = abs(Double(want[k]) - wantF32[k])
                used = max(used, e / (bound[k] + 1e-30))
                XCTAssertLessThanOrEqual(e, bound[k] + Self.tolerance * magF32[k] + 1e-7, "int8 arithmetic vs f32 weights \(inF)->\(out) at \(k)")
            }
            print("LoRAInt8KernelTests: int8 \(inF)->\(out): worst error / rounding bound = \(used)")
            let tested = forEachVariant { v in
                var y = y0
                let st = withI8Slots(slots, q) { s in
                    ek_lora_bgmv(s, Int64(s.count), slotOfRow, x, Int64(n), Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
                }
                XCTAssertEqual(st, Int32(EK_OK))
                assertBits(y, want, "\(v) int8 bgmv \(inF)->\(out)")
            }
            XCTAssertTrue(tested.contains("scalar"))
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
        let want = reference(slots, q, slotOfRow: segSlot, x: x, y0: y0, in: inF, out: out)
        _ = forEachVariant { v in
            var y = y0
            let st = withI8Slots(slots, q) { s in
                ek_lora_sgmv(s, Int64(s.count), segSlot, segStart, Int64(n), x, Int64(inF), Int64(inF), &y, Int64(out), Int64(out))
            }
            XCTAssertEqual(st, Int32(EK_OK))
            assertBits(y, want, "\(v) int8 sgmv ranks 1...256")
        }
    }

    /// A row of zeros (or an adapter whose A is zero) leaves y exactly as it was.
    func testZeroActivationsAndZeroAdaptersLeaveOutputsAlone() {
        let inF = 64, out = 32
        var rng = SplitMix(seed: 13)
        let slots = [LoRAKernelTests.Slot(a: rng.floats(16 * inF), b: rng.floats(out * 16), rank: 16, scale: 2),
                     LoRAKernelTests.Slot(a: [Float](repeating: 0, count: 4 * inF), b: rng.floats(out * 4), rank: 4, scale: 2)]
        let q = slots.map(Quantized.init)
        var x = rng.floats(2 * inF)
        for k in 0..<inF { x[k] = 0 }
        let y0 = rng.floats(2 * out)
        _ = forEachVariant { v in
            var y = y0
            let st = withI8Slots(slots, q) { s in ek_lora_bgmv(s, 2, [0, 1], x, 2, Int64(inF), Int64(inF), &y, Int64(out), Int64(out)) }
            XCTAssertEqual(st, Int32(EK_OK))
            assertBits(y, y0, "\(v): zero x (row 0) and zero A (row 1)")
        }
    }

    /// ek_lora_sgmv_multi over several projections of one input equals one ek_lora_sgmv per target,
    /// with int8 and f16 slots mixed; malformed targets are refused with the usual codes.
    func testSGMVMultiEqualsOneCallPerTarget() {
        let inF = 96, outs = [80, 24, 130], n = 6
        let segStart: [Int64] = [0, 1, 2, 5, 6]
        var rng = SplitMix(seed: 17)
        let x = rng.floats(n * inF)
        let perTarget = outs.map { out in makeSlots(in: inF, out: out) }
        let quantized = perTarget.map { $0.map(Quantized.init) }
        let segSlots: [[Int32]] = [[0, 1, -1, 3], [2, -1, 0, 1], [-1, -1, 3, 2]]
        let y0 = outs.map { rng.floats(n * $0) }
        _ = forEachVariant { v in
            // Target 1 holds f16 slots, the others int8.
            withI8Slots(perTarget[0], quantized[0]) { s0 in
                withF16Slots(perTarget[1], transposed: true) { s1 in
                    withI8Slots(perTarget[2], quantized[2]) { s2 in
                        let all = [s0, s1, s2]
                        var separate = y0
                        for m in 0..<3 {
                            XCTAssertEqual(ek_lora_sgmv(all[m], Int64(all[m].count), segSlots[m], segStart, 4, x, Int64(inF), Int64(inF),
                                                        &separate[m], Int64(outs[m]), Int64(outs[m])), Int32(EK_OK))
                        }
                        // Outputs, slots and segment tables at stable addresses for the targets' pointers.
                        let ys = y0.map { row in UnsafeMutableBufferPointer<Float>.allocate(capacity: row.count) }
                        let slotBufs = all.map { UnsafeMutableBufferPointer<ek_lora_slot>.allocate(capacity: $0.count) }
                        let segBufs = segSlots.map { UnsafeMutableBufferPointer<Int32>.allocate(capacity: $0.count) }
                        defer { ys.forEach { $0.deallocate() }; slotBufs.forEach { $0.deallocate() }; segBufs.forEach { $0.deallocate() } }
                        for m in 0..<3 {
                            _ = ys[m].initialize(from: y0[m])
                            _ = slotBufs[m].initialize(from: all[m])
                            _ = segBufs[m].initialize(from: segSlots[m])
                        }
                        var targets = (0..<3).map { m in
                            ek_lora_target(slots: slotBufs[m].baseAddress, nslots: 4, seg_slot: segBufs[m].baseAddress, y: ys[m].baseAddress,
                                           ldy: Int64(outs[m]), out: Int64(outs[m]))
                        }
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, 3, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_OK))
                        let together = ys.map { Array($0) }
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, 0, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_SHAPE))
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, Int32(EK_LORA_MAX_TARGETS) + 1, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_SHAPE))
                        XCTAssertEqual(ek_lora_sgmv_multi(nil, 3, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_NULL))
                        targets[1].nslots = 2   // segment 3 names slot 1 of 2, segment 0 slot 2
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, 3, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_ADAPTER))
                        targets[1].nslots = 4
                        targets[2].ldy = 10   // < out
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, 3, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_STRIDE))
                        targets[2].ldy = Int64(outs[2])
                        targets[0].y = nil
                        XCTAssertEqual(ek_lora_sgmv_multi(targets, 3, segStart, 4, x, Int64(inF), Int64(inF)), Int32(EK_ERR_NULL))
                        for m in 0..<3 { assertBits(together[m], separate[m], "\(v) sgmv_multi target \(m)") }
                    }
                }
            }
        }
    }

    func testIncompleteInt8SlotsAreRejected() {
        var y = [Float](repeating: 0, count: 8)
        let x = [Float](repeating: 1, count: 8)
        var a = [Int8](repeating: 0, count: 64)
        for k in 0..<8 { a[k] = 127 }
        let bt: [Int8] = (0..<32).map { $0 % 4 == 0 ? 127 : 0 }   // rank 1 in one quad, 8 outputs
        let scale: [Float] = [1.0 / 127]
        a.withUnsafeBufferPointer { av in
            bt.withUnsafeBufferPointer { bv in
                scale.withUnsafeBufferPointer { sc in
                    var s = ek_lora_slot()
                    s.rank = 1; s.scale = 1; s.dtype = Int32(EK_DTYPE_I8)
                    s.a8 = av.baseAddress; s.a8_scale = sc.baseAddress; s.bt8 = bv.baseAddress; s.a8_ld = 64
                    XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_ADAPTER), "Bᵀ without its scales")
                    s.bt8_scale = sc.baseAddress
                    s.a8_ld = 8
                    XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_ERR_STRIDE), "A rows must be ek_q8_row_stride(in) apart")
                    s.a8_ld = 64
                    XCTAssertEqual(ek_lora_bgmv(&s, 1, [Int32(0)], x, 1, 8, 8, &y, 8, 8), Int32(EK_OK))
                    for v in y { XCTAssertEqual(v, 8, accuracy: 1e-5, "A = B = 1: each output gains scale * sum(x) = 8") }
                }
            }
        }
    }
}
