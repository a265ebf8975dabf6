import Kernels

/// Forward and backward passes of a Llama decoder with LoRA on its projections, over a frozen base.
///
/// Gradients flow only into the LoRA A/B tensors; through the frozen projections they flow as
/// dX = dY·W (the transposed NF4 product — the base is never expanded to f32 as a whole).
/// Memory stays bounded by activation checkpointing: the forward keeps only each layer's input
/// [N, hidden] (N = B·T); the backward recomputes one layer at a time with all its activations,
/// then runs that layer's backward. When every layer's activations fit `activationBudgetBytes`
/// they are kept instead and nothing is recomputed (a third less compute). The loss head scores only supervised positions, in chunks of
/// `headChunkRows`, so the [rows, vocab] logits never exist for the whole batch.
///
/// Not thread-safe: one trainer per job; the matrix products parallelise internally.
public final class LoRATrainer: @unchecked Sendable {
    public let base: TrainingBaseModel
    public let lora: LoRAParameters
    public var headChunkRows = 128
    /// Polled before every layer of the forward, recomputation and backward, and before every
    /// chunk of the loss head — units of ≈ 5–15 ms at 500 tokens on a 135M model (an optimiser
    /// step is ≈ 90 of them), so inference waits at most one unit for the CPU and the kernels'
    /// shared thread pool. Returning true abandons the pass with `TrainingError.interrupted`.
    /// Only `lora.grads` and scratch buffers have changed by then, and the next step zeroes the
    /// gradients first, so redoing the step gives bit-for-bit the uninterrupted result.
    public var interruption: (() -> Bool)?

    private var capacityRows = 0
    private var capacityT = 0
    private var act: LayerActivations!
    /// With `keepActivations`, one activation set per layer: no recomputation in the backward
    /// (a third less compute, ~20 MB more per layer at 500 tokens). nil entries: not allocated.
    private var kept: [LayerActivations] = []
    /// nil: decide per batch from `activationBudgetBytes`.
    public var keepActivations: Bool? = nil
    /// Memory the trainer may spend on kept activations before it falls back to recomputation.
    public var activationBudgetBytes = 768 << 20
    private var grad: LayerGradients!
    private var layerInputs: [TrainBuffer] = []
    private var ropeCos = TrainBuffer(count: 0)
    private var ropeSin = TrainBuffer(count: 0)
    private var ropeRows = 0
    private var positions: [Int32] = []   // [N] position of each row
    private var validLengths: [Int64] = []   // [batch] unpadded length of each sequence

    public init(base: TrainingBaseModel, lora: LoRAParameters) throws(TrainingError) {
        guard lora.entries.allSatisfy({ $0.layer < base.shape.layers }),
              lora.entries.count == base.shape.layers * lora.targets.count else {
            throw .modelUnsupported(reason: "the LoRA parameters were laid out for another model shape")
        }
        for e in lora.entries {
            let d = base.shape.dims(of: e.target)
            guard d.out == e.outFeatures, d.in == e.inFeatures else {
                throw .shapeMismatch(what: e.keyStem, expected: [d.out, d.in], found: [e.outFeatures, e.inFeatures])
            }
        }
        self.base = base
        self.lora = lora
    }

    // MARK: - Public entry points

    /// Forward + backward on one micro-batch. Adds grad_scale·∂(Σ token CE)/∂θ into `lora.grads`
    /// (the caller zeroes them per optimiser step and picks grad_scale = 1 / supervised tokens of the
    /// whole step, so accumulation equals one big batch). Returns Σ token CE of this micro-batch.
    @discardableResult
    public func accumulateGradients(_ batch: TrainingBatch, gradScale: Float) throws(TrainingError) -> Double {
        try prepare(batch)
        let keep = shouldKeep(batch)
        if keep && kept.count != base.shape.layers {
            kept = (0..<base.shape.layers).map { _ in
                LayerActivations(shape: base.shape, rank: lora.rank, rows: capacityRows, maxT: capacityT)
            }
        } else if !keep {
            kept = []
        }
        let shared = act!
        defer { act = shared }
        embed(batch, into: layerInputs[0].pointer)
        for l in 0..<base.shape.layers {
            try checkInterruption()
            if keep { act = kept[l] }
            try layerForward(l, batch: batch, input: layerInputs[l].pointer, output: layerInputs[l + 1].pointer)
        }
        // dX of the last layer's output comes from the head.
        act = shared
        let dx = grad.dx
        let lossSum = try head(batch, finalHidden: layerInputs[base.shape.layers].pointer, gradScale: gradScale, dHidden: dx.pointer)
        for l in stride(from: base.shape.layers - 1, through: 0, by: -1) {
            try checkInterruption()
            if keep {
                act = kept[l]
            } else {
                // Recompute this layer with activations saved (the output is not needed again).
                try layerForward(l, batch: batch, input: layerInputs[l].pointer, output: grad.scratchOut.pointer)
                try checkInterruption()
            }
            try layerBackward(l, batch: batch, input: layerInputs[l].pointer, dOut: dx.pointer)
        }
        return lossSum
    }

    /// Σ token cross-entropy over the supervised positions (no gradients) and their count.
    public func loss(_ batch: TrainingBatch) throws(TrainingError) -> (sum: Double, count: Int) {
        try prepare(batch)
        embed(batch, into: layerInputs[0].pointer)
        var cur = 0
        for l in 0..<base.shape.layers {
            try checkInterruption()
            // Only two buffers are needed without a backward.
            let next = 1 - cur
            try layerForward(l, batch: batch, input: layerInputs[cur].pointer, output: layerInputs[next].pointer)
            cur = next
        }
        let sum = try head(batch, finalHidden: layerInputs[cur].pointer, gradScale: nil, dHidden: nil)
        return (sum, batch.supervisedCount)
    }

    private func checkInterruption() throws(TrainingError) {
        if let interruption, interruption() { throw .interrupted }
    }

    // MARK: - Buffers

    private func shouldKeep(_ batch: TrainingBatch) -> Bool {
        if let keepActivations { return keepActivations }
        return LayerActivations.bytes(shape: base.shape, rank: lora.rank, rows: capacityRows, maxT: capacityT) * base.shape.layers
            <= activationBudgetBytes
    }

    private func prepare(_ batch: TrainingBatch) throws(TrainingError) {
        let s = base.shape
        for id in batch.inputIds where id < 0 || Int(id) >= s.vocab {
            throw .invalidHyperparameter(name: "input_ids", reason: "token id \(id) is outside the vocabulary (0..<\(s.vocab))")
        }
        for l in batch.labels where l != TrainingBatch.ignoreIndex && (l < 0 || Int(l) >= s.vocab) {
            throw .invalidHyperparameter(name: "labels", reason: "label \(l) is outside the vocabulary (0..<\(s.vocab))")
        }
        let n = batch.batchSize * batch.seqLen
        if n > capacityRows || batch.seqLen > capacityT {
            capacityRows = max(n, capacityRows)
            capacityT = max(batch.seqLen, capacityT)
            act = LayerActivations(shape: s, rank: lora.rank, rows: capacityRows, maxT: capacityT)
            kept = []
            grad = LayerGradients(shape: s, rank: lora.rank, rows: capacityRows)
            layerInputs = (0...s.layers).map { _ in TrainBuffer(count: capacityRows * s.hidden) }
        }
        if batch.seqLen > ropeRows {
            ropeRows = batch.seqLen
            let half = s.headDim / 2
            ropeCos = TrainBuffer(count: ropeRows * half)
            ropeSin = TrainBuffer(count: ropeRows * half)
            et_rope_table(ropeCos.pointer, ropeSin.pointer, ropeRows, s.headDim, s.ropeTheta)
        }
        positions.removeAll(keepingCapacity: true)
        validLengths = batch.validLengths.map { Int64($0) }
        for _ in 0..<batch.batchSize { positions.append(contentsOf: (0..<Int32(batch.seqLen)).map { $0 }) }
    }

    private func embed(_ batch: TrainingBatch, into x: UnsafeMutablePointer<Float>) {
        let d = base.shape.hidden
        for (row, id) in batch.inputIds.enumerated() {
            (x + row * d).update(from: base.embedding + Int(id) * d, count: d)
        }
    }

    // MARK: - Projections with LoRA

    /// y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ; saves u = x·Aᵀ [rows, r] for the backward.
    private func project(_ l: Int, _ t: LoRATarget, x: UnsafePointer<Float>, rows: Int,
                         y: UnsafeMutablePointer<Float>, u: UnsafeMutablePointer<Float>) throws(TrainingError) {
        let p = base.layers[l].projections[t]!
        try p.forward(x, rows: rows, into: y)
        guard let e = lora.entry(layer: l, target: t) else { return }
        let r = lora.rank
        let w = lora.values.pointer
        Blas.gemm(transB: true, m: rows, n: r, k: e.inFeatures, a: x, lda: e.inFeatures, b: w + e.aOffset, ldb: e.inFeatures, c: u, ldc: r)
        Blas.gemm(transB: true, m: rows, n: e.outFeatures, k: r, alpha: lora.scaling, a: u, lda: r, b: w + e.bOffset, ldb: r,
                  beta: 1, c: y, ldc: e.outFeatures)
    }

    /// dx (= or +=) dy·W + s·(dy·B)·A, and dA, dB accumulated into lora.grads.
    private func projectBackward(_ l: Int, _ t: LoRATarget, x: UnsafePointer<Float>, u: UnsafePointer<Float>, rows: Int,
                                 dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, accumulate: Bool) throws(TrainingError) {
        let p = base.layers[l].projections[t]!
        try p.backwardInput(dy, rows: rows, into: dx, accumulate: accumulate)
        guard let e = lora.entry(layer: l, target: t) else { return }
        let r = lora.rank, s = lora.scaling
        let w = lora.values.pointer, g = lora.grads.pointer
        let du = grad.du.pointer
        // dB[out, r] += s · dyᵀ·u
        Blas.gemm(transA: true, m: e.outFeatures, n: r, k: rows, alpha: s, a: dy, lda: e.outFeatures, b: u, ldb: r,
                  beta: 1, c: g + e.bOffset, ldc: r)
        // du[rows, r] = s · dy·B
        Blas.gemm(m: rows, n: r, k: e.outFeatures, alpha: s, a: dy, lda: e.outFeatures, b: w + e.bOffset, ldb: r, c: du, ldc: r)
        // dA[r, in] += duᵀ·x
        Blas.gemm(transA: true, m: r, n: e.inFeatures, k: rows, a: du, lda: r, b: x, ldb: e.inFeatures,
                  beta: 1, c: g + e.aOffset, ldc: e.inFeatures)
        // dx += du·A
        Blas.gemm(m: rows, n: e.inFeatures, k: r, a: du, lda: r, b: w + e.aOffset, ldb: e.inFeatures,
                  beta: 1, c: dx, ldc: e.inFeatures)
    }

    // MARK: - Layer

    private func layerForward(_ l: Int, batch: TrainingBatch, input x: UnsafePointer<Float>,
                              output: UnsafeMutablePointer<Float>) throws(TrainingError) {
        let s = base.shape, a = act!
        let n = batch.batchSize * batch.seqLen, T = batch.seqLen
        let qDim = s.heads * s.headDim, kvDim = s.kvHeads * s.headDim
        let layer = base.layers[l]
        layer.inputNorm.withUnsafeBufferPointer { w in
            et_rmsnorm_forward(x, w.baseAddress!, a.n1.pointer, a.inv1.pointer, n, s.hidden, s.rmsEps)
        }
        try project(l, .q, x: a.n1.pointer, rows: n, y: a.q.pointer, u: a.u[.q]!.pointer)
        try project(l, .k, x: a.n1.pointer, rows: n, y: a.k.pointer, u: a.u[.k]!.pointer)
        try project(l, .v, x: a.n1.pointer, rows: n, y: a.v.pointer, u: a.u[.v]!.pointer)
        positions.withUnsafeBufferPointer { pos in
            et_rope_apply(a.q.pointer, n, qDim, s.heads, s.headDim, pos.baseAddress!, ropeCos.pointer, ropeSin.pointer, 0)
            et_rope_apply(a.k.pointer, n, kvDim, s.kvHeads, s.headDim, pos.baseAddress!, ropeCos.pointer, ropeSin.pointer, 0)
        }
        let scale = 1 / Float(s.headDim).squareRoot()
        validLengths.withUnsafeBufferPointer { valid in
            et_attention_forward_batch(a.q.pointer, a.k.pointer, a.v.pointer, a.attn.pointer, a.probs.pointer,
                                       batch.batchSize, T, valid.baseAddress!, s.heads, s.kvHeads, s.headDim,
                                       qDim, kvDim, qDim, scale)
        }
        try project(l, .o, x: a.attn.pointer, rows: n, y: a.h.pointer, u: a.u[.o]!.pointer)
        let h = a.h.pointer
        et_add(h, x, n * s.hidden)
        layer.postAttentionNorm.withUnsafeBufferPointer { w in
            et_rmsnorm_forward(h, w.baseAddress!, a.n2.pointer, a.inv2.pointer, n, s.hidden, s.rmsEps)
        }
        try project(l, .gate, x: a.n2.pointer, rows: n, y: a.g.pointer, u: a.u[.gate]!.pointer)
        try project(l, .up, x: a.n2.pointer, rows: n, y: a.up.pointer, u: a.u[.up]!.pointer)
        et_silu_mul_forward(a.g.pointer, a.up.pointer, a.m.pointer, n * s.intermediate)
        try project(l, .down, x: a.m.pointer, rows: n, y: output, u: a.u[.down]!.pointer)
        et_add(output, h, n * s.hidden)
    }

    /// dOut [n, hidden] is replaced by dInput. Needs the activations of layerForward(l) on `input`.
    private func layerBackward(_ l: Int, batch: TrainingBatch, input x: UnsafePointer<Float>,
                               dOut: UnsafeMutablePointer<Float>) throws(TrainingError) {
        let s = base.shape, a = act!, g = grad!
        let n = batch.batchSize * batch.seqLen, T = batch.seqLen
        let qDim = s.heads * s.headDim, kvDim = s.kvHeads * s.headDim
        let layer = base.layers[l]
        // out = h + down(m): dh starts as dOut; dm from down.
        try projectBackward(l, .down, x: a.m.pointer, u: a.u[.down]!.pointer, rows: n, dy: dOut, dx: g.dm.pointer, accumulate: false)
        et_silu_mul_backward(a.g.pointer, a.up.pointer, g.dm.pointer, g.dg.pointer, g.dup.pointer, n * s.intermediate)
        try projectBackward(l, .gate, x: a.n2.pointer, u: a.u[.gate]!.pointer, rows: n, dy: g.dg.pointer, dx: g.dn.pointer, accumulate: false)
        try projectBackward(l, .up, x: a.n2.pointer, u: a.u[.up]!.pointer, rows: n, dy: g.dup.pointer, dx: g.dn.pointer, accumulate: true)
        // dh = dOut + norm2ᵀ(dn)   (accumulated in place in dOut)
        layer.postAttentionNorm.withUnsafeBufferPointer { w in
            et_rmsnorm_backward(a.h.pointer, w.baseAddress!, a.inv2.pointer, g.dn.pointer, dOut, n, s.hidden, 1)
        }
        // h = x + o(attn)
        try projectBackward(l, .o, x: a.attn.pointer, u: a.u[.o]!.pointer, rows: n, dy: dOut, dx: g.dattn.pointer, accumulate: false)
        g.dk.zero(); g.dv.zero()
        let scale = 1 / Float(s.headDim).squareRoot()
        let status = validLengths.withUnsafeBufferPointer { valid in
            et_attention_backward_batch(a.q.pointer, a.k.pointer, a.v.pointer, a.probs.pointer, g.dattn.pointer,
                                        g.dq.pointer, g.dk.pointer, g.dv.pointer, batch.batchSize, T, valid.baseAddress!,
                                        s.heads, s.kvHeads, s.headDim, qDim, kvDim, qDim, scale)
        }
        guard status == 0 else {
            throw .kernelFailed(operation: "attention backward", status: status, message: "could not allocate \(T) floats of scratch per thread")
        }
        positions.withUnsafeBufferPointer { pos in
            et_rope_apply(g.dq.pointer, n, qDim, s.heads, s.headDim, pos.baseAddress!, ropeCos.pointer, ropeSin.pointer, 1)
            et_rope_apply(g.dk.pointer, n, kvDim, s.kvHeads, s.headDim, pos.baseAddress!, ropeCos.pointer, ropeSin.pointer, 1)
        }
        try projectBackward(l, .q, x: a.n1.pointer, u: a.u[.q]!.pointer, rows: n, dy: g.dq.pointer, dx: g.dn.pointer, accumulate: false)
        try projectBackward(l, .k, x: a.n1.pointer, u: a.u[.k]!.pointer, rows: n, dy: g.dk.pointer, dx: g.dn.pointer, accumulate: true)
        try projectBackward(l, .v, x: a.n1.pointer, u: a.u[.v]!.pointer, rows: n, dy: g.dv.pointer, dx: g.dn.pointer, accumulate: true)
        layer.inputNorm.withUnsafeBufferPointer { w in
            et_rmsnorm_backward(x, w.baseAddress!, a.inv1.pointer, g.dn.pointer, dOut, n, s.hidden, 1)
        }
    }

    // MARK: - Head

    /// Final norm, logits at supervised positions, cross-entropy. With gradScale, writes dHidden
    /// (the gradient at the last layer's output, zero at unscored rows). Returns Σ token CE.
    private func head(_ batch: TrainingBatch, finalHidden x: UnsafePointer<Float>, gradScale: Float?,
                      dHidden: UnsafeMutablePointer<Float>?) throws(TrainingError) -> Double {
        let s = base.shape, a = act!
        let n = batch.batchSize * batch.seqLen, T = batch.seqLen, d = s.hidden
        let normed = a.n1.pointer  // free at this point
        base.finalNorm.withUnsafeBufferPointer { w in
            et_rmsnorm_forward(x, w.baseAddress!, normed, a.inv1.pointer, n, d, s.rmsEps)
        }
        var rows: [Int] = [], targets: [Int32] = []
        for b in 0..<batch.batchSize {
            for t in 0..<(T - 1) {
                let lab = batch.labels[b * T + t + 1]
                if lab != TrainingBatch.ignoreIndex { rows.append(b * T + t); targets.append(lab) }
            }
        }
        let dNormed = grad?.dn.pointer
        if gradScale != nil, let dNormed { dNormed.update(repeating: 0, count: n * d) }
        var total = 0.0
        let chunk = max(1, headChunkRows)
        let hsel = UnsafeMutablePointer<Float>.allocate(capacity: chunk * d)
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: chunk * s.vocab)
        let dsel = UnsafeMutablePointer<Float>.allocate(capacity: chunk * d)
        defer { hsel.deallocate(); logits.deallocate(); dsel.deallocate() }
        var start = 0
        while start < rows.count {
            try checkInterruption()
            let m = min(chunk, rows.count - start)
            for i in 0..<m { (hsel + i * d).update(from: normed + rows[start + i] * d, count: d) }
            Blas.gemm(transB: true, m: m, n: s.vocab, k: d, a: hsel, lda: d, b: base.lmHead, ldb: d, c: logits, ldc: s.vocab)
            let part: Double = targets[start..<(start + m)].withUnsafeBufferPointer { tg in
                if let gradScale {
                    return et_cross_entropy_grad(logits, tg.baseAddress!, m, s.vocab, gradScale)
                }
                return et_cross_entropy(logits, tg.baseAddress!, m, s.vocab)
            }
            total += part
            if gradScale != nil, let dNormed {
                Blas.gemm(m: m, n: d, k: s.vocab, a: logits, lda: s.vocab, b: base.lmHead, ldb: d, c: dsel, ldc: d)
                for i in 0..<m { (dNormed + rows[start + i] * d).update(from: dsel + i * d, count: d) }
            }
            start += m
        }
        guard total.isFinite else { throw .nonFiniteLoss(step: 0) }
        if gradScale != nil, let dHidden, let dNormed {
            base.finalNorm.withUnsafeBufferPointer { w in
                et_rmsnorm_backward(x, w.baseAddress!, a.inv1.pointer, dNormed, dHidden, n, d, 0)
            }
        }
        return total
    }
}

/// Activations of one layer, saved by the forward for the backward. Shapes for N = B·T rows.
final class LayerActivations {
    let n1, inv1, q, k, v, attn, probs, h, n2, inv2, g, up, m: TrainBuffer
    let u: [LoRATarget: TrainBuffer]   // x·Aᵀ per projection [N, r]

    static func bytes(shape s: TrainingModelShape, rank: Int, rows n: Int, maxT: Int) -> Int {
        let floats = n * (4 * s.hidden + 2 * s.heads * s.headDim + 2 * s.kvHeads * s.headDim + 3 * s.intermediate
                          + 2 + s.heads * maxT + 7 * rank)
        return floats * 4
    }

    init(shape s: TrainingModelShape, rank: Int, rows n: Int, maxT: Int) {
        n1 = TrainBuffer(count: n * s.hidden)        // [N, hidden]
        inv1 = TrainBuffer(count: n)                  // [N]
        q = TrainBuffer(count: n * s.heads * s.headDim)   // [N, Hq·hd], after RoPE
        k = TrainBuffer(count: n * s.kvHeads * s.headDim) // [N, Hkv·hd], after RoPE
        v = TrainBuffer(count: n * s.kvHeads * s.headDim)
        attn = TrainBuffer(count: n * s.heads * s.headDim)
        // [B, Hq, T, T]: B·T ≤ N, so N·T bounds every batch shape with T ≤ maxT.
        probs = TrainBuffer(count: n * s.heads * maxT)
        h = TrainBuffer(count: n * s.hidden)          // residual after attention
        n2 = TrainBuffer(count: n * s.hidden)
        inv2 = TrainBuffer(count: n)
        g = TrainBuffer(count: n * s.intermediate)
        up = TrainBuffer(count: n * s.intermediate)
        m = TrainBuffer(count: n * s.intermediate)    // silu(g)·up
        var u: [LoRATarget: TrainBuffer] = [:]
        for t in LoRATarget.allCases { u[t] = TrainBuffer(count: n * rank) }
        self.u = u
    }
}

/// Gradient scratch for one layer's backward, reused across layers.
final class LayerGradients {
    let dx, dn, dm, dg, dup, dattn, dq, dk, dv, du, scratchOut: TrainBuffer

    init(shape s: TrainingModelShape, rank: Int, rows n: Int) {
        dx = TrainBuffer(count: n * s.hidden)         // running gradient of the residual stream
        dn = TrainBuffer(count: n * s.hidden)         // gradient at a norm's output
        dm = TrainBuffer(count: n * s.intermediate)
        dg = TrainBuffer(count: n * s.intermediate)
        dup = TrainBuffer(count: n * s.intermediate)
        dattn = TrainBuffer(count: n * s.heads * s.headDim)
        dq = TrainBuffer(count: n * s.heads * s.headDim)
        dk = TrainBuffer(count: n * s.kvHeads * s.headDim)
        dv = TrainBuffer(count: n * s.kvHeads * s.headDim)
        du = TrainBuffer(count: n * rank)
        scratchOut = TrainBuffer(count: n * s.hidden)
    }
}
