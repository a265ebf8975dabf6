import Kernels

/// A frozen NF4 projection read in place from the mapped model file (bitsandbytes layout, NF4.md).
/// Products run band by band: `tileRows` rows of W are dequantised into a small f32 tile and
/// multiplied with OpenBLAS, so no f32 copy of the whole weight ever exists. The per-block absmax
/// (1/64 of the weights' count) is decoded once at load.
///
/// Thread-safety: the tile scratch is per call, so concurrent calls are safe.
public final class NF4FrozenLinear: FrozenLinear, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    let packed: UnsafePointer<UInt8>
    let absmax: [Float]
    let code: [Float]
    let blocksize: Int
    let owner: AnyObject
    public var tileRows = 64

    /// packed: ⌈out·in/2⌉ bytes; absmax: decoded per-block scales; code: the 16 NF4 values.
    public init(packed: UnsafePointer<UInt8>, absmax: [Float], code: [Float], blocksize: Int,
                outFeatures: Int, inFeatures: Int, owner: AnyObject) throws(TrainingError) {
        guard code.count == 16 else { throw .shapeMismatch(what: "quant_map", expected: [16], found: [code.count]) }
        guard blocksize > 0, absmax.count == (outFeatures * inFeatures + blocksize - 1) / blocksize else {
            throw .shapeMismatch(what: "absmax", expected: [(outFeatures * inFeatures + blocksize - 1) / max(blocksize, 1)], found: [absmax.count])
        }
        self.packed = packed; self.absmax = absmax; self.code = code; self.blocksize = blocksize
        self.outFeatures = outFeatures; self.inFeatures = inFeatures; self.owner = owner
    }

    private func withTiles(_ body: (_ r0: Int, _ nr: Int, _ tile: UnsafeMutablePointer<Float>) -> Void) {
        let tr = min(tileRows, outFeatures)
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: tr * inFeatures)
        defer { tile.deallocate() }
        absmax.withUnsafeBufferPointer { am in
            code.withUnsafeBufferPointer { cd in
                var r0 = 0
                while r0 < outFeatures {
                    let nr = min(tr, outFeatures - r0)
                    et_nf4_dequant_rows(packed, am.baseAddress!, cd.baseAddress!, inFeatures, blocksize, r0, nr, tile)
                    body(r0, nr, tile)
                    r0 += nr
                }
            }
        }
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        withTiles { r0, nr, tile in
            Blas.gemm(transB: true, m: rows, n: nr, k: inFeatures, a: x, lda: inFeatures, b: tile, ldb: inFeatures,
                      c: y + r0, ldc: outFeatures)
        }
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        withTiles { r0, nr, tile in
            Blas.gemm(m: rows, n: inFeatures, k: nr, a: dy + r0, lda: outFeatures, b: tile, ldb: inFeatures,
                      beta: (r0 == 0 && !accumulate) ? 0 : 1, c: dx, ldc: inFeatures)
        }
    }
}
