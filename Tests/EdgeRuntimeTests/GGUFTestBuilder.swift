import Foundation

/// Builds GGUF files byte by byte for tests (independently of the reader), including broken ones.
struct GGUFTestBuilder {
    var magic: [UInt8] = Array("GGUF".utf8)
    var version: UInt32 = 3
    var alignment = 32
    private(set) var kv: [(key: String, type: UInt32, payload: [UInt8])] = []
    var tensors: [(name: String, dims: [UInt64], type: UInt32, data: [UInt8])] = []
    /// Overrides a tensor's recorded offset (for out-of-range / overlap / misalignment tests).
    var offsetOverride: [String: UInt64] = [:]

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
    static func rawStr(_ bytes: [UInt8]) -> [UInt8] { le(UInt64(bytes.count)) + bytes }

    mutating func add(_ key: String, type: UInt32, _ payload: [UInt8]) { kv.append((key, type, payload)) }
    mutating func string(_ key: String, _ v: String) { add(key, type: 8, Self.str(v)) }
    mutating func u32(_ key: String, _ v: UInt32) { add(key, type: 4, Self.le(v)) }
    mutating func f32(_ key: String, _ v: Float) { add(key, type: 6, Self.le(v.bitPattern)) }
    mutating func bool(_ key: String, _ v: Bool) { add(key, type: 7, [v ? 1 : 0]) }
    mutating func strings(_ key: String, _ v: [String]) { add(key, type: 9, Self.le(UInt32(8)) + Self.le(UInt64(v.count)) + v.flatMap(Self.str)) }
    mutating func int32s(_ key: String, _ v: [Int32]) { add(key, type: 9, Self.le(UInt32(5)) + Self.le(UInt64(v.count)) + v.flatMap { Self.le($0) }) }
    mutating func floats(_ key: String, _ v: [Float]) { add(key, type: 9, Self.le(UInt32(6)) + Self.le(UInt64(v.count)) + v.flatMap { Self.le($0.bitPattern) }) }

    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32, data: [UInt8]) { tensors.append((name, dims, type, data)) }

    func build() -> Data {
        var out = magic + Self.le(version) + Self.le(UInt64(tensors.count)) + Self.le(UInt64(kv.count))
        for e in kv { out += Self.str(e.key) + Self.le(e.type) + e.payload }
        var offset: UInt64 = 0
        var offsets: [UInt64] = []
        for t in tensors {
            offsets.append(offset)
            out += Self.str(t.name) + Self.le(UInt32(t.dims.count)) + t.dims.flatMap { Self.le($0) } + Self.le(t.type)
            out += Self.le(offsetOverride[t.name] ?? offset)
            offset += UInt64(t.data.count)
            offset = (offset + UInt64(alignment) - 1) / UInt64(alignment) * UInt64(alignment)
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (t, o) in zip(tensors, offsets) {
            precondition(out.count - dataStart == Int(o))
            out += t.data
            while out.count % alignment != 0 { out.append(0) }
        }
        return Data(out)
    }

    func write(to url: URL) throws { try build().write(to: url) }
}
