import Kernels

/// One sequence's KV cache: keys and values (f32, or f16 to halve the bytes) for every layer,
/// positions 0 ..< capacity.
///
/// Layout (one address range): layer-major, then keys before values, then position, then kv head:
/// `[layer][k|v][position < reservedCapacity][kvHeads × headDim]`, so each layer's keys are the
/// contiguous `[position, kvDim]` rows `ek_attention` reads. Owned by exactly one sequence; the
/// engine thread is its only writer. Freed in deinit.
///
/// The capacity can grow (`grow(to:)`): the scheduler starts a sequence at its prompt plus a few
/// hundred positions and grows it as it decodes, so the bytes it is charged (`byteCount`, the
/// capacity's) follow what it holds rather than its worst case. The address range is reserved for
/// `reservedCapacity` positions up front and committed by the kernel page by page as positions
/// are written (`KVStorage`), so growing within it costs nothing and the resident memory stays
/// within `byteCount`; past it (or when lazy reservation is refused) growing copies the positions
/// held into a new range. A cache made with a `KVStoragePool` starts on a range a finished cache
/// gave back (its written pages still resident) when one is large enough, and gives its own back
/// when it is freed.
public final class SequenceCache: @unchecked Sendable {
    /// How keys and values are stored. Attention reads either (`ek_attention`'s kv dtype); new
    /// keys and values are computed in f32 and rounded to nearest-even when stored as f16.
    public enum Precision: String, Sendable, CaseIterable {
        case f32
        case f16

        public var bytes: Int { self == .f32 ? 4 : 2 }

        /// "f32", "f16", or "auto": f16 where the kernels' attention reads f16 blocks converted in
        /// registers (`ek_kv_f16_native`, AVX-512: half the bytes, no slower), f32 where it converts row
        /// by row (AVX2, NEON: slower with f16). Nil for anything else.
        public static func named(_ name: String) -> Precision? {
            name == "auto" ? (ek_kv_f16_native() != 0 ? .f16 : .f32) : Precision(rawValue: name)
        }
        var kernelDType: Int32 { self == .f32 ? Int32(EK_DTYPE_F32) : Int32(EK_DTYPE_F16) }
    }

    public let precision: Precision
    /// Positions this cache may hold now; what it is charged for.
    public private(set) var capacity: Int
    /// Positions laid out in the address range (the row stride of each layer's keys and values).
    public private(set) var reservedCapacity: Int
    /// The most positions this cache may ever hold (the model's context length).
    public let maxCapacity: Int
    public let layerCount: Int
    public let kvDim: Int
    /// Positions already holding keys/values (the next token's position).
    public internal(set) var length: Int = 0 {
        didSet { written = max(written, length) }
    }
    /// The most positions ever written in this range (its resident pages), for the pool.
    private var written = 0
    private var storage: KVStorage
    private let pool: KVStoragePool?

    /// A cache for `capacity` positions whose address range is laid out for at least `reserve` (at
    /// least `capacity`; both clamped to the context length), so it can grow to `reserve` in place.
    /// With a pool the range may be a larger one a freed cache gave back.
    public convenience init(hyperparameters hp: LlamaHyperparameters, capacity: Int, reserve: Int? = nil, precision: Precision = .f32) {
        self.init(hyperparameters: hp, capacity: capacity, reserve: reserve, precision: precision, pool: nil)
    }

    init(hyperparameters hp: LlamaHyperparameters, capacity: Int, reserve: Int?, precision: Precision, pool: KVStoragePool?) {
        self.precision = precision
        self.pool = pool
        maxCapacity = max(1, hp.contextLength)
        self.capacity = max(1, min(capacity, maxCapacity))
        reservedCapacity = max(self.capacity, min(reserve ?? self.capacity, maxCapacity))
        layerCount = hp.layerCount
        kvDim = hp.kvDim
        let rowBytes = kvDim * precision.bytes
        if let reused = pool?.take(bytes: layerCount * 2 * reservedCapacity * rowBytes, regions: layerCount * 2,
                                   rowBytes: rowBytes, keepRows: self.capacity) {
            // Laid out over the whole range, as its last user was: the same pages are written again.
            storage = reused
            reservedCapacity = reused.byteCount / (layerCount * 2 * rowBytes)
            return
        }
        storage = KVStorage(byteCount: layerCount * 2 * reservedCapacity * kvDim * precision.bytes, lazy: true)
        // The mapping was refused: an ordinary allocation is committed whole, so lay it out for
        // the capacity only and grow by copying.
        if !storage.isLazy && reservedCapacity > self.capacity {
            reservedCapacity = self.capacity
            storage = KVStorage(byteCount: layerCount * 2 * reservedCapacity * kvDim * precision.bytes, lazy: false)
        }
    }

    deinit {
        pool?.give(storage, regions: layerCount * 2, regionBytes: reservedCapacity * kvDim * precision.bytes,
                   writtenBytes: written * kvDim * precision.bytes)
    }

    /// Bytes charged for this cache: its capacity's (resident memory stays within it).
    public var byteCount: Int { capacity * layerCount * 2 * kvDim * precision.bytes }

    /// Bytes of one position (keys and values of every layer).
    public static func bytesPerPosition(hyperparameters hp: LlamaHyperparameters, precision: Precision = .f32) -> Int {
        hp.layerCount * 2 * hp.kvDim * precision.bytes
    }

    public static func byteCount(hyperparameters hp: LlamaHyperparameters, capacity: Int, precision: Precision = .f32) -> Int {
        max(1, min(capacity, hp.contextLength)) * bytesPerPosition(hyperparameters: hp, precision: precision)
    }

    /// Start of a layer's keys / values: `[reservedCapacity, kvDim]` elements of `precision`.
    @inline(__always) func keys(layer: Int) -> UnsafeMutableRawPointer {
        storage.base + layer * 2 * reservedCapacity * kvDim * precision.bytes
    }

    @inline(__always) func values(layer: Int) -> UnsafeMutableRawPointer {
        storage.base + (layer * 2 + 1) * reservedCapacity * kvDim * precision.bytes
    }

    /// Stores `count` rows of f32 keys or values (`kvDim` each, contiguous) at `position` of the
    /// region starting at `destination` (from `keys`/`values`).
    @inline(__always) func store(_ rows: UnsafePointer<Float>, count: Int, at position: Int, into destination: UnsafeMutableRawPointer) {
        let n = count * kvDim
        let target = destination + position * kvDim * precision.bytes
        switch precision {
        case .f32: target.assumingMemoryBound(to: Float.self).update(from: rows, count: n)
        case .f16: ek_f32_to_f16(rows, target.assumingMemoryBound(to: UInt16.self), Int64(n))
        }
    }

    /// Whether growing to `newCapacity` stays within the reserved range (no copy).
    public func growsInPlace(to newCapacity: Int) -> Bool {
        min(newCapacity, maxCapacity) <= reservedCapacity
    }

    /// Raises the capacity to `newCapacity` (clamped to `maxCapacity`), keeping the positions held.
    /// No-op when the cache is already that large. Within the reserved range only the capacity
    /// changes; past it this costs a new range and a copy of `length` positions (pointers from
    /// `keys`/`values` taken before are then invalid).
    public func grow(to newCapacity: Int) {
        let target = min(newCapacity, maxCapacity)
        guard target > capacity else { return }
        guard target > reservedCapacity else {
            capacity = target
            return
        }
        let old = storage
        let oldStride = reservedCapacity * kvDim * precision.bytes
        storage = KVStorage(byteCount: layerCount * 2 * target * kvDim * precision.bytes, lazy: true)
        reservedCapacity = target
        capacity = target
        let n = length * kvDim * precision.bytes
        for layer in 0..<layerCount {
            keys(layer: layer).copyMemory(from: old.base + layer * 2 * oldStride, byteCount: n)
            values(layer: layer).copyMemory(from: old.base + (layer * 2 + 1) * oldStride, byteCount: n)
        }
        pool?.give(old, regions: layerCount * 2, regionBytes: oldStride, writtenBytes: written * kvDim * precision.bytes)
        written = length
    }

    /// Forgets positions from `position` on (e.g. to reuse a cached prefix).
    public func truncate(to position: Int) {
        length = max(0, min(length, position))
    }

    /// Copies the first `count` positions of another cache of the same model and precision
    /// (prefix reuse); returns the positions copied (0, copying nothing, for a cache of another
    /// precision or shape).
    @discardableResult
    public func copyPrefix(from other: SequenceCache, count: Int) -> Int {
        guard other.precision == precision, other.kvDim == kvDim, other.layerCount == layerCount else { return 0 }
        let n = min(count, other.length, capacity)
        let bytes = n * kvDim * precision.bytes
        for layer in 0..<layerCount {
            keys(layer: layer).copyMemory(from: other.keys(layer: layer), byteCount: bytes)
            values(layer: layer).copyMemory(from: other.values(layer: layer), byteCount: bytes)
        }
        length = n
        return n
    }
}
