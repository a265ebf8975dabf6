/// A 64-byte-aligned heap buffer with a stable address, released in deinit. Decompressed
/// artifacts live in one of these so tensor views can point into them without copying.
public final class OwnedBytes: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public private(set) var count: Int
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = max(capacity, 1)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 64)
        count = 0
    }

    /// Sets how many leading bytes are valid (≤ capacity).
    func setCount(_ n: Int) {
        precondition(n <= capacity)
        count = n
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }

    deinit { pointer.deallocate() }
}
