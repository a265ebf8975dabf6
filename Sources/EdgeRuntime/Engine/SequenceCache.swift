/// One sequence's KV cache: f32 keys and values for every layer, positions 0 ..< capacity.
///
/// Layout (one allocation): layer-major, then keys before values, then position, then kv head:
/// `[layer][k|v][position][kvHeads × headDim]`, so each layer's keys are the contiguous
/// `[position, kvDim]` rows `ek_attention` reads. Owned by exactly one sequence; the engine thread
/// is its only writer. Freed in deinit.
///
/// The capacity can grow (`grow(to:)`): the scheduler starts a sequence at its prompt plus a few
/// hundred positions and grows it as it decodes, so memory follows what a sequence holds rather
/// than its worst case. Growing copies the positions held into a new allocation (the attention
/// kernel wants each layer's keys contiguous), so callers grow in steps, not position by position.
public final class SequenceCache: @unchecked Sendable {
    public private(set) var capacity: Int
    /// The most positions this cache may ever hold (the model's context length).
    public let maxCapacity: Int
    public let layerCount: Int
    public let kvDim: Int
    /// Positions already holding keys/values (the next token's position).
    public internal(set) var length: Int = 0
    private var storage: FloatBuffer

    public init(hyperparameters hp: LlamaHyperparameters, capacity: Int) {
        maxCapacity = max(1, hp.contextLength)
        self.capacity = max(1, min(capacity, maxCapacity))
        layerCount = hp.layerCount
        kvDim = hp.kvDim
        storage = FloatBuffer(count: layerCount * 2 * self.capacity * kvDim, zeroed: false)
    }

    public var byteCount: Int { storage.count * MemoryLayout<Float>.size }

    /// Bytes of one position (keys and values of every layer).
    public static func bytesPerPosition(hyperparameters hp: LlamaHyperparameters) -> Int {
        hp.layerCount * 2 * hp.kvDim * MemoryLayout<Float>.size
    }

    public static func byteCount(hyperparameters hp: LlamaHyperparameters, capacity: Int) -> Int {
        max(1, min(capacity, hp.contextLength)) * bytesPerPosition(hyperparameters: hp)
    }

    @inline(__always) func keys(layer: Int) -> UnsafeMutablePointer<Float> {
        storage.pointer + layer * 2 * capacity * kvDim
    }

    @inline(__always) func values(layer: Int) -> UnsafeMutablePointer<Float> {
        storage.pointer + (layer * 2 + 1) * capacity * kvDim
    }

    /// Raises the capacity to `newCapacity` (clamped to `maxCapacity`), keeping the positions held.
    /// No-op when the cache is already that large. Costs one allocation and a copy of `length`
    /// positions; pointers from `keys`/`values` taken before are invalid afterwards.
    public func grow(to newCapacity: Int) {
        let target = min(newCapacity, maxCapacity)
        guard target > capacity else { return }
        let old = storage
        let oldCapacity = capacity
        storage = FloatBuffer(count: layerCount * 2 * target * kvDim, zeroed: false)
        capacity = target
        let n = length * kvDim
        for layer in 0..<layerCount {
            keys(layer: layer).update(from: old.pointer + layer * 2 * oldCapacity * kvDim, count: n)
            values(layer: layer).update(from: old.pointer + (layer * 2 + 1) * oldCapacity * kvDim, count: n)
        }
    }

    /// Forgets positions from `position` on (e.g. to reuse a cached prefix).
    public func truncate(to position: Int) {
        length = max(0, min(length, position))
    }

    /// Copies the first `count` positions of another cache of the same model (prefix reuse).
    public func copyPrefix(from other: SequenceCache, count: Int) {
        let n = min(count, other.length, capacity)
        for layer in 0..<layerCount {
            keys(layer: layer).update(from: other.keys(layer: layer), count: n * kvDim)
            values(layer: layer).update(from: other.values(layer: layer), count: n * kvDim)
        }
        length = n
    }
}
