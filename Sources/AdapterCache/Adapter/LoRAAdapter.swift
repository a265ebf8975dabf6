import Foundation

/// A decoded, validated LoRA adapter in the form the kernels consume (the cache's RAM tier): one
/// 64-byte-aligned f32 arena holding every module's `A` `[rank, in]` and `B` `[out, rank]`
/// row-major, plus a `(layer, projection)` table of `LoRAModule`s pointing into it.
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
    /// The arena: `floatCount` f32 values.
    public let storage: UnsafePointer<Float>
    public let floatCount: Int
    private let table: [Int32]  // layer * 7 + projection.ordinal → index in modules, or -1

    /// Bytes held in RAM (the arena; the table and module list are noise).
    public var byteCount: Int { floatCount * 4 }

    /// Maximum rank over the modules.
    public var maxRank: Int { modules.map(\.rank).max() ?? 0 }

    /// The projections adapted in at least one layer.
    public var projections: [LoRAProjection] { Array(Set(modules.map(\.projection))).sorted() }

    init(modules: [LoRAModule], storage: UnsafeMutablePointer<Float>, floatCount: Int, config: PEFTConfig, label: String) {
        let sorted = modules.sorted { ($0.layer, $0.projection.ordinal) < ($1.layer, $1.projection.ordinal) }
        self.modules = sorted
        self.storage = UnsafePointer(storage)
        self.floatCount = floatCount
        self.config = config
        self.label = label
        let layers = (sorted.map(\.layer).max() ?? -1) + 1
        layerCount = layers
        var t = [Int32](repeating: -1, count: layers * 7)
        for (i, m) in sorted.enumerated() { t[m.layer * 7 + m.projection.ordinal] = Int32(i) }
        table = t
    }

    deinit { UnsafeMutablePointer(mutating: storage).deallocate() }

    /// The module adapting `projection` of `layer`, or nil when that projection is not adapted.
    @inline(__always)
    public func module(layer: Int, projection: LoRAProjection) -> LoRAModule? {
        guard layer >= 0, layer < layerCount else { return nil }
        let i = table[layer * 7 + projection.ordinal]
        return i < 0 ? nil : modules[Int(i)]
    }

    /// `A` of `module`: `rank × inFeatures` f32, row-major.
    public func a(_ module: LoRAModule) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: storage + module.aOffset, count: module.rank * module.inFeatures)
    }

    /// `B` of `module`: `outFeatures × rank` f32, row-major.
    public func b(_ module: LoRAModule) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(start: storage + module.bOffset, count: module.outFeatures * module.rank)
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
