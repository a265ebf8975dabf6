/// A fixed-size, 64-byte-aligned f32 buffer with a stable address for C kernels. Owns its memory
/// and frees it in deinit; not synchronised (the owner decides who writes).
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    /// Set when the values live in someone else's memory (a read-only file mapping): kept alive,
    /// never freed or written here.
    private let owner: AnyObject?

    public init(count: Int, zeroed: Bool = true) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        owner = nil
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    /// Views `count` floats at `pointer` (4-byte aligned) owned by `owner`, without copying: model
    /// weights stored as f32 stay in the shared mapping (no start-up copy, one copy in RAM for every
    /// process mapping the file). The memory may be read-only: only for values nobody writes.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.count = count
        self.pointer = UnsafeMutablePointer(mutating: pointer)
        self.owner = owner
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count, zeroed: false)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }

    deinit { if owner == nil { UnsafeMutableRawPointer(pointer).deallocate() } }
}
