import COpenBLAS
import Foundation
import Kernels

/// Times the NF4 kernels against OpenBLAS f32 and a plain memory read in the same run
/// (`edgectl bench kernels`). Shapes are [m = out_features, k = in_features] with n activation rows:
/// GEMV n = 1 (decode), GEMM n = 128 (prefill), LoRA n = 8 rows with 8 different rank-16 adapters on
/// the 7 projections of a SmolLM2 layer (m then sums the 7 output widths). "decode" times what a decode
/// batch costs: the int8 GEMV (EK_ACT_INT8) and the int8 head (`ek_q8_matmul`) at n = 1 and n = 8
/// activation rows, cold, so n=8 / n=1 says how much 8 streams cost over one.
///
/// "hot": one matrix reused (in cache when it fits); "cold": the call cycles through enough copies that
/// the working set exceeds the LLC many times over, so every weight byte comes from DRAM.
public struct KernelBenchmark {
    public struct Options: Sendable {
        public var threads: Int?   // the "all threads" setting; nil = online cores
        public var quick: Bool
        /// Which ops to time: a subset of `KernelBenchmark.allOps`.
        public var ops: Set<String>
        public init(threads: Int? = nil, quick: Bool = false, ops: Set<String> = Set(KernelBenchmark.allOps)) {
            self.threads = threads
            self.quick = quick
            self.ops = ops
        }
    }

    public static let allOps = ["gemv", "gemm", "lora", "decode"]

    /// One measurement; the JSON field names are fixed by issue 3.
    public struct Row: Codable, Sendable {
        public var op: String          // "gemv" | "gemm" | "lora"
        public var impl: String        // "nf4-avx512", "nf4-avx512-int8", "openblas-sgemv", "memread", ...
        public var m: Int
        public var n: Int
        public var k: Int
        public var threads: Int
        public var cache: String       // "hot" | "cold"
        public var us: Double
        public var gflops: Double
        public var weight_gbps: Double
    }

    public struct Report: Sendable {
        public var rows: [Row]
        public var openblasConfig: String
        public var kernelsLine: String
    }

    let options: Options
    /// Cold working set target: far above any LLC on the devices we target (32 MiB here).
    let coldBytes = 256 << 20
    var minSeconds: Double { options.quick ? 0.05 : 0.25 }

    public init(options: Options) { self.options = options }

    static let smolShapes = [(576, 576), (192, 576), (1536, 576), (576, 1536)]
    static let bigShapes = [(4096, 4096), (11008, 4096), (4096, 11008)]
    /// A SmolLM2-135M layer: q, k, v, o, gate, up, down as (out, in).
    static let layerProjections = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]

    public func run(progress: (String) -> Void) -> Report {
        ek_set_threads(0)
        let allThreads = max(1, options.threads ?? Int(ek_threads()))
        let threadSettings = allThreads == 1 ? [1] : [1, allThreads]
        let names: [String] = ["scalar", "avx2", "avx512", "neon"]
        let variants = names.filter { ek_variant_supported($0) == 1 }
        let fast = variants.filter { $0 != "scalar" }
        let original = String(cString: ek_variant_name())
        defer {
            _ = ek_set_variant(original)
            ek_set_threads(0)
        }
        var rows: [Row] = []
        let gemvShapes = !options.ops.contains("gemv") ? [] : Self.smolShapes + (options.quick ? [(4096, 11008)] : Self.bigShapes)
        let gemmShapes = !options.ops.contains("gemm") ? [] : options.quick ? [(576, 576), (1536, 576)] : Self.smolShapes + Self.bigShapes
        for t in threadSettings {
            ek_set_threads(Int32(t))
            openblas_set_num_threads(Int32(t))
            for (m, k) in gemvShapes {
                for cache in ["hot", "cold"] {
                    progress("gemv \(m)x\(k) threads=\(t) \(cache)")
                    let nf4 = NF4Copies(rows: m, cols: k, copies: copies(for: NF4Copies.bytes(rows: m, cols: k), cache))
                    let x = randomFloats(k, seed: 1)
                    let y = UnsafeMutablePointer<Float>.allocate(capacity: m)
                    defer { y.deallocate() }
                    let f32 = F32Copies(rows: m, cols: k, copies: copies(for: m * k * 4, cache))
                    // Every implementation of the shape, timed round-robin (see timeRoundRobin): the targets
                    // read ratios between these rows (% of memread, x sgemv).
                    var timed: [Timed] = []
                    // The scalar variant only on the small shapes: it is the reference, not a contender.
                    for v in (m * k <= 1 << 20 ? variants : fast) {
                        for (flags, suffix) in [(Int32(0), ""), (Int32(EK_ACT_INT8), "-int8")] {
                            timed.append((impl: "nf4-\(v)\(suffix)", n: 1, bytes: Double(nf4.bytesPerCopy), flops: nil, cycles: nf4.count, body: { c in
                                _ = ek_set_variant(v)
                                var w = nf4.matrix(c)
                                _ = ek_nf4_gemv(&w, x, 1, Int64(k), y, Int64(m), flags)
                            }))
                        }
                    }
                    timed += [sgemvEntry(f32, m: m, k: k, x: x, y: y), memreadEntry(nf4)]
                    rows += roundRobinRows(timed, m: m, k: k, threads: t, cache: cache)
                }
            }
            for (m, k) in gemmShapes {
                let n = 128
                let x = randomFloats(n * k, seed: 2)
                var y = [Float](repeating: 0, count: n * m)
                for cache in ["hot", "cold"] {
                    progress("gemm \(m)x\(k) n=\(n) threads=\(t) \(cache)")
                    let nf4 = NF4Copies(rows: m, cols: k, copies: copies(for: NF4Copies.bytes(rows: m, cols: k), cache))
                    for v in fast {
                        _ = ek_set_variant(v)
                        // The variant's choice, and the dequantised-tile strategy forced, to show the choice is measured;
                        // and the bf16 prompt product of the fastest mode where the CPU has bf16 dot products.
                        var strategies = [(Int32(0), ""), (Int32(EK_GEMM_TILES), "-tiles")]
                        if ek_bf16_native() == 1 { strategies.append((Int32(EK_ACT_BF16), "-bf16")) }
                        for (flags, suffix) in strategies {
                            let us = time(cycles: nf4.count) { c in
                                var w = nf4.matrix(c)
                                _ = ek_nf4_gemm(&w, x, Int64(n), Int64(k), &y, Int64(m), flags)
                            }
                            rows.append(row("gemm", "nf4-\(v)\(suffix)", m, n, k, t, cache, us, Double(nf4.bytesPerCopy)))
                        }
                    }
                    let f32 = F32Copies(rows: m, cols: k, copies: copies(for: m * k * 4, cache))
                    let blasUs = time(cycles: f32.count) { c in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(m), Int32(k), 1, x, Int32(k),
                                    f32.pointer(c), Int32(k), 0, &y, Int32(m))
                    }
                    rows.append(row("gemm", "openblas-sgemm", m, n, k, t, cache, blasUs, Double(m * k * 4)))
                }
            }
            if options.ops.contains("decode") {
                rows += decodeRows(threads: t, variants: fast.isEmpty ? variants : fast, progress: progress)
            }
            if options.ops.contains("lora") {
                progress("lora 8 rows x 8 rank-16 adapters x 7 projections (f32 and f16 adapters) threads=\(t)")
                rows += loraRows(threads: t, variants: fast.isEmpty ? variants : fast)
            }
        }
        let config = openblas_get_config().map { String(cString: $0) } ?? "unknown"
        return Report(rows: rows, openblasConfig: config, kernelsLine: String(cString: ek_dispatch_description()))
    }

    /// SmolLM2 decode shapes and the 7B-like widest-input one for the batched int8 GEMV, and the
    /// SmolLM2 head (49152 tied-embedding rows x 576).
    static let decodeShapes = [(576, 576), (1536, 576), (576, 1536), (4096, 11008)]
    static let headShape = (49152, 576)
    static let decodeBatch = [1, 8]

    /// A timed implementation: its row's impl name, bytes and flops (nil: 2 m n k), the copies it cycles
    /// through and the call on copy `c`.
    typealias Timed = (impl: String, n: Int, bytes: Double, flops: Double?, cycles: Int, body: (Int) -> Void)

    /// GEMV rows of one shape, timed round-robin.
    private func roundRobinRows(_ timed: [Timed], m: Int, k: Int, threads: Int, cache: String = "cold") -> [Row] {
        let us = timeRoundRobin(timed.map { (cycles: $0.cycles, body: $0.body) })
        return timed.enumerated().map { i, t in row("gemv", t.impl, m, t.n, k, threads, cache, us[i], t.bytes, flops: t.flops) }
    }

    /// OpenBLAS sgemv of one activation row over the f32 copies (the f32 baseline of a GEMV shape).
    private func sgemvEntry(_ f32: F32Copies, m: Int, k: Int, x: [Float], y: UnsafeMutablePointer<Float>) -> Timed {
        (impl: "openblas-sgemv", n: 1, bytes: Double(m * k * 4), flops: nil, cycles: f32.count, body: { c in
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(k), 1, f32.pointer(c), Int32(k), x, 1, 0, y, 1)
        })
    }

    /// A plain read of the NF4 copies' bytes (the bandwidth ceiling of a GEMV shape).
    private func memreadEntry(_ nf4: NF4Copies) -> Timed {
        (impl: "memread", n: 1, bytes: Double(nf4.bytesPerCopy), flops: 0, cycles: nf4.count, body: { c in
            _ = ek_bench_read(nf4.raw(c), Int64(nf4.bytesPerCopy))
        })
    }

    /// One entry per variant and decode batch size: `call(copy, n)` runs the product on copy `copy`.
    private func batchEntries(_ variants: [String], impl: (String) -> String, copies: Int, bytes: Double,
                              _ call: @escaping (Int, Int) -> Void) -> [Timed] {
        variants.flatMap { v in
            Self.decodeBatch.map { n in
                (impl: impl(v), n: n, bytes: bytes, flops: nil, cycles: copies, body: { c in
                    _ = ek_set_variant(v)
                    call(c, n)
                })
            }
        }
    }

    /// Cold int8 GEMV and int8 head at n = 1 and n = 8 rows (op "gemv", impl "nf4-VARIANT-int8" and
    /// "q8head-VARIANT"), with the plain memory read and OpenBLAS sgemv (n = 1) of the same shape,
    /// timed round-robin per shape.
    func decodeRows(threads: Int, variants: [String], progress: (String) -> Void) -> [Row] {
        var rows: [Row] = []
        for (m, k) in Self.decodeShapes {
            progress("decode int8 gemv \(m)x\(k) n=1,8 threads=\(threads) cold")
            let nf4 = NF4Copies(rows: m, cols: k, copies: copies(for: NF4Copies.bytes(rows: m, cols: k), "cold"))
            let f32 = F32Copies(rows: m, cols: k, copies: copies(for: m * k * 4, "cold"))
            let x = randomFloats(8 * k, seed: 3)
            let y = UnsafeMutablePointer<Float>.allocate(capacity: 8 * m)
            defer { y.deallocate() }
            var timed = batchEntries(variants, impl: { "nf4-\($0)-int8" }, copies: nf4.count, bytes: Double(nf4.bytesPerCopy)) { c, n in
                var w = nf4.matrix(c)
                _ = ek_nf4_gemv(&w, x, Int64(n), Int64(k), y, Int64(m), Int32(EK_ACT_INT8))
            }
            timed += [memreadEntry(nf4), sgemvEntry(f32, m: m, k: k, x: x, y: y)]
            rows += roundRobinRows(timed, m: m, k: k, threads: threads)
        }
        let (m, k) = Self.headShape
        progress("decode int8 head \(m)x\(k) n=1,8 threads=\(threads) cold")
        let ld = Int(ek_q8_row_stride(Int64(k)))
        let headBytes = m * ld + 4 * m
        let head = HeadCopies(rows: m, cols: k, ld: ld, copies: copies(for: headBytes, "cold"))
        let x = randomFloats(8 * k, seed: 4)
        let y = UnsafeMutablePointer<Float>.allocate(capacity: 8 * m)
        defer { y.deallocate() }
        var timed = batchEntries(variants, impl: { "q8head-\($0)" }, copies: head.count, bytes: Double(headBytes)) { c, n in
            var w = head.matrix(c)
            _ = ek_q8_matmul(&w, x, Int64(n), Int64(k), y, Int64(m))
        }
        timed.append((impl: "memread", n: 1, bytes: Double(m * ld), flops: 0, cycles: head.count, body: { c in
            _ = ek_bench_read(head.raw(c), Int64(m * ld))
        }))
        rows += roundRobinRows(timed, m: m, k: k, threads: threads)
        return rows
    }

    /// Base GEMV of 8 rows through the 7 projections vs the gathered LoRA update of the same rows
    /// (8 different rank-16 adapters, stored f32 and f16). "hot": one layer reused; "cold": a SmolLM2
    /// model's worth of layers (30) cycled, so the NF4 weights (~53 MB) and the adapters (~156 MB f32,
    /// ~78 MB f16) stream from DRAM every step, as in serving.
    func loraRows(threads: Int, variants: [String]) -> [Row] {
        let n = 8, rank = 16
        let mSum = Self.layerProjections.reduce(0) { $0 + $1.0 }
        let xs = Self.layerProjections.map { randomFloats(n * $0.1, seed: 7) }
        var ys = Self.layerProjections.map { [Float](repeating: 0, count: n * $0.0) }
        let slotOfRow = (0..<Int32(n)).map { $0 }
        let baseFlops = Self.layerProjections.reduce(0.0) { $0 + 2.0 * Double($1.0 * $1.1 * n) }
        let loraFlops = Self.layerProjections.reduce(0.0) { $0 + 2.0 * Double(rank * ($1.0 + $1.1) * n) }
        var rows: [Row] = []
        for (cache, layers) in [("hot", 1), ("cold", options.quick ? 8 : 30)] {
            let weights = Self.layerProjections.map { NF4Copies(rows: $0.0, cols: $0.1, copies: layers) }
            let adapters = LoRACopies(shapes: Self.layerProjections.map { (out: $0.0, in: $0.1) }, layers: layers, adapters: n, rank: rank, seed: 100)
            let baseBytes = weights.reduce(0.0) { $0 + Double($1.bytesPerCopy) }
            for v in variants {
                _ = ek_set_variant(v)
                let baseUs = time(cycles: layers) { c in
                    for p in 0..<weights.count {
                        var w = weights[p].matrix(c)
                        let (m, k) = Self.layerProjections[p]
                        _ = ek_nf4_matmul(&w, xs[p], Int64(n), Int64(k), &ys[p], Int64(m), 0)
                    }
                }
                var r = row("lora", "nf4-\(v)-base-7proj", mSum, n, 576, threads, cache, baseUs, baseBytes)
                r.gflops = baseFlops / baseUs / 1e3
                rows.append(r)
                for (dtype, slots, bytes) in [("", adapters.f32Slots, adapters.f32BytesPerLayer), ("f16-", adapters.f16Slots, adapters.f16BytesPerLayer),
                                              ("i8-", adapters.i8Slots, adapters.i8BytesPerLayer)] {
                    let loraUs = time(cycles: layers) { c in
                        for p in 0..<weights.count {
                            let (m, k) = Self.layerProjections[p]
                            let s = slots[c][p]
                            _ = ek_lora_bgmv(s, Int64(s.count), slotOfRow, xs[p], Int64(n), Int64(k), Int64(k), &ys[p], Int64(m), Int64(m))
                        }
                    }
                    var l = row("lora", "lora-bgmv-\(dtype)\(v)", mSum, n, 576, threads, cache, loraUs, Double(bytes))
                    l.gflops = loraFlops / loraUs / 1e3
                    rows.append(l)
                }
            }
        }
        return rows
    }

    func copies(for bytes: Int, _ cache: String) -> Int {
        cache == "hot" ? 1 : max(2, (coldBytes + bytes - 1) / bytes)
    }

    /// Rounds of `timeRoundRobin` (one in --quick runs).
    var rounds: Int { options.quick ? 1 : 5 }

    /// Median microseconds per call of each body, timed round-robin: `rounds` rounds, each giving every
    /// body minSeconds / rounds in turn, so a neighbour that is busy during part of the run slows every
    /// implementation alike instead of whichever happened to run then (on this shared VM one pass per
    /// implementation put the same kernel anywhere between 77% and 92% of the memory read).
    func timeRoundRobin(_ bodies: [(cycles: Int, body: (Int) -> Void)]) -> [Double] {
        var samples = [[Double]](repeating: [], count: bodies.count)
        for _ in 0..<rounds {
            for (i, b) in bodies.enumerated() {
                samples[i].append(time(cycles: b.cycles, seconds: minSeconds / Double(rounds), b.body))
            }
        }
        return samples.map { $0.sorted()[$0.count / 2] }
    }

    /// Mean microseconds per call over at least `seconds` (default minSeconds; after a warm-up pass over
    /// every copy).
    func time(cycles: Int, seconds: Double? = nil, _ body: (Int) -> Void) -> Double {
        let minSeconds = seconds ?? self.minSeconds
        // Warm-up: one call, then (for cheap calls) a pass over the copies so page faults are not timed.
        let first = DispatchTime.now().uptimeNanoseconds
        body(0)
        if Double(DispatchTime.now().uptimeNanoseconds - first) < minSeconds * 1e9 / 16 {
            for c in 1..<max(1, min(cycles, 64)) { body(c) }
        }
        var calls = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var elapsed: UInt64 = 0
        repeat {
            body(calls % cycles)
            calls += 1
            elapsed = DispatchTime.now().uptimeNanoseconds - start
        } while Double(elapsed) < minSeconds * 1e9 || calls < 2
        return Double(elapsed) / 1e3 / Double(calls)
    }

    func row(_ op: String, _ impl: String, _ m: Int, _ n: Int, _ k: Int, _ threads: Int, _ cache: String,
             _ us: Double, _ bytes: Double, flops: Double? = nil) -> Row {
        let f = flops ?? 2.0 * Double(m) * Double(n) * Double(k)
        return Row(op: op, impl: impl, m: m, n: n, k: k, threads: threads, cache: cache, us: us,
                   gflops: f / us / 1e3, weight_gbps: bytes / us / 1e3)
    }

    func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        return (0..<count).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return (Float(s >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
    }
}

/// `copies` NF4 matrices [rows, cols] with double-quantised absmax (the model file's layout), each in
/// its own 64-byte aligned region of one allocation; random codes, plausible absmax.
final class NF4Copies {
    let rows: Int, cols: Int, count: Int
    let bytesPerCopy: Int
    private let base: UnsafeMutableRawPointer
    private let packedBytes: Int, blocks: Int, nestedCount: Int, stride: Int
    private let map: UnsafeMutablePointer<Float>

    static func bytes(rows: Int, cols: Int) -> Int {
        let blocks = (rows * cols + 63) / 64
        return (rows * cols + 1) / 2 + blocks + (blocks + 255) / 256 * 4
    }

    init(rows: Int, cols: Int, copies: Int) {
        self.rows = rows
        self.cols = cols
        count = copies
        packedBytes = (rows * cols + 1) / 2
        blocks = (rows * cols + 63) / 64
        nestedCount = (blocks + 255) / 256
        bytesPerCopy = packedBytes + blocks + nestedCount * 4
        stride = (bytesPerCopy + 4 * 64 + 63) / 64 * 64
        base = UnsafeMutableRawPointer.allocate(byteCount: stride * copies, alignment: 64)
        map = .allocate(capacity: 256)
        withUnsafeBytes(of: ek_dynamic_map_bits) { raw in
            for i in 0..<256 { map[i] = Float(bitPattern: raw.load(fromByteOffset: 4 * i, as: UInt32.self)) }
        }
        var s: UInt64 = 0x1234_5678_9ABC_DEF1
        for c in 0..<copies {
            let p = base + c * stride
            let words = p.bindMemory(to: UInt64.self, capacity: (packedBytes + blocks) / 8)
            for i in 0..<((packedBytes + blocks) / 8) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17
                words[i] = s
            }
            let nested = (p + nestedOffset).bindMemory(to: Float.self, capacity: nestedCount)
            for i in 0..<nestedCount { nested[i] = 0.02 }
        }
    }

    deinit {
        base.deallocate()
        map.deallocate()
    }

    private var nestedOffset: Int { (packedBytes + blocks + 63) / 64 * 64 }

    func raw(_ c: Int) -> UnsafeRawPointer { UnsafeRawPointer(base + c * stride) }

    func matrix(_ c: Int) -> ek_nf4_matrix {
        let p = base + c * stride
        return ek_nf4_matrix(
            packed: UnsafePointer(p.assumingMemoryBound(to: UInt8.self)), absmax_f32: nil,
            absmax_q8: UnsafePointer((p + packedBytes).assumingMemoryBound(to: UInt8.self)),
            nested_absmax: UnsafePointer((p + nestedOffset).assumingMemoryBound(to: Float.self)),
            dq_map: UnsafePointer(map), offset: 0.03, rows: Int64(rows), cols: Int64(cols), blocksize: 64,
            nested_blocksize: 256)
    }
}

/// `copies` int8 head matrices [rows, ld] with per-row scales, random values (the speed does not
/// depend on them).
final class HeadCopies {
    let rows: Int, cols: Int, ld: Int, count: Int
    private let q: UnsafeMutablePointer<Int8>
    private let scale: UnsafeMutablePointer<Float>

    init(rows: Int, cols: Int, ld: Int, copies: Int) {
        self.rows = rows
        self.cols = cols
        self.ld = ld
        count = copies
        q = .allocate(capacity: rows * ld * copies)
        scale = .allocate(capacity: rows * copies)
        for i in 0..<(rows * ld * copies) { q[i] = Int8(truncatingIfNeeded: (i &* 2_654_435_761) >> 13) }
        for i in 0..<(rows * copies) { scale[i] = 1e-3 }
    }

    deinit {
        q.deallocate()
        scale.deallocate()
    }

    func raw(_ c: Int) -> UnsafeRawPointer { UnsafeRawPointer(q + c * rows * ld) }

    func matrix(_ c: Int) -> ek_q8_matrix {
        ek_q8_matrix(q: UnsafePointer(q + c * rows * ld), scale: UnsafePointer(scale + c * rows), rows: Int64(rows),
                     cols: Int64(cols), ld: Int64(ld))
    }
}

/// `copies` f32 matrices [rows, cols] for OpenBLAS.
final class F32Copies {
    let count: Int
    private let base: UnsafeMutablePointer<Float>
    private let size: Int

    init(rows: Int, cols: Int, copies: Int) {
        count = copies
        size = (rows * cols + 15) / 16 * 16
        base = .allocate(capacity: size * copies)
        // A cheap deterministic fill: values do not change OpenBLAS's speed, only their presence in memory.
        for i in 0..<(size * copies) { base[i] = Float(Int32(truncatingIfNeeded: i &* 2_654_435_761) >> 8) * 1e-9 }
    }

    deinit { base.deallocate() }

    func pointer(_ c: Int) -> UnsafePointer<Float> { UnsafePointer(base + c * size) }
}
