import Kernels
import XCTest

/// Decode-shaped attention (one query row per sequence, long caches, grouped-query heads) in every
/// variant against a double-precision reference: the AVX-512 path splits long rows into position
/// chunks and merges them, so lengths around the 16-position blocks and the chunk limits are covered.
final class AttentionDecodeTests: XCTestCase {
    struct Cache {
        var k: UnsafeMutableRawPointer, v: UnsafeMutableRawPointer
        var kf: [Float], vf: [Float]   // the values as the kernel reads them (f16-rounded for f16)
    }

    func makeCache(len: Int, stride: Int, dtype: Int32, rng: inout SplitMix) -> Cache {
        var kf = rng.floats(len * stride, scale: 2), vf = rng.floats(len * stride)
        if dtype == Int32(EK_DTYPE_F16) {
            kf = kf.map { Float(Float16($0)) }
            vf = vf.map { Float(Float16($0)) }
        }
        let esz = dtype == Int32(EK_DTYPE_F32) ? 4 : 2
        let k = UnsafeMutableRawPointer.allocate(byteCount: max(1, len * stride * esz), alignment: 64)
        let v = UnsafeMutableRawPointer.allocate(byteCount: max(1, len * stride * esz), alignment: 64)
        if esz == 4 {
            k.copyMemory(from: kf, byteCount: kf.count * 4)
            v.copyMemory(from: vf, byteCount: vf.count * 4)
        } else {
            let kh = kf.map { Float16($0).bitPattern }, vh = vf.map { Float16($0).bitPattern }
            k.copyMemory(from: kh, byteCount: kh.count * 2)
            v.copyMemory(from: vh, byteCount: vh.count * 2)
        }
        return Cache(k: k, v: v, kf: kf, vf: vf)
    }

    func reference(q: [Float], row i: Int, heads: Int, kvHeads: Int, hd: Int, stride: Int, len: Int, cache: Cache,
                   scale: Float) -> [Double] {
        var out = [Double](repeating: 0, count: heads * hd)
        for h in 0..<heads {
            let g = h / (heads / kvHeads)
            var sc = [Double](repeating: 0, count: len)
            for p in 0..<len {
                var dot = 0.0
                for d in 0..<hd { dot += Double(q[i * heads * hd + h * hd + d]) * Double(cache.kf[p * stride + g * hd + d]) }
                sc[p] = dot * Double(scale)
            }
            let m = sc.max()!
            let e = sc.map { Foundation.exp($0 - m) }
            let z = e.reduce(0, +)
            for p in 0..<len {
                let w = e[p] / z
                for d in 0..<hd { out[h * hd + d] += w * Double(cache.vf[p * stride + g * hd + d]) }
            }
        }
        return out
    }

    /// `kv_precision = "auto"` picks f16 from this answer: only the variant whose attention converts
    /// f16 blocks in registers (AVX-512's attn_group) may claim f16 reads cost no more than f32.
    func testKVF16NativeOnlyWhereAttentionConvertsBlocks() {
        let ran = forEachVariant { v in
            XCTAssertEqual(ek_kv_f16_native(), v == "avx512" ? 1 : 0, v)
        }
        XCTAssertTrue(ran.contains("scalar"))
    }

    func testDecodeRowsAgainstDoubleReference() {
        let lens = [1, 2, 17, 300, 2049]
        var rng = SplitMix(seed: 42)
        for (kvHeads, group, hd) in [(3, 3, 64), (2, 1, 64), (2, 4, 64), (1, 3, 32), (2, 2, 40)] {
            let heads = kvHeads * group, stride = kvHeads * hd + 16
            let scale = 1 / Float(hd).squareRoot()
            for dtype in [Int32(EK_DTYPE_F32), Int32(EK_DTYPE_F16)] {
                let caches = lens.map { makeCache(len: $0, stride: stride, dtype: dtype, rng: &rng) }
                defer { caches.forEach { $0.k.deallocate(); $0.v.deallocate() } }
                let q = rng.floats(lens.count * heads * hd)
                let rows = zip(caches, lens).map { ek_attn_row(k: UnsafeRawPointer($0.k), v: UnsafeRawPointer($0.v), len: Int64($1)) }
                let want = lens.indices.flatMap {
                    reference(q: q, row: $0, heads: heads, kvHeads: kvHeads, hd: hd, stride: stride, len: lens[$0],
                              cache: caches[$0], scale: scale)
                }
                let tested = forEachVariant { v in
                    var out = [Float](repeating: .nan, count: q.count)
                    let st = ek_attention(q, Int64(lens.count), Int64(heads * hd), rows, Int64(heads), Int64(kvHeads), Int64(hd),
                                          Int64(stride), dtype, scale, &out, Int64(heads * hd))
                    XCTAssertEqual(st, Int32(EK_OK))
                    var worst = 0.0
                    for k in want.indices { worst = max(worst, abs(Double(out[k]) - want[k])) }
                    XCTAssertLessThanOrEqual(worst, 2e-6, "\(v) kv \(kvHeads) group \(group) hd \(hd) dtype \(dtype)")
                    // Each row alone gives exactly what it gave inside the batch (no dependence on batch-mates).
                    for i in lens.indices {
                        var alone = [Float](repeating: .nan, count: heads * hd)
                        _ = ek_attention(Array(q[(i * heads * hd)..<((i + 1) * heads * hd)]), 1, Int64(heads * hd), [rows[i]],
                                         Int64(heads), Int64(kvHeads), Int64(hd), Int64(stride), dtype, scale, &alone, Int64(heads * hd))
                        XCTAssertEqual(alone.map(\.bitPattern), out[(i * heads * hd)..<((i + 1) * heads * hd)].map(\.bitPattern),
                                       "\(v) row \(i) (len \(lens[i])) alone vs batch")
                    }
                }
                XCTAssertFalse(tested.isEmpty)
            }
        }
    }

    /// Scores far apart (one position dominating, others underflowing exp) stay finite and exact.
    func testPeakedScores() {
        let hd = 64, len = 200
        var rng = SplitMix(seed: 9)
        let cache = makeCache(len: len, stride: hd, dtype: Int32(EK_DTYPE_F32), rng: &rng)
        defer { cache.k.deallocate(); cache.v.deallocate() }
        // q parallel to position 150's key, scaled so its score beats every other by > 100.
        let q = (0..<hd).map { cache.kf[150 * hd + $0] * 40 }
        _ = forEachVariant { v in
            var out = [Float](repeating: .nan, count: hd)
            let row = ek_attn_row(k: UnsafeRawPointer(cache.k), v: UnsafeRawPointer(cache.v), len: Int64(len))
            XCTAssertEqual(ek_attention(q, 1, Int64(hd), [row], 1, 1, Int64(hd), Int64(hd), Int32(EK_DTYPE_F32), 1, &out, Int64(hd)), Int32(EK_OK))
            for d in 0..<hd { XCTAssertEqual(out[d], cache.vf[150 * hd + d], accuracy: 1e-6, "\(v) at \(d)") }
        }
    }
}
