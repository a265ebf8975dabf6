import AdapterCache
import Kernels

/// A LoRA adapter checked against one model and laid out for the gathered kernels: for each layer
/// and projection, optionally `A [rank, in]`, `B [out, rank]` (row-major, PEFT layout) and its
/// scale (alpha / r, or alpha / sqrt(r) with rsLoRA). Immutable; shared by every sequence using it.
///
/// Weights are held in f32 (training, exact evaluation) or f16 (serving: `A` and `Bᵀ` as IEEE half,
/// converted in registers by the kernels, accumulated in f32), see `precision`.
public final class LoRABinding: @unchecked Sendable {
    /// One projection's low-rank pair.
    public struct Pair: Sendable {
        /// `<layer>.<module>` key the pair came from, e.g. `base_model.model.model.layers.3.self_attn.q_proj`.
        public var key: String
        public var layer: Int
        public var projection: LlamaProjection
        public var rank: Int
        public var scale: Float
        /// [rank, in] row-major.
        public var a: [Float]
        /// [out, rank] row-major.
        public var b: [Float]

        public init(key: String, layer: Int, projection: LlamaProjection, rank: Int, scale: Float, a: [Float], b: [Float]) {
            self.key = key
            self.layer = layer
            self.projection = projection
            self.rank = rank
            self.scale = scale
            self.a = a
            self.b = b
        }
    }

    public let name: String
    /// Slot of (layer, projection) at `layer * LlamaProjection.allCases.count + projection.index`, rank 0
    /// where the adapter does not touch that projection. Flat and unmanaged so the forward pass reads
    /// a sequence's slots through one pointer: the nested arrays it replaced cost five retain/release
    /// pairs per slot read, 1680 reads a step for 8 streams.
    let table: UnsafeMutableBufferPointer<ek_lora_slot>
    /// Bytes of weights the slots read (the storage `owners` holds, or the cache's arena it borrows).
    public let byteCount: Int
    /// Element type of the weights the slots point to.
    public let precision: LoRAPrecision
    /// Keeps the storage the slots point into alive.
    private let owners: [AnyObject]

    /// Wraps already-validated slots whose storage `owners` keeps alive.
    init(name: String, slots: [[ek_lora_slot?]], byteCount: Int, precision: LoRAPrecision, owners: [AnyObject]) {
        self.name = name
        let perLayer = LlamaProjection.allCases.count
        table = .allocate(capacity: max(1, slots.count * perLayer))
        table.initialize(repeating: ek_lora_slot())   // rank 0: no slot
        for (layer, row) in slots.enumerated() {
            for (p, slot) in row.enumerated() where p < perLayer { if let slot { table[layer * perLayer + p] = slot } }
        }
        self.byteCount = byteCount
        self.precision = precision
        self.owners = owners
    }

    deinit { table.deallocate() }

    /// Validates every pair against the model's shapes; an unknown layer or a shape that does not
    /// fit is an error naming the adapter key. `.f32` keeps the values exactly (training and its
    /// evaluation); `.f16` stores `A` and `Bᵀ` rounded to half, half the bytes per token; `.int8`
    /// stores them as int8 rows with a scale each, a quarter of the bytes.
    public convenience init(name: String, pairs: [Pair], hyperparameters hp: LlamaHyperparameters, precision: LoRAPrecision = .f32) throws(EngineError) {
        var slots = [[ek_lora_slot?]](repeating: [ek_lora_slot?](repeating: nil, count: LlamaProjection.allCases.count), count: hp.layerCount)
        var buffers: [AnyObject] = []
        var bytes = 0
        for pair in pairs {
            guard pair.layer >= 0, pair.layer < hp.layerCount else {
                throw .adapterMismatch(adapter: name, key: pair.key, reason: "names layer \(pair.layer) but the model has \(hp.layerCount) layers")
            }
            let (out, inp) = pair.projection.shape(hp)
            guard pair.rank >= 1, pair.rank <= 256 else {
                throw .adapterMismatch(adapter: name, key: pair.key, reason: "has rank \(pair.rank); ranks 1…256 are supported")
            }
            guard pair.a.count == pair.rank * inp else {
                throw .adapterMismatch(adapter: name, key: pair.key + ".lora_A.weight", reason: "has \(pair.a.count) values, expected [\(pair.rank), \(inp)] for \(pair.projection.moduleName)")
            }
            guard pair.b.count == out * pair.rank else {
                throw .adapterMismatch(adapter: name, key: pair.key + ".lora_B.weight", reason: "has \(pair.b.count) values, expected [\(out), \(pair.rank)] for \(pair.projection.moduleName)")
            }
            guard slots[pair.layer][pair.projection.index] == nil else {
                throw .adapterMismatch(adapter: name, key: pair.key, reason: "appears twice")
            }
            guard pair.scale.isFinite else { throw .adapterMismatch(adapter: name, key: pair.key, reason: "has a non-finite scale") }
            switch precision {
            case .f32:
                let a = FloatBuffer(pair.a), b = FloatBuffer(pair.b)
                buffers += [a, b]
                bytes += (pair.a.count + pair.b.count) * 4
                slots[pair.layer][pair.projection.index] = .f32(a: a.pointer, b: b.pointer, rank: pair.rank, scale: pair.scale)
            case .f16:
                let a = HalfBuffer(halving: pair.a), bt = HalfBuffer(transposingToHalf: pair.b, out: out, rank: pair.rank)
                buffers += [a, bt]
                bytes += (pair.a.count + pair.b.count) * 2
                slots[pair.layer][pair.projection.index] = .f16(a: a.pointer, bt: bt.pointer, rank: pair.rank, scale: pair.scale)
            case .int8:
                let a = Int8RowsBuffer(loraA: pair.a, rank: pair.rank, in: inp), bt = Int8RowsBuffer(loraB: pair.b, out: out, rank: pair.rank)
                buffers += [a, bt]
                bytes += a.byteCount + bt.byteCount
                slots[pair.layer][pair.projection.index] = .int8(a: a.values, aScales: a.scales, bt: bt.values, btScales: bt.scales,
                                                                 rank: pair.rank, inFeatures: inp, scale: pair.scale)
            }
        }
        self.init(name: name, slots: slots, byteCount: bytes, precision: precision, owners: buffers)
    }
}

/// The adapters one sequence runs with: each binding scaled by its weight (on top of its own scale).
public struct AdapterMix: Sendable {
    public var entries: [(binding: LoRABinding, weight: Float)]

    /// Identity of the set for the prefix cache: equal keys mean equal LoRA deltas. Defaults to the
    /// binding names (NAME@VERSION) and exact weights; the daemon adds each adapter's content digest.
    public var cacheKey: String

    public init(_ entries: [(binding: LoRABinding, weight: Float)] = [], cacheKey: String? = nil) {
        self.entries = entries
        self.cacheKey = cacheKey ?? entries.map { "\($0.binding.name)*\(String($0.weight.bitPattern, radix: 16))" }.joined(separator: "+")
    }

    public static let none = AdapterMix()
    public var isEmpty: Bool { entries.isEmpty }
}

extension LlamaModel.ActivationPrecision {
    /// How adapters bound for inference in this mode are held. The strict mode keeps f16 (it stays
    /// inside the strict tolerances on the logits fixtures, LogitsFixtureTests, adapter a); the fastest
    /// mode keeps int8 rows, half the f16 bytes, which LogitsFixtureTests holds to the fastest mode's
    /// tolerances. f32 storage is only for training and its evaluation (`LoRABinding(name:pairs:...)`).
    public var adapterPrecision: LoRAPrecision {
        switch self {
        case .f32: .f16
        case .int8: .int8
        }
    }
}
