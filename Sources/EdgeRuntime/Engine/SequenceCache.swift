/// One sequence's KV cache: f32 keys and values for every layer, positions 0 ..< capacity.
///
/// Layout (one allocation): layer-major, then keys before values, then position, then kv head:
/// `[layer][k|v][position][kvHeads × headDim]`, so each layer's keys are the contiguous
/// `[position, kvDim]` rows `ek_attention` reads. Owned by exactly one sequence; the engine thread
/// is its only writer. Freed in deinit.
public final class SequenceCache: @unchecked Sendable {
    public let capacity: Int
    public let layerCount: Int
    public let kvDim: Int
    /// Positions already holding keys/values (the next token's position).
    public internal(set) var length: Int = 0
    private let storage: FloatBuffer

    public init(hyperparameters hp: LlamaHyperparameters, capacity: Int) {
        self.capacity = max(1, min(capacity, hp.contextLength))
        layerCount = hp.layerCount
        kvDim = hp.kvDim
        storage = FloatBuffer(count: layerCount * 2 * self.capacity * kvDim, zeroed: false)
    }

    public var byteCount: Int { storage.count * MemoryLayout<Float>.size }

    public static func byteCount(hyperparameters hp: LlamaHyperparameters, capacity: Int) -> Int {
        hp.layerCount * 2 * max(1, min(capacity, hp.contextLength)) * hp.kvDim * MemoryLayout<Float>.size
    }

    @inline(__always) func keys(layer: Int) -> UnsafeMutablePointer<Float> {
        storage.pointer + layer * 2 * capacity * kvDim
    }

    @inline(__always) func values(layer: Int) -> UnsafeMutablePointer<Float> {
        storage.pointer + (layer * 2 + 1) * capacity * kvDim
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
