import Kernels
import XCTest

/// `ek_nf4_gemv_lora` (decode products with their LoRA deltas, fused into one pool job when every slot
/// is int8 and the product runs on int8 activations) must give exactly what `ek_nf4_gemv_multi`
/// followed by `ek_lora_sgmv_multi` gives, in every variant, fused or not, and refuse bad arguments
/// before writing anything.
extension LoRAKernelTests {
    private struct Case {
        var flags: Int32
        var f16Target: Bool   // target 1 holds f16 slots: the unfused path
        var emptyTarget: Bool // target 2 has no slots at all
    }

    /// Runs the fused call and the two-call reference from the same starting outputs; returns both.
    private func gemvLoRA(_ mats: [NF4TestMatrix], slots: [[ek_lora_slot]], segSlots: [[Int32]], segStart: [Int64], x: [Float],
                          n: Int, y0: [[Float]], flags: Int32) -> (fused: [[Float]], reference: [[Float]], status: Int32) {
        let cols = mats[0].cols, count = mats.count
        let ws = mats.map(\.matrix)
        let nseg = Int64(segStart.count - 1)
        func run(_ fused: Bool) -> ([[Float]], Int32) {
            let ys = y0.map { UnsafeMutableBufferPointer<Float>.allocate(capacity: $0.count) }
            let slotBufs = slots.map { UnsafeMutableBufferPointer<ek_lora_slot>.allocate(capacity: max(1, $0.count)) }
            let segBufs = segSlots.map { UnsafeMutableBufferPointer<Int32>.allocate(capacity: $0.count) }
            defer { ys.forEach { $0.deallocate() }; slotBufs.forEach { $0.deallocate() }; segBufs.forEach { $0.deallocate() } }
            for m in 0..<count {
                _ = ys[m].initialize(from: y0[m])
                _ = slotBufs[m].initialize(from: slots[m])
                _ = segBufs[m].initialize(from: segSlots[m])
            }
            let targets = (0..<count).map { m in
                ek_lora_target(slots: slotBufs[m].baseAddress, nslots: Int64(slots[m].count), seg_slot: segBufs[m].baseAddress,
                               y: ys[m].baseAddress, ldy: Int64(mats[m].rows), out: Int64(mats[m].rows))
            }
            var st: Int32
            if fused {
                st = ek_nf4_gemv_lora(ws, Int32(count), x, Int64(n), Int64(cols), flags, targets, segStart, nseg)
            } else {
                let yp: [UnsafeMutablePointer<Float>?] = ys.map(\.baseAddress)
                st = ek_nf4_gemv_multi(ws, Int32(count), x, Int64(n), Int64(cols), yp, mats.map { Int64($0.rows) }, flags)
                if st == 0 { st = ek_lora_sgmv_multi(targets, Int32(count), segStart, nseg, x, Int64(cols), Int64(cols)) }
            }
            return (ys.map { Array($0) }, st)
        }
        let (want, st0) = run(false)
        XCTAssertEqual(st0, Int32(EK_OK))
        let (got, st) = run(true)
        return (got, want, st)
    }

    func testGemvLoRAEqualsGemvThenSGMVBitForBit() {
        let cols = 128, n = 6
        let mats = [80, 24, 130].enumerated().map { m, r in NF4TestMatrix(rows: r, cols: cols, blocksize: 64, doubleQuant: m != 1, seed: UInt64(50 + m)) }
        var rng = SplitMix(seed: 23)
        let x = rng.floats(n * cols)
        // Row 5 lies outside the segments: no update. Slot 4 has a zero A (nothing to add).
        let segStart: [Int64] = [0, 1, 2, 5]
        let perTarget = mats.map { mt -> [LoRAKernelTests.Slot] in
            makeSlots(in: cols, out: mt.rows) + [LoRAKernelTests.Slot(a: [Float](repeating: 0, count: 3 * cols), b: rng.floats(mt.rows * 3), rank: 3, scale: 1)]
        }
        let quantized = perTarget.map { $0.map(Quantized.init) }
        let y0 = mats.map { rng.floats(n * $0.rows) }
        let cases = [Case(flags: Int32(EK_ACT_INT8), f16Target: false, emptyTarget: false),
                     Case(flags: Int32(EK_ACT_INT8) | Int32(EK_ACCUMULATE), f16Target: false, emptyTarget: true),
                     Case(flags: 0, f16Target: false, emptyTarget: false),
                     Case(flags: Int32(EK_ACT_INT8), f16Target: true, emptyTarget: false)]
        let tested = forEachVariant { v in
            withI8Slots(perTarget[0], quantized[0]) { s0 in
                withI8Slots(perTarget[1], quantized[1]) { s1 in
                    withF16Slots(perTarget[1], transposed: true) { s1h in
                        withI8Slots(perTarget[2], quantized[2]) { s2 in
                            for c in cases {
                                let slots = [s0, c.f16Target ? s1h : s1, c.emptyTarget ? [] : s2]
                                let segSlots: [[Int32]] = [[0, 4, 2], [1, 3, -1], c.emptyTarget ? [-1, -1, -1] : [4, 0, 3]]
                                let r = gemvLoRA(mats, slots: slots, segSlots: segSlots, segStart: segStart, x: x, n: n, y0: y0, flags: c.flags)
                                XCTAssertEqual(r.status, Int32(EK_OK), String(cString: ek_status_message(r.status)))
                                for m in mats.indices { assertBits(r.fused[m], r.reference[m], "\(v) \(c) matrix \(m)") }
                                // The products and updates really happened: every row differs from its start
                                // (EK_ACCUMULATE adds to it; otherwise it is overwritten).
                                XCTAssertNotEqual(r.fused[0], y0[0], "\(v) \(c)")
                            }
                        }
                    }
                }
            }
        }
        XCTAssertTrue(tested.contains("scalar"))
    }

    func testGemvLoRARefusesBadArgumentsWithoutWriting() {
        let cols = 64, n = 2
        let mats = [NF4TestMatrix(rows: 16, cols: cols, seed: 3), NF4TestMatrix(rows: 8, cols: cols, seed: 4)]
        let slot = makeSlots(in: cols, out: 16)[1]
        let q = Quantized(slot)
        var rng = SplitMix(seed: 5)
        let x = rng.floats(n * cols)
        withI8Slots([slot], [q]) { s in
            let y0 = UnsafeMutableBufferPointer<Float>.allocate(capacity: n * 16), y1 = UnsafeMutableBufferPointer<Float>.allocate(capacity: n * 8)
            let slotBuf = UnsafeMutableBufferPointer<ek_lora_slot>.allocate(capacity: 1)
            defer { y0.deallocate(); y1.deallocate(); slotBuf.deallocate() }
            _ = y0.initialize(repeating: 7); _ = y1.initialize(repeating: 7); _ = slotBuf.initialize(from: s)
            let seg0: [Int32] = [0, -1], seg1: [Int32] = [-1, -1]
            seg0.withUnsafeBufferPointer { g0 in
                seg1.withUnsafeBufferPointer { g1 in
                    var t = [ek_lora_target(slots: slotBuf.baseAddress, nslots: 1, seg_slot: g0.baseAddress, y: y0.baseAddress, ldy: 16, out: 16),
                             ek_lora_target(slots: nil, nslots: 0, seg_slot: g1.baseAddress, y: y1.baseAddress, ldy: 8, out: 8)]
                    let ws = mats.map(\.matrix), flags = Int32(EK_ACT_INT8)
                    let segStart: [Int64] = [0, 1, 2]
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 1, Int64(cols), flags, t, segStart, 2), Int32(EK_ERR_SHAPE), "segments past the rows")
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 0, x, 2, Int64(cols), flags, t, segStart, 2), Int32(EK_ERR_SHAPE), "no matrices")
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 2, Int64(cols), flags, nil, segStart, 2), Int32(EK_ERR_NULL))
                    t[1].out = 9
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 2, Int64(cols), flags, t, segStart, 2), Int32(EK_ERR_SHAPE), "out is not the matrix rows")
                    t[1].out = 8
                    t[0].nslots = 0   // segment 0 names slot 0 of none
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 2, Int64(cols), flags, t, segStart, 2), Int32(EK_ERR_ADAPTER))
                    t[0].nslots = 1
                    t[1].ldy = 4
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 2, Int64(cols), flags, t, segStart, 2), Int32(EK_ERR_STRIDE))
                    t[1].ldy = 8
                    XCTAssertTrue(y0.allSatisfy { $0 == 7 } && y1.allSatisfy { $0 == 7 }, "a refused call wrote its outputs")
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 2, Int64(cols), flags, t, segStart, 2), Int32(EK_OK))
                    XCTAssertEqual(ek_nf4_gemv_lora(ws, 2, x, 0, Int64(cols), flags, t, segStart, 0), Int32(EK_OK), "no rows")
                }
            }
        }
    }
}
