import Foundation

/// Builds a safetensors file: tensors are written in the order they were added, the header lists
/// `__metadata__` first and then the tensors in that same order, padded with spaces to 8 bytes as the
/// reference implementation does. Tensor bytes are produced lazily, one tensor at a time, so a large
/// model is never held in memory twice.
public struct SafetensorsWriter {
    public typealias Producer = (UnsafeMutableRawBufferPointer) throws -> Void

    private struct Entry {
        let name: String
        let dtype: SafetensorsDType
        let shape: [Int]
        let byteCount: Int
        let produce: Producer
    }

    private var entries: [Entry] = []
    private var names: Set<String> = []
    public var metadata: [String: String]

    public init(metadata: [String: String] = ["format": "pt"]) {
        self.metadata = metadata
    }

    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], bytes: Data) {
        add(name, dtype: dtype, shape: shape, byteCount: bytes.count) { out in
            bytes.withUnsafeBytes { if let b = $0.baseAddress, !$0.isEmpty { out.baseAddress!.copyMemory(from: b, byteCount: $0.count) } }
        }
    }

    public mutating func add(_ name: String, shape: [Int], floats: [Float]) {
        add(name, dtype: .f32, shape: shape, byteCount: floats.count * 4) { out in
            floats.withUnsafeBytes { if let b = $0.baseAddress, !$0.isEmpty { out.baseAddress!.copyMemory(from: b, byteCount: $0.count) } }
        }
    }

    /// Adds a tensor whose `byteCount` bytes `produce` fills when the file is written.
    public mutating func add(_ name: String, dtype: SafetensorsDType, shape: [Int], byteCount: Int, produce: @escaping Producer) {
        precondition(shape.reduce(1, *) * dtype.byteSize == byteCount, "tensor \(name): \(dtype) × \(shape) is not \(byteCount) bytes")
        precondition(names.insert(name).inserted, "tensor \(name) added twice")
        entries.append(Entry(name: name, dtype: dtype, shape: shape, byteCount: byteCount, produce: produce))
    }

    public var tensorCount: Int { entries.count }

    /// The header bytes, including the 8-byte length prefix and the padding.
    func header() -> [UInt8] {
        var json = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let m = metadata.sorted { $0.key < $1.key }.map { "\(Self.quote($0.key)):\(Self.quote($0.value))" }.joined(separator: ",")
            parts.append("\"__metadata__\":{\(m)}")
        }
        var offset = 0
        for e in entries {
            let shape = e.shape.map(String.init).joined(separator: ",")
            parts.append("\(Self.quote(e.name)):{\"dtype\":\"\(e.dtype.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.byteCount)]}")
            offset += e.byteCount
        }
        json += parts.joined(separator: ",") + "}"
        var body = Array(json.utf8)
        while (8 + body.count) % 8 != 0 { body.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(body.count).littleEndian) { Array($0) }
        out += body
        return out
    }

    /// Writes the file at `path` (created or truncated) and fsyncs it. Callers that need atomicity
    /// write to a temporary name and rename. `progress` is called after each tensor with (done, total).
    public func write(to path: String, progress: ((Int, Int) -> Void)? = nil) throws(SafetensorsError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .write(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let head = header()
        let headCopy = UnsafeMutableRawBufferPointer.allocate(byteCount: head.count, alignment: 8)
        defer { headCopy.deallocate() }
        headCopy.copyBytes(from: head)
        try Self.writeAll(fd, UnsafeRawBufferPointer(headCopy), path: path)
        let largest = entries.map(\.byteCount).max() ?? 0
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: max(largest, 1), alignment: 64)
        defer { scratch.deallocate() }
        for (i, e) in entries.enumerated() {
            let view = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<e.byteCount])
            do { try e.produce(view) } catch {
                throw .write(path: path, reason: "producing tensor '\(e.name)' failed: \(error)")
            }
            try Self.writeAll(fd, UnsafeRawBufferPointer(view), path: path)
            progress?(i + 1, entries.count)
        }
        guard fsync(fd) == 0 else { throw .write(path: path, reason: "fsync: \(String(cString: strerror(errno)))") }
    }

    /// The whole file in memory (for small files such as adapters).
    public func serialized() throws(SafetensorsError) -> Data {
        var data = Data(header())
        for e in entries {
            var chunk = Data(count: e.byteCount)
            do {
                try chunk.withUnsafeMutableBytes { try e.produce($0) }
            } catch {
                throw .write(path: "<memory>", reason: "producing tensor '\(e.name)' failed: \(error)")
            }
            data.append(chunk)
        }
        return data
    }

    private static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws(SafetensorsError) {
        var done = 0
        while done < buffer.count {
            let n = Foundation.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let reason = errno == ENOSPC ? "the disk is full" : String(cString: strerror(errno))
                throw .write(path: path, reason: reason)
            }
            done += n
        }
    }

    static func quote(_ s: String) -> String { OrderedJSON.quoted(s) }
}
