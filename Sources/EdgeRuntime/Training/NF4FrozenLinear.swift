import Foundation
import Kernels

/// A frozen NF4 projection read in place from the mapped model file (bitsandbytes layout, NF4.md).
/// Two interchangeable product paths, neither of which ever expands the whole weight to f32:
/// - `.kernels` (default): the project's NF4 GEMM and transposed GEMM (`ek_nf4_matmul`,
///   `ek_nf4_matmul_t`), which dequantise W panels in registers/cache on their own thread pool;
/// - `.tiledBLAS`: `tileRows` rows of W dequantised into a small f32 tile, multiplied by OpenBLAS.
/// The per-block absmax (1/64 of the weights' count) is decoded once at load.
///
/// Thread-safety: scratch is per call, so concurrent calls are safe.
public final class NF4FrozenLinear: FrozenLinear, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    let packed: UnsafePointer<UInt8>
    let absmax: [Float]
    let code: [Float]
    let blocksize: Int
    let owner: AnyObject
    public var tileRows = 64
    public enum Backend: String, Sendable { case kernels, tiledBLAS = "blas" }
    /// Process default; EDGE_TRAIN_NF4=blas selects the OpenBLAS tile path (for comparison).
    nonisolated(unsafe) public static var defaultBackend: Backend =
        ProcessInfo.processInfo.environment["EDGE_TRAIN_NF4"].flatMap(Backend.init(rawValue:)) ?? .kernels
    public var backend = NF4FrozenLinear.defaultBackend
    /// The kernels' fast paths need blocks that do not span rows; other shapes take the tile path.
    var useKernels: Bool { backend == .kernels && inFeatures % blocksize == 0 }

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

    private func withDescriptor(_ body: (UnsafePointer<ek_nf4_matrix>) -> Int32) throws(TrainingError) {
        let status: Int32 = absmax.withUnsafeBufferPointer { am in
            var d = ek_nf4_matrix(packed: packed, absmax_f32: am.baseAddress, absmax_q8: nil, nested_absmax: nil, dq_map: nil,
                                  offset: 0, rows: Int64(outFeatures), cols: Int64(inFeatures), blocksize: Int32(blocksize),
                                  nested_blocksize: 256)
            return body(&d)
        }
        guard status == 0 else {
            throw .kernelFailed(operation: "NF4 product [\(outFeatures), \(inFeatures)]", status: status,
                                message: String(cString: ek_status_message(status)))
        }
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) throws(TrainingError) {
        if useKernels {
            try withDescriptor { ek_nf4_matmul($0, x, Int64(rows), Int64(inFeatures), y, Int64(outFeatures), 0) }
            return
        }
        withTiles { r0, nr, tile in
            Blas.gemm(transB: true, m: rows, n: nr, k: inFeatures, a: x, lda: inFeatures, b: tile, ldb: inFeatures,
                      c: y + r0, ldc: outFeatures)
        }
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) throws(TrainingError) {
        if useKernels {
            try withDescriptor {
                ek_nf4_matmul_t($0, dy, Int64(rows), Int64(outFeatures), dx, Int64(inFeatures), accumulate ? Int32(EK_ACCUMULATE) : 0)
            }
            return
        }
        withTiles { r0, nr, tile in
            Blas.gemm(m: rows, n: inFeatures, k: nr, a: dy + r0, lda: outFeatures, b: tile, ldb: inFeatures,
                      beta: (r0 == 0 && !accumulate) ? 0 : 1, c: dx, ldc: inFeatures)
        }
    }
}
