import Foundation
import Kernels
import XCTest

/// The small ops of a Llama block against Double math, for every variant.
final class SmallOpsTests: XCTestCase {
    func testRMSNorm() {
        var rng = SplitMix(seed: 1)
        let dim = 576, n = 3
        let x = rng.floats(n * dim, scale: 3), w = rng.floats(dim)
        _ = forEachVariant { v in
            var y = [Float](repeating: 0, count: n * dim)
            XCTAssertEqual(ek_rmsnorm(x, Int64(n), Int64(dim), w, Int64(dim), 1e-5, &y, Int64(dim)), Int32(EK_OK))
            for i in 0..<n {
                let ms = (0..<dim).reduce(0.0) { $0 + Double(x[i * dim + $1]) * Double(x[i * dim + $1]) } / Double(dim)
                let inv = 1 / (ms + 1e-5).squareRoot()
                for k in 0..<dim { XCTAssertEqual(Double(y[i * dim + k]), Double(x[i * dim + k]) * inv * Double(w[k]), accuracy: 1e-5, v) }
            }
        }
    }

    func testRoPEPositionsPerRowAndCosSinAgree() {
        var rng = SplitMix(seed: 2)
        let heads = 3, hd = 64, n = 4, theta: Float = 10000
        let positions: [Int64] = [0, 7, 100, 4095]
        let x = rng.floats(n * heads * hd)
        _ = forEachVariant { v in
            var a = x
            XCTAssertEqual(ek_rope_positions(&a, Int64(n), Int64(heads * hd), Int64(heads), Int64(hd), positions, theta), Int32(EK_OK))
            var cosT = [Float](repeating: 0, count: n * hd), sinT = cosT
            for i in 0..<n { for j in 0..<hd {
                let inv = 1 / pow(Double(theta), Double(2 * (j % (hd / 2))) / Double(hd))
                cosT[i * hd + j] = Float(cos(Double(positions[i]) * inv)); sinT[i * hd + j] = Float(sin(Double(positions[i]) * inv)) } }
            var b = x
            XCTAssertEqual(ek_rope_cos_sin(&b, Int64(n), Int64(heads * hd), Int64(heads), Int64(hd), cosT, sinT), Int32(EK_OK))
            for i in 0..<n { for h in 0..<heads { for j in 0..<(hd / 2) {
                let base = i * heads * hd + h * hd
                let x1 = Double(x[base + j]), x2 = Double(x[base + j + hd / 2])
                let c = Double(cosT[i * hd + j]), s = Double(sinT[i * hd + j])
                XCTAssertEqual(Double(b[base + j]), x1 * c - x2 * s, accuracy: 1e-6, "\(v) cos/sin")
                XCTAssertEqual(Double(b[base + j + hd / 2]), x2 * c + x1 * s, accuracy: 1e-6, "\(v) cos/sin")
                // fp32 angles as transformers computes them: large positions lose a few ulps of angle.
                XCTAssertEqual(a[base + j], b[base + j], accuracy: 2e-3, "\(v) positions row \(i)")
                XCTAssertEqual(a[base + j + hd / 2], b[base + j + hd / 2], accuracy: 2e-3, "\(v) positions row \(i)")
            } } }
            XCTAssertEqual(Array(a[0..<(heads * hd)]), Array(x[0..<(heads * hd)]), "position 0 is the identity")
        }
    }

    func testSoftmaxSiluMulArgmax() {
        var rng = SplitMix(seed: 3)
        let x = rng.floats(2 * 100, scale: 30)
        _ = forEachVariant { v in
            var s = x
            XCTAssertEqual(ek_softmax(&s, 2, 100, 100), Int32(EK_OK))
            for i in 0..<2 {
                let row = x[(i * 100)..<(i * 100 + 100)].map(Double.init), m = row.max()!
                let z = row.reduce(0) { $0 + exp($1 - m) }
                for k in 0..<100 { XCTAssertEqual(Double(s[i * 100 + k]), exp(row[k] - m) / z, accuracy: 1e-6, v) }
            }
            let g = rng.floats(37, scale: 8), u = rng.floats(37)
            var o = [Float](repeating: 0, count: 37)
            XCTAssertEqual(ek_silu_mul(g, u, &o, 37), Int32(EK_OK))
            for k in 0..<37 {
                let gd = Double(g[k])
                XCTAssertEqual(Double(o[k]), gd / (1 + exp(-gd)) * Double(u[k]), accuracy: 1e-5 * max(1, abs(gd)), v)
            }
        }
        XCTAssertEqual(ek_argmax([1, 5, 5, -2], 4), 1)
        XCTAssertEqual(ek_argmax([Float.nan, -3, -1], 3), 2)
        XCTAssertEqual(ek_argmax([], 0), -1)
    }

    func testHalfAndBFloatConversions() {
        let all = (0...UInt16.max).map { $0 }
        _ = forEachVariant { v in
            var out = [Float](repeating: 0, count: all.count)
            ek_f16_to_f32(all, &out, Int64(all.count))
            for (k, h) in all.enumerated() {
                let want = Float(Float16(bitPattern: h))
                if want.isNaN { XCTAssertTrue(out[k].isNaN, "\(v) f16 \(h)") } else {
                    XCTAssertEqual(out[k].bitPattern, want.bitPattern, "\(v) f16 \(h)")
                }
            }
        }
        // f32 -> f16 (what an f16 KV cache stores) in every variant, SIMD body and scalar tail alike:
        // round to nearest even at normal and subnormal ties, overflow to infinity, NaNs quiet with
        // their top payload bits.
        var rng = SplitMix(seed: 4)
        let ties: [Float] = [1 + 0x1p-11, 1 + 3 * 0x1p-11, -(2 + 0x1p-10), 0x1p-25, 3 * 0x1p-25, 0x1p-24, 65504, 65519.996, 65520,
                             0x1p-14 - 0x1p-25, Float.leastNormalMagnitude, -Float.leastNonzeroMagnitude]
        let fs: [Float] = rng.floats(5000, scale: 70000) + rng.floats(999, scale: 1e-4) + ties
            + [0, -0, 1e-8, 6e-5, 5.96e-8, 2.98e-8, .infinity, -.infinity]
        let nans: [(bits: UInt32, half: UInt16)] = [(0x7fc0_0000, 0x7e00), (0x7f80_0001, 0x7e00), (0xffff_e000, 0xffff), (0x7fa0_2000, 0x7f01)]
        let input = fs + nans.map { Float(bitPattern: $0.bits) }
        _ = forEachVariant { v in
            var hs = [UInt16](repeating: 0, count: input.count)
            ek_f32_to_f16(input, &hs, Int64(input.count))
            for (k, f) in fs.enumerated() where hs[k] != Float16(f).bitPattern {
                XCTFail("\(v) f32->f16 \(f): \(hs[k]), want \(Float16(f).bitPattern)"); break
            }
            for (k, n) in nans.enumerated() { XCTAssertEqual(hs[fs.count + k], n.half, "\(v) NaN \(String(n.bits, radix: 16))") }
        }
        var bf = [Float](repeating: 0, count: 2)
        ek_bf16_to_f32([0x3F80, 0xC040], &bf, 2)
        XCTAssertEqual(bf, [1, -3])
    }

    /// Grouped-query attention over per-sequence caches of different lengths, f32 and f16 caches.
    func testAttentionGQAOverCaches() {
        let heads = 6, kvHeads = 2, hd = 16, stride = kvHeads * hd + 8
        let lens = [1, 5, 9]
        var rng = SplitMix(seed: 7)
        let q = rng.floats(lens.count * heads * hd)
        let ks = lens.map { rng.floats($0 * stride) }, vs = lens.map { rng.floats($0 * stride) }
        let scale = 1 / Float(hd).squareRoot()
        for dtype in [Int32(EK_DTYPE_F32), Int32(EK_DTYPE_F16)] {
            let kh = ks.map { $0.map { Float16($0).bitPattern } }, vh = vs.map { $0.map { Float16($0).bitPattern } }
            func value(_ f: [[Float]], _ h: [[UInt16]], _ s: Int, _ idx: Int) -> Double {
                dtype == Int32(EK_DTYPE_F32) ? Double(f[s][idx]) : Double(Float(Float16(bitPattern: h[s][idx])))
            }
            var want = [Double](repeating: 0, count: q.count)
            for i in 0..<lens.count { for h in 0..<heads {
                let g = h / (heads / kvHeads)
                var sc = [Double](repeating: 0, count: lens[i])
                for p in 0..<lens[i] {
                    var dot = 0.0
                    for d in 0..<hd {
                        let qd = Double(q[i * heads * hd + h * hd + d])
                        dot += qd * value(ks, kh, i, p * stride + g * hd + d)
                    }
                    sc[p] = dot * Double(scale)
                }
                let m = sc.max()!
                let e = sc.map { exp($0 - m) }
                let z = e.reduce(0, +)
                for d in 0..<hd {
                    var acc = 0.0
                    for p in 0..<lens[i] { acc += e[p] / z * value(vs, vh, i, p * stride + g * hd + d) }
                    want[i * heads * hd + h * hd + d] = acc
                }
            } }
            _ = forEachVariant { v in
                var out = [Float](repeating: .nan, count: q.count)
                let st: Int32 = ks.withUnsafeBufferPointers(vs, kh, vh) { kp, vp, khp, vhp in
                    let f32 = dtype == Int32(EK_DTYPE_F32)
                    var rows: [ek_attn_row] = []
                    for i in 0..<lens.count {
                        let k: UnsafeRawPointer = f32 ? UnsafeRawPointer(kp[i]) : UnsafeRawPointer(khp[i])
                        let v: UnsafeRawPointer = f32 ? UnsafeRawPointer(vp[i]) : UnsafeRawPointer(vhp[i])
                        rows.append(ek_attn_row(k: k, v: v, len: Int64(lens[i])))
                    }
                    return ek_attention(q, Int64(lens.count), Int64(heads * hd), rows, Int64(heads), Int64(kvHeads), Int64(hd),
                                        Int64(stride), dtype, scale, &out, Int64(heads * hd))
                }
                XCTAssertEqual(st, Int32(EK_OK))
                for k in 0..<want.count { XCTAssertEqual(Double(out[k]), want[k], accuracy: 1e-5, "\(v) dtype \(dtype) at \(k)") }
            }
        }
        var out = [Float](repeating: 0, count: heads * hd)
        XCTAssertEqual(ek_attention(q, 1, Int64(heads * hd), [ek_attn_row(k: nil, v: nil, len: 1)], Int64(heads), 4, Int64(hd),
                                    Int64(stride), 0, 1, &out, Int64(heads * hd)), Int32(EK_ERR_SHAPE))
    }
}

private extension Array where Element == [Float] {
    /// Stable base pointers of four arrays of arrays for the duration of body.
    func withUnsafeBufferPointers<R>(_ b: [[Float]], _ c: [[UInt16]], _ d: [[UInt16]],
                                     _ body: ([UnsafePointer<Float>], [UnsafePointer<Float>], [UnsafePointer<UInt16>], [UnsafePointer<UInt16>]) -> R) -> R {
        // Copy into one allocation per group so the pointers stay valid for the whole call.
        func pin<T>(_ arrays: [[T]]) -> ([UnsafePointer<T>], () -> Void) {
            let ptrs = arrays.map { a -> UnsafeMutablePointer<T> in
                let p = UnsafeMutablePointer<T>.allocate(capacity: Swift.max(a.count, 1))
                p.initialize(from: a, count: a.count)
                return p
            }
            return (ptrs.map { UnsafePointer($0) }, { ptrs.forEach { $0.deallocate() } })
        }
        let (pa, fa) = pin(self), (pb, fb) = pin(b), (pc, fc) = pin(c), (pd, fd) = pin(d)
        defer { fa(); fb(); fc(); fd() }
        return body(pa, pb, pc, pd)
    }
}
