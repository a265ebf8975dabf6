/// A frozen base projection W [outFeatures, inFeatures] the trainer multiplies by but never updates.
/// The production implementation is `NF4FrozenLinear` (4-bit weights from the mapped model file,
/// dequantised tile by tile inside the kernels); `DenseFrozenLinear` holds f32 weights for small
/// models built in tests and for non-quantised bases.
///
/// Implementations must be safe to call from one thread at a
/// time per output buffer (they may parallelise internally).
public protocol FrozenLinear: Sendable {
    var inFeatures: Int { get }
    var outFeatures: Int { get }
    /// y[rows, out] = x[rows, in] · Wᵀ
    func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) throws(TrainingError)
    /// dx[rows, in] = dy[rows, out] · W (+ dx when accumulate) — the transposed product; no
    /// transpose is materialised.
    func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) throws(TrainingError)
}

/// An f32 base projection, row-major [out, in], multiplied through OpenBLAS.
public final class DenseFrozenLinear: FrozenLinear, @unchecked Sendable {
    public let inFeatures: Int
    public let outFeatures: Int
    let weight: TrainBuffer

    public init(weight: [Float], outFeatures: Int, inFeatures: Int) {
        precondition(weight.count == outFeatures * inFeatures, "weight must be [out, in]")
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        self.weight = TrainBuffer(weight)
    }

    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>) {
        Blas.gemm(transB: true, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures,
                  b: weight.pointer, ldb: inFeatures, c: y, ldc: outFeatures)
    }

    public func backwardInput(_ dy: UnsafePointer<Float>, rows: Int, into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        Blas.gemm(m: rows, n: inFeatures, k: outFeatures, a: dy, lda: outFeatures,
                  b: weight.pointer, ldb: inFeatures, beta: accumulate ? 1 : 0, c: dx, ldc: inFeatures)
    }
}
