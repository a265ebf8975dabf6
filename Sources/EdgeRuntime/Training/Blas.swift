import COpenBLAS

/// Row-major single-precision GEMM through OpenBLAS: C = alpha·op(A)·op(B) + beta·C, with
/// op(A) [m, k], op(B) [k, n], C [m, n]. Leading dimensions are in elements.
/// OpenBLAS parallelises internally; the trainer calls it from one thread at a time.
enum Blas {
    static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Restricts OpenBLAS's own thread count (it otherwise uses every core).
    static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
    }
}
