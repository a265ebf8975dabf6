import Kernels
import XCTest
@testable import EdgeRuntime

/// The C backward kernels against double-precision references and central differences.
final class TrainKernelsTests: XCTestCase {
    var rng = SplitMix64(seed: 42)
    func rand(_ n: Int, _ s: Float = 1) -> [Float] { (0..<n).map { _ in rng.uniform(-s, s) } }

    /// Directional derivative of f along dir by central difference (f evaluated in f32, summed in double).
    func numeric(_ x: [Float], _ dir: [Float], eps: Float = 1e-2, _ f: ([Float]) -> Double) -> Double {
        let p = zip(x, dir).map { $0 + eps * $1 }, m = zip(x, dir).map { $0 - eps * $1 }
        return (f(p) - f(m)) / Double(2 * eps)
    }
    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

    func testRMSNormBackward() {
        let rows = 3, dim = 17  // odd sizes on purpose
        let x = rand(rows * dim, 2), w = rand(dim).map { 1 + $0 }, probe = rand(rows * dim)
        func f(_ x: [Float]) -> Double {
            var y = [Float](repeating: 0, count: rows * dim), inv = [Float](repeating: 0, count: rows)
            et_rmsnorm_forward(x, w, &y, &inv, rows, dim, 1e-5)
            return dot(y, probe)
        }
        var y = [Float](repeating: 0, count: rows * dim), inv = [Float](repeating: 0, count: rows)
        et_rmsnorm_forward(x, w, &y, &inv, rows, dim, 1e-5)
        // forward against the definition
        for r in 0..<rows {
            let ms = (0..<dim).reduce(0.0) { $0 + Double(x[r * dim + $1] * x[r * dim + $1]) } / Double(dim)
            for i in 0..<dim { XCTAssertEqual(y[r * dim + i], Float(Double(x[r * dim + i]) / (ms + 1e-5).squareRoot() * Double(w[i])), accuracy: 1e-5) }
        }
        var dx = [Float](repeating: 1, count: rows * dim)
        et_rmsnorm_backward(x, w, inv, probe, &dx, rows, dim, 1)  // accumulate onto 1s
        let grad = dx.map { $0 - 1 }
        for _ in 0..<4 {
            let dir = rand(rows * dim)
            XCTAssertEqual(dot(grad, dir), numeric(x, dir, eps: 1e-3, f), accuracy: 2e-3 * max(1, abs(dot(grad, dir))))
        }
    }

    func testRoPEInverseUndoesForwardAndMatchesDefinition() {
        let rows = 5, heads = 3, hd = 8, stride = heads * hd + 2
        var cosT = [Float](repeating: 0, count: 64 * hd / 2), sinT = cosT
        et_rope_table(&cosT, &sinT, 64, hd, 10_000)
        let x = rand(rows * stride)
        let pos: [Int32] = [0, 1, 7, 33, 63]
        var y = x
        et_rope_apply(&y, rows, stride, heads, hd, pos, cosT, sinT, 0)
        for r in 0..<rows {
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let ang = Double(pos[r]) / pow(10_000, Double(2 * i) / Double(hd))
                    let a = Double(x[r * stride + h * hd + i]), b = Double(x[r * stride + h * hd + i + hd / 2])
                    XCTAssertEqual(Double(y[r * stride + h * hd + i]), a * cos(ang) - b * sin(ang), accuracy: 1e-4)
                    XCTAssertEqual(Double(y[r * stride + h * hd + i + hd / 2]), b * cos(ang) + a * sin(ang), accuracy: 1e-4)
                }
            }
            // the 2 padding floats of each row are untouched
            XCTAssertEqual(y[r * stride + heads * hd], x[r * stride + heads * hd])
        }
        et_rope_apply(&y, rows, stride, heads, hd, pos, cosT, sinT, 1)
        for i in 0..<x.count { XCTAssertEqual(y[i], x[i], accuracy: 1e-5) }
    }

    func testAttentionBackward() {
        let T = 6, valid = 4, heads = 4, kv = 2, hd = 5
        let qd = heads * hd, kd = kv * hd
        let q = rand(T * qd), k = rand(T * kd), v = rand(T * kd), probe = rand(T * qd)
        let scale = 1 / Float(hd).squareRoot()
        func fwd(_ q: [Float], _ k: [Float], _ v: [Float]) -> ([Float], [Float]) {
            var out = [Float](repeating: 0, count: T * qd), probs = [Float](repeating: 0, count: heads * T * T)
            et_attention_forward(q, k, v, &out, &probs, T, valid, heads, kv, hd, qd, kd, qd, scale, 0, heads)
            return (out, probs)
        }
        let (out, probs) = fwd(q, k, v)
        // Query row 2, head 3 against a direct softmax over keys 0...2 (kv head 1).
        var scores = (0...2).map { s in (0..<hd).reduce(0.0) { $0 + Double(q[2 * qd + 3 * hd + $1] * k[s * kd + hd + $1]) } * Double(scale) }
        let mx = scores.max()!; scores = scores.map { exp($0 - mx) }; let z = scores.reduce(0, +)
        for i in 0..<hd {
            let ref = (0...2).reduce(0.0) { $0 + scores[$1] / z * Double(v[$1 * kd + hd + i]) }
            XCTAssertEqual(Double(out[2 * qd + 3 * hd + i]), ref, accuracy: 1e-5)
        }
        // Padding keys (≥ valid) get no weight.
        for h in 0..<heads { for t in 0..<T { for s in valid..<T { XCTAssertEqual(probs[h * T * T + t * T + s], 0) } } }
        var dq = [Float](repeating: 0, count: T * qd), dk = [Float](repeating: 0, count: T * kd), dv = dk
        var dp = [Float](repeating: 0, count: T)
        et_attention_backward(q, k, v, probs, probe, &dq, &dk, &dv, &dp, T, valid, heads, kv, hd, qd, kd, qd, scale, 0, heads)
        let dirQ = rand(T * qd), dirK = rand(T * kd), dirV = rand(T * kd)
        XCTAssertEqual(dot(dq, dirQ), numeric(q, dirQ, eps: 1e-3) { dot(fwd($0, k, v).0, probe) }, accuracy: 2e-3 * max(1, abs(dot(dq, dirQ))))
        XCTAssertEqual(dot(dk, dirK), numeric(k, dirK, eps: 1e-3) { dot(fwd(q, $0, v).0, probe) }, accuracy: 2e-3 * max(1, abs(dot(dk, dirK))))
        XCTAssertEqual(dot(dv, dirV), numeric(v, dirV, eps: 1e-3) { dot(fwd(q, k, $0).0, probe) }, accuracy: 2e-3 * max(1, abs(dot(dv, dirV))))
    }

    /// The pooled batch form runs the same per-head code in (sequence, kv group) tasks: results equal
    /// per-sequence calls exactly, with dk/dv accumulated (not overwritten) and padding respected.
    func testBatchedAttentionEqualsPerSequenceCalls() {
        ek_set_threads(2)
        defer { ek_set_threads(0) }
        let B = 3, T = 7, heads = 6, kv = 2, hd = 8, valid: [Int64] = [7, 4, 1]
        let qd = heads * hd, kd = kv * hd, scale = 1 / Float(hd).squareRoot()
        let q = rand(B * T * qd), k = rand(B * T * kd), v = rand(B * T * kd), dout = rand(B * T * qd)
        let startK = rand(B * T * kd), startV = rand(B * T * kd)
        var out = [Float](repeating: 0, count: B * T * qd), probs = [Float](repeating: 0, count: B * heads * T * T)
        var dq = out, dk = startK, dv = startV
        et_attention_forward_batch(q, k, v, &out, &probs, B, T, valid, heads, kv, hd, qd, kd, qd, scale)
        XCTAssertEqual(et_attention_backward_batch(q, k, v, probs, dout, &dq, &dk, &dv, B, T, valid, heads, kv, hd, qd, kd, qd, scale), 0)
        var refOut = out.map { _ in Float.nan }, refProbs = probs.map { _ in Float.nan }
        var refDq = dq.map { _ in Float.nan }, refDk = startK, refDv = startV, dp = [Float](repeating: 0, count: T)
        for b in 0..<B {
            let (rq, rk, ro, rp) = (b * T * qd, b * T * kd, b * T * qd, b * heads * T * T)
            refOut.withUnsafeMutableBufferPointer { o in refProbs.withUnsafeMutableBufferPointer { p in
                et_attention_forward(Array(q[rq...]), Array(k[rk...]), Array(v[rk...]), o.baseAddress! + ro, p.baseAddress! + rp,
                                     T, Int(valid[b]), heads, kv, hd, qd, kd, qd, scale, 0, heads)
            } }
            refDq.withUnsafeMutableBufferPointer { dqp in refDk.withUnsafeMutableBufferPointer { dkp in refDv.withUnsafeMutableBufferPointer { dvp in
                et_attention_backward(Array(q[rq...]), Array(k[rk...]), Array(v[rk...]), Array(refProbs[rp...]), Array(dout[ro...]),
                                      dqp.baseAddress! + rq, dkp.baseAddress! + rk, dvp.baseAddress! + rk, &dp,
                                      T, Int(valid[b]), heads, kv, hd, qd, kd, qd, scale, 0, heads)
            } } }
        }
        XCTAssertEqual(out, refOut)
        XCTAssertEqual(probs, refProbs)
        XCTAssertEqual(dq, refDq)
        XCTAssertEqual(dk, refDk)
        XCTAssertEqual(dv, refDv)
        XCTAssertNotEqual(dk, startK, "the backward must have accumulated something")
    }

    /// Blas.gemm cut into column or row slices over the pool equals a double-precision product, for
    /// every transpose combination, both split directions, alpha/beta and padded leading dimensions.
    func testSlicedGEMMMatchesReference() {
        ek_set_threads(2)
        defer { ek_set_threads(0) }
        for (m, n, k) in [(600, 40, 100), (40, 600, 100), (257, 259, 33), (2, 8200, 130)] {
            XCTAssertGreaterThanOrEqual(m * n * k, Blas.parallelThreshold, "each shape must take the sliced path")
            for transA in [false, true] {
                for transB in [false, true] {
                    let lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 2
                    let a = rand((transA ? k : m) * lda), b = rand((transB ? n : k) * ldb), c0 = rand(m * ldc)
                    var c = c0
                    Blas.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb,
                              beta: 2, c: &c, ldc: ldc)
                    for i in stride(from: 0, to: m, by: max(1, m / 7)) {
                        for j in stride(from: 0, to: n, by: max(1, n / 11)) {
                            var acc = 0.0
                            for t in 0..<k {
                                let av = transA ? a[t * lda + i] : a[i * lda + t]
                                let bv = transB ? b[j * ldb + t] : b[t * ldb + j]
                                acc += Double(av) * Double(bv)
                            }
                            let ref = 0.5 * acc + 2 * Double(c0[i * ldc + j])
                            XCTAssertEqual(Double(c[i * ldc + j]), ref, accuracy: 1e-4 * max(1, abs(ref)),
                                           "m \(m) n \(n) k \(k) transA \(transA) transB \(transB) at \(i),\(j)")
                        }
                    }
                    // Padding columns of C stay untouched.
                    XCTAssertEqual(c[0 * ldc + n], c0[0 * ldc + n])
                }
            }
        }
    }

    func testSiLUMulBackward() {
        let n = 33
        let g = rand(n, 6), u = rand(n, 2), dh = rand(n)
        var h = [Float](repeating: 0, count: n), dg = h, du = h
        et_silu_mul_forward(g, u, &h, n)
        et_silu_mul_backward(g, u, dh, &dg, &du, n)
        for i in 0..<n {
            let gd = Double(g[i]), s = 1 / (1 + exp(-gd))
            XCTAssertEqual(Double(h[i]), gd * s * Double(u[i]), accuracy: 1e-5)
            XCTAssertEqual(Double(du[i]), Double(dh[i]) * gd * s, accuracy: 1e-5)
            XCTAssertEqual(Double(dg[i]), Double(dh[i]) * Double(u[i]) * s * (1 + gd * (1 - s)), accuracy: 1e-5)
        }
    }

    func testCrossEntropyAndGradient() {
        let rows = 3, vocab = 50
        let logits = rand(rows * vocab, 8)
        let targets: [Int32] = [4, 49, -100]
        var g = logits
        let loss = et_cross_entropy_grad(&g, targets, rows, vocab, 0.5)
        XCTAssertEqual(loss, et_cross_entropy(logits, targets, rows, vocab), accuracy: 1e-9)
        var ref = 0.0
        for r in 0..<2 {
            let row = logits[(r * vocab)..<((r + 1) * vocab)].map(Double.init)
            let mx = row.max()!, z = row.reduce(0) { $0 + exp($1 - mx) }
            ref += log(z) + mx - row[Int(targets[r])]
            for i in 0..<vocab {
                let expect = 0.5 * (exp(row[i] - mx) / z - (i == Int(targets[r]) ? 1 : 0))
                XCTAssertEqual(Double(g[r * vocab + i]), expect, accuracy: 1e-6)
            }
        }
        XCTAssertEqual(loss, ref, accuracy: 1e-5)
        XCTAssertTrue(g[(2 * vocab)..<(3 * vocab)].allSatisfy { $0 == 0 }, "an ignored row has no gradient")
    }

    /// Three AdamW steps against the torch.optim.AdamW update written out in double.
    func testAdamWMatchesTorchSemantics() {
        let n = 9
        var p = rand(n), m = [Float](repeating: 0, count: n), v = m
        var pd = p.map(Double.init), md = [Double](repeating: 0, count: n), vd = md
        let lr: Float = 1e-3, b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8, wd: Float = 0.01
        for step in 1...3 {
            let g = rand(n, 1e-3)  // small gradients: the update is still ≈ lr
            et_adamw_step(&p, g, &m, &v, n, lr, b1, b2, eps, wd, Int64(step))
            for i in 0..<n {
                pd[i] *= 1 - Double(lr) * Double(wd)
                md[i] = Double(b1) * md[i] + (1 - Double(b1)) * Double(g[i])
                vd[i] = Double(b2) * vd[i] + (1 - Double(b2)) * Double(g[i]) * Double(g[i])
                let bc1 = 1 - pow(Double(b1), Double(step)), bc2 = 1 - pow(Double(b2), Double(step))
                pd[i] -= Double(lr) / bc1 * md[i] / (vd[i].squareRoot() / bc2.squareRoot() + Double(eps))
            }
        }
        for i in 0..<n { XCTAssertEqual(Double(p[i]), pd[i], accuracy: 2e-7) }
    }
}
