import Foundation
import Kernels

/// The Llama forward pass over a batch of sequences of different lengths and positions.
///
/// One call advances every sequence in `steps` by its tokens (a prompt chunk or one decode token),
/// writes their keys/values into their own `SequenceCache`s and returns the logits asked for.
/// Rows are laid out decode-steps first, so the base NF4 product is two kernel calls per projection
/// for the whole batch: GEMV over the single-token rows, tiled GEMM over the prompt-chunk rows.
/// Which kernel a row goes through depends only on its own step (never on its batch-mates), and
/// every kernel reduces each output row independently, so a sequence's numbers do not depend on
/// what else is in the batch. LoRA deltas are added per sequence with the gathered SGMV kernel.
///
/// Concurrency: a model instance is driven by one thread at a time (the engine thread); the weights
/// are immutable and may be shared by several models.
public final class LlamaModel: @unchecked Sendable {
    public let weights: LlamaWeights
    public let hyperparameters: LlamaHyperparameters
    /// Activation precision of the NF4 products and the output head (see `ActivationPrecision`).
    public var activations: ActivationPrecision
    /// How the caches made by `makeCache` store keys and values (f16 halves their bytes).
    public let kvPrecision: SequenceCache.Precision
    private let inverseFrequencies: [Float]
    /// The logits buffer of the last forward call, reused by the next when it fits: a fresh 1.5 MB
    /// buffer per 8-stream decode step was page-faulted in (and zeroed by the kernel) every step,
    /// 3-5% of the daemon's time. Only buffers up to `reusedLogitsRows` rows are kept.
    private var logitsStorage: FloatBuffer?
    /// Ranges of freed caches, reused by the next ones (see `KVStoragePool`).
    let kvPool = KVStoragePool()
    private static let reusedLogitsRows = 64

    public enum ActivationPrecision: String, Sendable, CaseIterable {
        /// f32 activations everywhere: the accuracy reference.
        case f32
        /// The fastest mode: decode rows quantise activations to int8 per 32 values, prompt rows run
        /// their products in bf16 where the CPU has bf16 dot products (`EK_ACT_BF16`; f32 elsewhere),
        /// and the sampled (`.last`) row of a dense head goes through the head quantised to int8 per
        /// row (`Int8Head`).
        case int8
    }

    /// Which logits a step wants back.
    public enum LogitsSelection: Sendable {
        case none
        /// The distribution after the step's last token.
        case last
        /// One distribution per token of the step (for prompt logprobs and evaluation).
        case all
    }

    /// One sequence's part of a batch.
    public struct Step {
        public var cache: SequenceCache
        public var tokens: [Int32]
        public var adapters: AdapterMix
        public var logits: LogitsSelection
        /// Run every token through the decode (GEMV) kernels, as if each had been fed alone: the
        /// scheduler recomputes a preempted sequence's generated tokens this way, so their keys and
        /// values are bit-identical to the ones computed while decoding (the GEMV kernels reduce
        /// each row on its own, whatever the row count).
        public var decodeKernels: Bool

        public init(cache: SequenceCache, tokens: [Int32], adapters: AdapterMix = .none, logits: LogitsSelection = .last,
                    decodeKernels: Bool = false) {
            self.cache = cache
            self.tokens = tokens
            self.adapters = adapters
            self.logits = logits
            self.decodeKernels = decodeKernels
        }

        /// Whether the step's rows go through the decode (GEMV) group.
        var usesDecodeKernels: Bool { decodeKernels || tokens.count == 1 }
    }

    public init(weights: LlamaWeights, activations: ActivationPrecision = .f32, kvPrecision: SequenceCache.Precision = .f32) {
        self.weights = weights
        self.hyperparameters = weights.hyperparameters
        self.activations = activations
        self.kvPrecision = kvPrecision
        self.inverseFrequencies = weights.hyperparameters.ropeInverseFrequencies()
    }

    /// A fresh cache for a sequence that will hold at most `capacity` positions, laid out to grow
    /// in place up to `reserve` (see `SequenceCache`).
    public func makeCache(capacity: Int? = nil, reserve: Int? = nil) -> SequenceCache {
        SequenceCache(hyperparameters: hyperparameters, capacity: capacity ?? hyperparameters.contextLength, reserve: reserve,
                      precision: kvPrecision, pool: kvPool)
    }

    /// Bytes of `positions` positions of a cache from `makeCache`.
    public func kvBytes(positions: Int) -> Int {
        SequenceCache.byteCount(hyperparameters: hyperparameters, capacity: positions, precision: kvPrecision)
    }

    /// Logits of one `forwardInPlace` call, per step in the given order: empty for `.none`, `vocab`
    /// values for `.last`, `tokens.count × vocab` (row-major) for `.all`. They live in a buffer the
    /// model reuses: valid until its next forward call.
    public struct StepLogits {
        fileprivate let storage: FloatBuffer?
        fileprivate let ranges: [Range<Int>]

        public var count: Int { ranges.count }

        public subscript(_ step: Int) -> UnsafeBufferPointer<Float> {
            guard let storage, !ranges[step].isEmpty else { return UnsafeBufferPointer(start: nil, count: 0) }
            return UnsafeBufferPointer(start: storage.pointer + ranges[step].lowerBound, count: ranges[step].count)
        }
    }

    /// Runs one batch. Returns, per step in the given order, its logits: empty for `.none`,
    /// `vocab` values for `.last`, `tokens.count × vocab` (row-major) for `.all`.
    /// On error no cache is advanced.
    public func forward(_ steps: [Step]) throws(EngineError) -> [[Float]] {
        let logits = try forwardInPlace(steps)
        return (0..<logits.count).map { Array(logits[$0]) }
    }

    /// `forward` without copying the logits out: what the scheduler's decode loop calls every step.
    public func forwardInPlace(_ steps: [Step]) throws(EngineError) -> StepLogits {
        let hp = hyperparameters
        guard !steps.isEmpty else { return StepLogits(storage: nil, ranges: []) }
        for step in steps {
            guard !step.tokens.isEmpty else { throw .invalidRequest("a batch step has no tokens") }
            let needed = step.cache.length + step.tokens.count
            guard needed <= step.cache.capacity else {
                throw .contextOverflow(needed: needed, capacity: step.cache.capacity, contextLength: hp.contextLength)
            }
            for t in step.tokens where t < 0 || Int(t) >= hp.vocabularySize {
                throw .invalidToken(id: t, vocabularySize: hp.vocabularySize)
            }
        }
        for i in steps.indices {
            for j in steps.indices where j > i && steps[i].cache === steps[j].cache {
                throw .invalidRequest("two steps of one batch share a KV cache")
            }
        }
        // One attention call reads every cache of the batch: they must share a storage precision.
        let kvPrecision = steps[0].cache.precision
        guard steps.allSatisfy({ $0.cache.precision == kvPrecision }) else {
            throw .invalidRequest("the steps of one batch mix f32 and f16 KV caches")
        }

        // Decode steps (single tokens, and replays asking for the decode kernels) first: they form the GEMV group.
        let order = steps.indices.filter { steps[$0].usesDecodeKernels } + steps.indices.filter { !steps[$0].usesDecodeKernels }
        let ordered = order.map { steps[$0] }
        var rowStart = [Int](repeating: 0, count: ordered.count + 1)
        for (i, s) in ordered.enumerated() { rowStart[i + 1] = rowStart[i] + s.tokens.count }
        let n = rowStart[ordered.count]
        let decodeRows = ordered.prefix { $0.usesDecodeKernels }.reduce(0) { $0 + $1.tokens.count }

        let hidden = hp.hiddenSize, qDim = hp.qDim, kvDim = hp.kvDim, inter = hp.intermediateSize, headDim = hp.headDim
        let x = FloatBuffer(count: n * hidden, zeroed: false)
        let h = FloatBuffer(count: n * hidden, zeroed: false)
        let q = FloatBuffer(count: n * qDim, zeroed: false)
        let k = FloatBuffer(count: n * kvDim, zeroed: false)
        let v = FloatBuffer(count: n * kvDim, zeroed: false)
        let att = FloatBuffer(count: n * qDim, zeroed: false)
        let gate = FloatBuffer(count: n * inter, zeroed: false)
        let up = FloatBuffer(count: n * inter, zeroed: false)
        let cosTable = FloatBuffer(count: n * headDim, zeroed: false)
        let sinTable = FloatBuffer(count: n * headDim, zeroed: false)

        // Embeddings and per-row RoPE tables (angles in fp32 as transformers computes them).
        let half = headDim / 2
        var row = 0
        for s in ordered {
            for (j, t) in s.tokens.enumerated() {
                (x.pointer + row * hidden).update(from: weights.embedding.pointer + Int(t) * hidden, count: hidden)
                let pos = Float(s.cache.length + j)
                let c = cosTable.pointer + row * headDim, sn = sinTable.pointer + row * headDim
                for f in 0..<half {
                    let angle = pos * inverseFrequencies[f]
                    let cv = cosf(angle), sv = sinf(angle)
                    c[f] = cv; c[f + half] = cv
                    sn[f] = sv; sn[f + half] = sv
                }
                row += 1
            }
        }

        var attnRows = [ek_attn_row](repeating: ek_attn_row(), count: n)
        let maxMix = ordered.map(\.adapters.entries.count).max() ?? 0
        let scale = 1 / Float(headDim).squareRoot()
        let int8 = activations == .int8 ? Int32(EK_ACT_INT8) : 0
        let promptFlags = activations == .int8 ? Int32(EK_ACT_BF16) : 0

        // The operation name is built only on failure (no string per kernel call).
        func check(_ status: Int32, _ op: @autoclosure () -> String) throws(EngineError) {
            if status != 0 { throw .kernel(operation: op(), status: status, message: String(cString: ek_status_message(status))) }
        }

        // Per-sequence LoRA segments: one segment per step, rows rowStart[i] ..< rowStart[i + 1]. The decode
        // sequences come first: segments 0 ..< decodeSeqs are the GEMV rows.
        let segStart = rowStart.map { Int64($0) }
        let decodeSeqs = ordered.prefix { $0.usesDecodeKernels }.count
        // For one LoRA call: the slots of every target (projection) back to back, per target and segment
        // the index of its slot or -1, and the targets. Reused across projections and layers.
        var slots: [ek_lora_slot] = [], segSlot: [Int32] = [], slotCounts: [Int] = [], targets: [ek_lora_target] = []
        slots.reserveCapacity(ordered.count * 3)
        segSlot.reserveCapacity(ordered.count * 3)
        // Per mix entry and sequence: its binding's slot table and mixing weight (the bindings stay
        // alive in `ordered` for the whole forward).
        let perLayer = LlamaProjection.allCases.count
        let mixTables: [[(table: UnsafePointer<ek_lora_slot>, weight: Float)?]] = (0..<maxMix).map { m in
            ordered.map { s in
                m < s.adapters.entries.count ? (UnsafePointer(s.adapters.entries[m].binding.table.baseAddress!), s.adapters.entries[m].weight) : nil
            }
        }

        // Calls `body` with the LoRA targets of mix entry `mixIndex` for projections `ps` over the sequences
        // `segs` (seg_start from segStart[segs.lowerBound]), one target per projection (`nslots` 0 where no
        // sequence has a slot), and their count. Returns nil without calling it when no sequence has one.
        func withLoRATargets(_ layer: Int, _ ps: [LlamaProjection], mixIndex: Int, segs: Range<Int>,
                             _ outputs: [UnsafeMutablePointer<Float>?], _ lds: [Int64],
                             _ body: (UnsafePointer<ek_lora_target>, UnsafePointer<Int64>) -> Int32) -> Int32? {
            slots.removeAll(keepingCapacity: true)
            segSlot.removeAll(keepingCapacity: true)
            slotCounts.removeAll(keepingCapacity: true)
            let tables = mixTables[mixIndex]
            for p in ps {
                var count = 0
                for i in segs {
                    if let entry = tables[i], case var slot = entry.table[layer * perLayer + p.index], slot.rank > 0 {
                        slot.scale *= entry.weight
                        segSlot.append(Int32(count))
                        slots.append(slot)
                        count += 1
                    } else {
                        segSlot.append(-1)
                    }
                }
                slotCounts.append(count)
            }
            if slots.isEmpty { return nil }
            return slots.withUnsafeBufferPointer { sp in
                segSlot.withUnsafeBufferPointer { gp in
                    targets.removeAll(keepingCapacity: true)
                    var first = 0
                    for (m, p) in ps.enumerated() {
                        targets.append(ek_lora_target(slots: sp.baseAddress! + first, nslots: Int64(slotCounts[m]), seg_slot: gp.baseAddress! + m * segs.count,
                                                      y: outputs[m], ldy: lds[m], out: Int64(p.shape(hp).rows)))
                        first += slotCounts[m]
                    }
                    return segStart.withUnsafeBufferPointer { body(targets, $0.baseAddress! + segs.lowerBound) }
                }
            }
        }

        // Σ_k w_k s_k B_k (A_k x) per sequence of `segs` added to the outputs of projections `ps`, which read
        // the same input, for the mix entries `mixes`: one ek_lora_sgmv_multi per entry (x quantised once
        // per row).
        func addLoRA(_ layer: Int, _ ps: [LlamaProjection], mixes: Range<Int>, segs: Range<Int>, _ input: UnsafeMutablePointer<Float>,
                     _ ldIn: Int, _ outputs: [UnsafeMutablePointer<Float>?], _ lds: [Int64]) throws(EngineError) {
            guard !segs.isEmpty else { return }
            let inDim = ps[0].shape(hp).cols
            for mixIndex in mixes {
                let status = withLoRATargets(layer, ps, mixIndex: mixIndex, segs: segs, outputs, lds) { t, st in
                    ek_lora_sgmv_multi(t, Int32(ps.count), st, Int64(segs.count), input, Int64(ldIn), Int64(inDim))
                }
                if let status { try check(status, "lora_sgmv(\(ps.map(\.moduleName).joined(separator: ",")))") }
            }
        }

        // y_m[n, out_m] (+)= x[n, in] · W_m^T + Σ_k w_k s_k B_k (A_k x) per sequence (added to y with
        // `accumulate`: the residual stream takes o and down directly), for projections `ps` that
        // read the same input (q/k/v, gate/up; o and down alone). Their decode rows go through one
        // ek_nf4_gemv_lora call with the first adapter of each sequence's mix (one pool job: x prepared
        // once, each GEMV task adding its rows' LoRA updates; the same numbers as a GEMV and then the
        // LoRA call). Then each projection gets its prompt rows, and then the LoRA deltas not yet added,
        // in one call per mix entry (ek_lora_sgmv_multi): per row the same order, base then entries.
        // The projection and pointer tables are built once per forward, not per layer.
        let qkv: [LlamaProjection] = [.q, .k, .v], gateUp: [LlamaProjection] = [.gate, .up]
        let oProj: [LlamaProjection] = [.o], downProj: [LlamaProjection] = [.down]
        let qkvOut: [UnsafeMutablePointer<Float>?] = [q.pointer, k.pointer, v.pointer], qkvLd: [Int64] = [Int64(qDim), Int64(kvDim), Int64(kvDim)]
        let gateUpOut: [UnsafeMutablePointer<Float>?] = [gate.pointer, up.pointer], gateUpLd: [Int64] = [Int64(inter), Int64(inter)]
        // o and down both add into the residual stream x (EK_ACCUMULATE): no separate sum over x after each.
        let xOut: [UnsafeMutablePointer<Float>?] = [x.pointer], xLd: [Int64] = [Int64(hidden)]
        var matrices = [ek_nf4_matrix](repeating: ek_nf4_matrix(), count: 3)
        func projectTogether(_ layer: Int, _ ps: [LlamaProjection], _ input: UnsafeMutablePointer<Float>, _ ldIn: Int,
                             _ outputs: [UnsafeMutablePointer<Float>?], _ lds: [Int64], accumulate: Bool = false) throws(EngineError) {
            let acc = accumulate ? Int32(EK_ACCUMULATE) : 0
            var decodeMixDone = false
            if decodeRows > 0 {
                for (j, p) in ps.enumerated() { matrices[j] = weights.layers[layer][p] }
                if maxMix > 0, let status = withLoRATargets(layer, ps, mixIndex: 0, segs: 0..<decodeSeqs, outputs, lds, { t, st in
                    ek_nf4_gemv_lora(matrices, Int32(ps.count), input, Int64(decodeRows), Int64(ldIn), int8 | acc, t, st, Int64(decodeSeqs))
                }) {
                    try check(status, "nf4_gemv_lora(\(ps.map(\.moduleName).joined(separator: ",")))")
                    decodeMixDone = true
                } else {
                    try check(ek_nf4_gemv_multi(matrices, Int32(ps.count), input, Int64(decodeRows), Int64(ldIn), outputs, lds, int8 | acc),
                              "nf4_gemv(\(ps.map(\.moduleName).joined(separator: ",")))")
                }
            }
            if n > decodeRows {
                // Prompt rows in the fastest mode are bf16, not int8: int8 prompt products dropped the
                // logits fixture's top-1 agreement to 0.957 (< 0.98); bf16 keeps it at 0.99 and runs twice
                // the multiply-adds per instruction of f32. Each row's result is independent of its batch.
                for (j, p) in ps.enumerated() {
                    var m = weights.layers[layer][p]
                    try check(ek_nf4_gemm(&m, input + decodeRows * ldIn, Int64(n - decodeRows), Int64(ldIn),
                                          outputs[j]! + decodeRows * Int(lds[j]), lds[j], promptFlags | acc), "nf4_gemm(\(p.moduleName))")
                }
            }
            if decodeMixDone {
                try addLoRA(layer, ps, mixes: 0..<1, segs: decodeSeqs..<ordered.count, input, ldIn, outputs, lds)
                try addLoRA(layer, ps, mixes: 1..<maxMix, segs: 0..<ordered.count, input, ldIn, outputs, lds)
            } else {
                try addLoRA(layer, ps, mixes: 0..<maxMix, segs: 0..<ordered.count, input, ldIn, outputs, lds)
            }
        }

        for layer in 0..<hp.layerCount {
            let w = weights.layers[layer]
            try check(ek_rmsnorm(x.pointer, Int64(n), Int64(hidden), w.attentionNorm.pointer, Int64(hidden), hp.rmsNormEps, h.pointer, Int64(hidden)), "rmsnorm")
            try projectTogether(layer, qkv, h.pointer, hidden, qkvOut, qkvLd)
            try check(ek_rope_cos_sin(q.pointer, Int64(n), Int64(qDim), Int64(hp.headCount), Int64(headDim), cosTable.pointer, sinTable.pointer), "rope(q)")
            try check(ek_rope_cos_sin(k.pointer, Int64(n), Int64(kvDim), Int64(hp.kvHeadCount), Int64(headDim), cosTable.pointer, sinTable.pointer), "rope(k)")
            for (i, s) in ordered.enumerated() {
                let start = s.cache.length, count = s.tokens.count
                let keys = s.cache.keys(layer: layer), values = s.cache.values(layer: layer)
                s.cache.store(k.pointer + rowStart[i] * kvDim, count: count, at: start, into: keys)
                s.cache.store(v.pointer + rowStart[i] * kvDim, count: count, at: start, into: values)
                for j in 0..<count {
                    attnRows[rowStart[i] + j] = ek_attn_row(k: UnsafeRawPointer(keys), v: UnsafeRawPointer(values), len: Int64(start + j + 1))
                }
            }
            try check(ek_attention(q.pointer, Int64(n), Int64(qDim), attnRows, Int64(hp.headCount), Int64(hp.kvHeadCount), Int64(headDim),
                                   Int64(kvDim), kvPrecision.kernelDType, scale, att.pointer, Int64(qDim)), "attention")
            try projectTogether(layer, oProj, att.pointer, qDim, xOut, xLd, accumulate: true)
            try check(ek_rmsnorm(x.pointer, Int64(n), Int64(hidden), w.mlpNorm.pointer, Int64(hidden), hp.rmsNormEps, h.pointer, Int64(hidden)), "rmsnorm")
            try projectTogether(layer, gateUp, h.pointer, hidden, gateUpOut, gateUpLd)
            try check(ek_silu_mul(gate.pointer, up.pointer, gate.pointer, Int64(n * inter)), "silu_mul")
            try projectTogether(layer, downProj, gate.pointer, inter, xOut, xLd, accumulate: true)
        }

        // Final norm and output head, only over the rows whose logits were asked for.
        var logitRows: [Int] = []
        for (i, s) in ordered.enumerated() {
            switch s.logits {
            case .none: break
            case .last: logitRows.append(rowStart[i + 1] - 1)
            case .all: logitRows += Array(rowStart[i]..<rowStart[i + 1])
            }
        }
        for (i, s) in ordered.enumerated() { s.cache.length += s.tokens.count; _ = i }
        guard !logitRows.isEmpty else { return StepLogits(storage: nil, ranges: Array(repeating: 0..<0, count: steps.count)) }
        let m = logitRows.count, vocab = hp.vocabularySize
        let normed = FloatBuffer(count: m * hidden, zeroed: false)
        for (i, r) in logitRows.enumerated() {
            (normed.pointer + i * hidden).update(from: x.pointer + r * hidden, count: hidden)
        }
        try check(ek_rmsnorm(normed.pointer, Int64(m), Int64(hidden), weights.finalNorm.pointer, Int64(hidden), hp.rmsNormEps, normed.pointer, Int64(hidden)), "rmsnorm")
        let logits: FloatBuffer
        if let kept = logitsStorage, kept.count >= m * vocab {
            logits = kept
        } else {
            logits = FloatBuffer(count: m * vocab, zeroed: false)
            if m <= Self.reusedLogitsRows { logitsStorage = logits }
        }
        let int8Head = activations == .int8 ? try weights.int8Head() : nil
        switch weights.outputHead {
        case .dense(let head):
            // A `.last` row (what sampling reads) is one sgemv: no packing of the whole
            // [vocab, hidden] head, which is what sgemm costs for a handful of rows. An evaluation
            // step (`.all`) is one sgemm over its own rows.
            // Per step, so a row's numbers never depend on its batch-mates.
            var row = 0
            // Sampled rows of the fastest mode go through the int8 head (a quarter of the f32 head's
            // bytes) together: one pass over the head for a run of adjacent `.last` rows instead of
            // one pass per sequence (8 decode streams read the 28 MB SmolLM2 head 8 times a step).
            // Each row is quantised and dotted on its own, in integers, so its numbers do not
            // depend on its batch-mates. Evaluation steps (`.all`) keep the f32 head.
            var int8Run = (start: 0, count: 0)
            func flushInt8Run() throws(EngineError) {
                guard int8Run.count > 0, let int8Head else { return }
                var q8 = int8Head.matrix
                try check(ek_q8_matmul(&q8, normed.pointer + int8Run.start * hidden, Int64(int8Run.count), Int64(hidden),
                                       logits.pointer + int8Run.start * vocab, Int64(vocab)), "q8_matmul(lm_head)")
                int8Run = (0, 0)
            }
            for st in ordered {
                let rows: Int
                switch st.logits {
                case .none: rows = 0
                case .last: rows = 1
                case .all: rows = st.tokens.count
                }
                if rows == 1, int8Head != nil {
                    if int8Run.count == 0 { int8Run.start = row }
                    int8Run.count += 1
                } else if rows > 0 {
                    try flushInt8Run()
                    // The f32 head [vocab, hidden], split over the pool (one row is a GEMV by slices).
                    Blas.gemm(transB: true, m: rows, n: vocab, k: hidden, a: normed.pointer + row * hidden, lda: hidden,
                              b: head.pointer, ldb: hidden, c: logits.pointer + row * vocab, ldc: vocab)
                }
                row += rows
            }
            try flushInt8Run()
        case .nf4(var head):
            try check(ek_nf4_gemm(&head, normed.pointer, Int64(m), Int64(hidden), logits.pointer, Int64(vocab), 0), "nf4_gemm(lm_head)")
        }
        var ranges = [Range<Int>](repeating: 0..<0, count: steps.count)
        var next = 0
        for (i, s) in ordered.enumerated() {
            let rows: Int
            switch s.logits {
            case .none: rows = 0
            case .last: rows = 1
            case .all: rows = s.tokens.count
            }
            ranges[order[i]] = next * vocab..<(next + rows) * vocab
            next += rows
        }
        return StepLogits(storage: logits, ranges: ranges)
    }
}
