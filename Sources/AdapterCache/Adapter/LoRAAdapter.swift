import Foundation
import Kernels

/// A decoded, validated LoRA adapter in the form the kernels consume (the cache's RAM tier): one
/// 64-byte-aligned arena holding every module's weights, plus a `(layer, projection)` table of
/// `LoRAModule`s pointing into it.
///
/// The arena is `.f32` (as decoded: `A` `[rank, in]` and `B` `[out, rank]` row-major, see `a(_:)` and
/// `b(_:)`), `.f16` (`converted(to: .f16)`: `A` `[rank, in]` and `Bᵀ` `[rank, out]` as IEEE half bit
/// patterns, see `a16(_:)` and `bt16(_:)`) or `.int8` (the kernels' EK_DTYPE_I8 form: `A` as int8 rows
/// `ek_q8_row_stride(in)` bytes apart and `Bᵀ` as int8 in rank quads, each matrix followed by the
/// f32 scales of its rank rows, see `a8(_:)` and `bt8(_:)`), the serving forms. Module offsets count
/// elements of the arena's own type (bytes for `.int8`).
///
/// Immutable after init and safe to share across threads; the arena lives as long as the object, so
/// hold the object (or the cache lease that carries it) while a kernel reads the pointers.
public final class LoRAAdapter: @unchecked Sendable {
    /// Modules sorted by layer, then projection (q, k, v, o, gate, up, down).
    public let modules: [LoRAModule]
    /// One more than the highest adapted layer index.
    public let layerCount: Int
    public let config: PEFTConfig
    /// Where it came from (directory or artifact path), for messages.
    public let label: String
    /// Element type of the arena.
    public let precision: LoRAPrecision
    /// The arena: `elementCount` values of `precision`.
    public let storage: UnsafeRawPointer
    public let elementCount: Int
    private let table: [Int32]  // layer * 7 + projection.ordinal → index in modules, or -1

    /// Bytes held in RAM (the arena; the table and module list are noise). This is what the cache's
    /// RAM budget counts, so a `.f16` adapter costs half of its `.f32` form.
    public var byteCount: Int { elementCount * precision.byteWidth }

    /// Maximum rank over the modules.
    public var maxRank: Int { modules.map(\.rank).max() ?? 0 }

    /// The projections adapted in at least one layer.
    public var projections: [LoRAProjection] { Array(Set(modules.map(\.projection))).sorted() }

    convenience init(modules: [LoRAModule], storage: UnsafeMutablePointer<Float>, floatCount: Int, config: PEFTConfig, label: String) {
        self.init(modules: modules, arena: UnsafeMutableRawPointer(storage), elementCount: floatCount, precision: .f32, config: config, label: label)
    }

    /// Takes ownership of `arena` (allocated with `UnsafeMutableRawPointer.allocate`).
    private init(modules: [LoRAModule], arena: UnsafeMutableRawPointer, elementCount: Int, precision: LoRAPrecision, config: PEFTConfig, label: String) {
        let sorted = modules.sorted { ($0.layer, $0.projection.ordinal) < ($1.layer, $1.projection.ordinal) }
        self.modules = sorted
        self.storage = UnsafeRawPointer(arena)
        self.elementCount = elementCount
        self.precision = precision
        self.config = config
        self.label = label
        let layers = (sorted.map(\.layer).max() ?? -1) + 1
        layerCount = layers
        var t = [Int32](repeating: -1, count: layers * 7)
        for (i, m) in sorted.enumerated() { t[m.layer * 7 + m.projection.ordinal] = Int32(i) }
        table = t
    }

    deinit { UnsafeMutableRawPointer(mutating: storage).deallocate() }

    /// This adapter with its arena in `target` precision (itself when it already is). f32 → f16 rounds
    /// to nearest even and transposes every `B` to `Bᵀ [rank, out]` (the layout the kernels read
    /// fastest for a single row); f16 → f32 widens exactly and transposes back. Each matrix starts on a
    /// 64-byte boundary with zeroed padding, as in the decoder's arena.
    public func converted(to target: LoRAPrecision) -> LoRAAdapter {
        guard target != precision else { return self }
        // Between the two narrow forms, through f32 (exact from f16; int8 values times their scales).
        if precision != .f32 && target != .f32 { return converted(to: .f32).converted(to: target) }
        let perLine = 64 / target.byteWidth
        func padded(_ n: Int) -> Int { (n + perLine - 1) / perLine * perLine }
        // int8 rows carry one f32 scale each, stored after the matrix (an int8 arena counts bytes).
        func scales(_ rank: Int) -> Int { target == .int8 ? padded(rank * 4) : 0 }
        func aCount(_ m: LoRAModule) -> Int { target == .int8 ? Self.int8ABytes(m) : m.rank * m.inFeatures }
        func bCount(_ m: LoRAModule) -> Int { target == .int8 ? Self.int8BtBytes(m) : m.outFeatures * m.rank }
        let total = max(modules.reduce(0) { $0 + padded(aCount($1)) + padded(bCount($1)) + 2 * scales($1.rank) }, perLine)
        let arena = UnsafeMutableRawPointer.allocate(byteCount: total * target.byteWidth, alignment: 64)
        arena.initializeMemory(as: UInt8.self, repeating: 0, count: total * target.byteWidth)
        var converted: [LoRAModule] = []
        converted.reserveCapacity(modules.count)
        var offset = 0
        for m in modules {
            let r = m.rank, out = m.outFeatures, inp = m.inFeatures
            let aOffset = offset, bOffset = offset + padded(aCount(m)) + scales(r)
            offset = bOffset + padded(bCount(m)) + scales(r)
            switch (precision, target) {
            case (.f32, .f16):
                let dst = arena.assumingMemoryBound(to: UInt16.self)
                let a = self.a(m), b = self.b(m)
                for i in 0..<(r * inp) { dst[aOffset + i] = Float16(a[i]).bitPattern }
                for j in 0..<out { for t in 0..<r { dst[bOffset + t * out + j] = Float16(b[j * r + t]).bitPattern } }
            case (.f32, .int8):
                let bytes = arena.assumingMemoryBound(to: Int8.self)
                let aScales = (arena + aOffset + padded(aCount(m))).assumingMemoryBound(to: Float.self)
                let btScales = (arena + bOffset + padded(bCount(m))).assumingMemoryBound(to: Float.self)
                let status = ek_q8_quantize_rows(self.a(m).baseAddress, Int64(r), Int64(inp), Int64(inp), Int64(Self.int8AStride(m)), bytes + aOffset, aScales)
                precondition(status == 0, "LoRAAdapter.converted: ek_q8_quantize_rows failed (\(status)) for \(m.keyA)")
                ek_lora_quantize_bt(self.b(m).baseAddress, Int32(r), Int64(out), bytes + bOffset, btScales)
            case (.f16, .f32):
                let dst = arena.assumingMemoryBound(to: Float.self)
                let a = a16(m), bt = bt16(m)
                for i in 0..<(r * inp) { dst[aOffset + i] = Float(Float16(bitPattern: a[i])) }
                for j in 0..<out { for t in 0..<r { dst[bOffset + j * r + t] = Float(Float16(bitPattern: bt[t * out + j])) } }
            case (.int8, .f32):
                let dst = arena.assumingMemoryBound(to: Float.self)
                let a = a8(m), bt = bt8(m), lda = Self.int8AStride(m)
                for t in 0..<r { for k in 0..<inp { dst[aOffset + t * inp + k] = Float(a.values[t * lda + k]) * a.scales[t] } }
                for j in 0..<out { for t in 0..<r { dst[bOffset + j * r + t] = Float(bt.values[Self.int8BtIndex(t, j, out: out)]) * bt.scales[t] } }
            default:
                preconditionFailure("LoRAAdapter.converted: \(precision.rawValue) → \(target.rawValue) goes through f32")
            }
            converted.append(LoRAModule(layer: m.layer, projection: m.projection, rank: m.rank, inFeatures: m.inFeatures, outFeatures: m.outFeatures,
                                        scale: m.scale, aOffset: aOffset, bOffset: bOffset, keyA: m.keyA, keyB: m.keyB))
        }
        return LoRAAdapter(modules: converted, arena: arena, elementCount: total, precision: target, config: config, label: label)
    }

    /// The module adapting `projection` of `layer`, or nil when that projection is not adapted.
    @inline(__always)
    public func module(layer: Int, projection: LoRAProjection) -> LoRAModule? {
        guard layer >= 0, layer < layerCount else { return nil }
        let i = table[layer * 7 + projection.ordinal]
        return i < 0 ? nil : modules[Int(i)]
    }

    /// `A` of `module`: `rank × inFeatures` f32, row-major. Only for a `.f32` adapter.
    public func a(_ module: LoRAModule) -> UnsafeBufferPointer<Float> {
        precondition(precision == .f32, "LoRAAdapter.a: \(label) is stored as \(precision.rawValue); use a16")
        return UnsafeBufferPointer(start: storage.assumingMemoryBound(to: Float.self) + module.aOffset, count: module.rank * module.inFeatures)
    }

    /// `B` of `module`: `outFeatures × rank` f32, row-major. Only for a `.f32` adapter.
    public func b(_ module: LoRAModule) -> UnsafeBufferPointer<Float> {
        precondition(precision == .f32, "LoRAAdapter.b: \(label) is stored as \(precision.rawValue); use bt16")
        return UnsafeBufferPointer(start: storage.assumingMemoryBound(to: Float.self) + module.bOffset, count: module.outFeatures * module.rank)
    }

    /// `A` of `module`: `rank × inFeatures` IEEE half bit patterns, row-major. Only for a `.f16` adapter.
    public func a16(_ module: LoRAModule) -> UnsafeBufferPointer<UInt16> {
        precondition(precision == .f16, "LoRAAdapter.a16: \(label) is stored as \(precision.rawValue); use a")
        return UnsafeBufferPointer(start: storage.assumingMemoryBound(to: UInt16.self) + module.aOffset, count: module.rank * module.inFeatures)
    }

    /// `Bᵀ` of `module`: `rank × outFeatures` IEEE half bit patterns, row-major. Only for a `.f16` adapter.
    public func bt16(_ module: LoRAModule) -> UnsafeBufferPointer<UInt16> {
        precondition(precision == .f16, "LoRAAdapter.bt16: \(label) is stored as \(precision.rawValue); use b")
        return UnsafeBufferPointer(start: storage.assumingMemoryBound(to: UInt16.self) + module.bOffset, count: module.outFeatures * module.rank)
    }

    /// `A` of `module`: `rank` rows of int8 values `int8AStride(module)` bytes apart (zero past
    /// `inFeatures`), and the f32 scale of each row (value = scale × int8). Only for a `.int8` adapter.
    public func a8(_ module: LoRAModule) -> (values: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>) {
        int8Matrix(at: module.aOffset, bytes: Self.int8ABytes(module), rank: module.rank, what: "a8")
    }

    /// `Bᵀ` of `module` (`rank × outFeatures`) as int8 in rank quads: element `(t, j)` at
    /// `int8BtIndex(t, j, out:)`, zero for ranks past `rank`; and the f32 scale of each rank row.
    /// Only for a `.int8` adapter.
    public func bt8(_ module: LoRAModule) -> (values: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>) {
        int8Matrix(at: module.bOffset, bytes: Self.int8BtBytes(module), rank: module.rank, what: "bt8")
    }

    /// Row stride of an int8 `A` (the kernels' `ek_q8_row_stride`).
    public static func int8AStride(_ m: LoRAModule) -> Int { Int(ek_q8_row_stride(Int64(m.inFeatures))) }
    /// Where element `(t, j)` of an int8 `Bᵀ` with `out` outputs sits.
    @inline(__always)
    public static func int8BtIndex(_ t: Int, _ j: Int, out: Int) -> Int { ((t / 4) * out + j) * 4 + t % 4 }
    static func int8ABytes(_ m: LoRAModule) -> Int { m.rank * int8AStride(m) }
    static func int8BtBytes(_ m: LoRAModule) -> Int { Int(ek_lora_i8_bt_bytes(Int32(m.rank), Int64(m.outFeatures))) }

    private func int8Matrix(at offset: Int, bytes: Int, rank: Int, what: String) -> (values: UnsafeBufferPointer<Int8>, scales: UnsafeBufferPointer<Float>) {
        precondition(precision == .int8, "LoRAAdapter.\(what): \(label) is stored as \(precision.rawValue)")
        let values = storage + offset, scales = storage + offset + (bytes + 63) / 64 * 64
        return (UnsafeBufferPointer(start: values.assumingMemoryBound(to: Int8.self), count: bytes),
                UnsafeBufferPointer(start: scales.assumingMemoryBound(to: Float.self), count: rank))
    }

    /// Checks every module against the loaded model's shapes: `layerCount` decoder layers, and for
    /// each projection its weight shape `(out, in)` (the same in every Llama layer). Throws
    /// `.shapeMismatch` naming the first offending key. Call it before serving the adapter.
    public func validate(layerCount modelLayers: Int, shapes: [LoRAProjection: (out: Int, in: Int)]) throws(AdapterError) {
        try validate(layerCount: modelLayers) { _, p in shapes[p] }
    }

    /// Like `validate(layerCount:shapes:)` with a per-layer shape lookup (nil: the model has no
    /// such projection).
    public func validate(layerCount modelLayers: Int, shape: (Int, LoRAProjection) -> (out: Int, in: Int)?) throws(AdapterError) {
        for m in modules {
            guard m.layer < modelLayers else {
                throw .shapeMismatch(key: m.keyA, expected: "a layer index below \(modelLayers)", actual: "layer \(m.layer)")
            }
            guard let s = shape(m.layer, m.projection) else {
                throw .shapeMismatch(key: m.keyA, expected: "no \(m.projection.rawValue) in layer \(m.layer)", actual: "an adapted \(m.projection.rawValue)")
            }
            if m.inFeatures != s.in {
                throw .shapeMismatch(key: m.keyA, expected: "lora_A [\(m.rank), \(s.in)]", actual: "[\(m.rank), \(m.inFeatures)]")
            }
            if m.outFeatures != s.out {
                throw .shapeMismatch(key: m.keyB, expected: "lora_B [\(s.out), \(m.rank)]", actual: "[\(m.outFeatures), \(m.rank)]")
            }
        }
    }
}
