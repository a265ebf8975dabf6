import COpenBLAS
import Kernels

/// Row-major single-precision GEMM through OpenBLAS: C = alpha·op(A)·op(B) + beta·C, with
/// op(A) [m, k], op(B) [k, n], C [m, n]. Leading dimensions are in elements.
///
/// OpenBLAS runs single-threaded and large products are split into column or row slices over the
/// kernels' pool (`ek_parallel_for`). Its own threads busy-wait ~0.1 s after every call
/// (OPENBLAS_THREAD_TIMEOUT defaults to 2^28 cycles) and so took the cores the NF4 kernels' pool
/// was waiting for: a QLoRA step spent a third of its samples in sched_yield and ran 11% faster with
/// that timeout cut. One pool for both avoids the fight. Every OpenBLAS call of the engine goes
/// through here, so none can run before OpenBLAS is made single-threaded: a prompt's residual adds
/// (128 × 576 values) are past OpenBLAS's own threading threshold, and its threads then spun through
/// the first 70 ms of decoding (decode 9–17% slower in `bench generate`).
enum Blas {
    /// Below this many multiply-adds a product stays on the calling thread (pool hand-off costs µs).
    static let parallelThreshold = 1 << 21

    static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        keepOpenBLASSingleThreaded()
        var job = Job(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
                      ldb: ldb, beta: beta, c: c, ldc: ldc, splitColumns: n >= m, tasks: 1)
        let threads = Int(ek_threads())
        let long = max(m, n)
        if threads > 1, m * n * k >= parallelThreshold, long >= 32 {
            // Slices of 16 columns/rows at least (OpenBLAS packs panels of that order); a few per
            // thread so a slow core does not hold the others.
            job.tasks = min(threads * 4, long / 16)
        }
        if job.tasks <= 1 {
            job.run(slice: 0)
            return
        }
        withUnsafeMutablePointer(to: &job) { p in
            ek_parallel_for(Int64(p.pointee.tasks), { ctx, t, _ in
                ctx!.assumingMemoryBound(to: Job.self).pointee.run(slice: Int(t))
            }, p)
        }
    }

    /// Puts OpenBLAS back to one thread whenever something (a benchmark's reference product, a
    /// library) has changed it: the pool does the parallel work, and threaded OpenBLAS spins on the
    /// cores the pool waits for after every call. Reading the count is one load.
    private static func keepOpenBLASSingleThreaded() {
        if openblas_get_num_threads() != 1 { openblas_set_num_threads(1) }
    }

    /// One product and how it is cut: slice t covers columns (or rows) [t·len/tasks, (t+1)·len/tasks).
    private struct Job {
        let transA, transB: Bool
        let m, n, k: Int
        let alpha: Float
        let a: UnsafePointer<Float>
        let lda: Int
        let b: UnsafePointer<Float>
        let ldb: Int
        let beta: Float
        let c: UnsafeMutablePointer<Float>
        let ldc: Int
        let splitColumns: Bool
        var tasks: Int

        func run(slice t: Int) {
            let len = splitColumns ? n : m
            let lo = len * t / tasks, hi = len * (t + 1) / tasks
            guard hi > lo else { return }
            var a = a, b = b, c = c, m = m, n = n
            if splitColumns {
                // op(B)'s columns lo..<hi: B[k, n] row-major → offset lo; B stored [n, k] (transB) → lo rows.
                b += transB ? lo * ldb : lo
                c += lo
                n = hi - lo
            } else {
                // op(A)'s rows lo..<hi: A[m, k] → lo rows; A stored [k, m] (transA) → offset lo.
                a += transA ? lo : lo * lda
                c += lo * ldc
                m = hi - lo
            }
            cblas_sgemm(
                CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
        }
    }
}
