import Foundation

/// One tensor's entry in a safetensors header. `byteRange` is relative to the start of the data
/// section (the format's `data_offsets`).
public struct SafetensorsTensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let byteRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// A validated, read-only safetensors file whose tensor bytes are views into a mapping (or into an
/// owned buffer, for files decompressed in memory). Nothing is copied until a caller asks for
/// converted values.
///
/// Validation happens once, in init: header length and JSON, every dtype known, `dtype × shape` equal
/// to the byte length, offsets inside the data section and non-overlapping. After init the object is
/// immutable and safe to share across threads.
public final class SafetensorsFile: @unchecked Sendable {
    /// The header may not exceed this (the format's reference implementation uses the same cap).
    public static let maxHeaderBytes = 100 << 20

    public let path: String
    public let tensors: [String: SafetensorsTensorInfo]
    public let metadata: [String: String]
    /// Offset of the data section from the start of the file.
    public let dataOffset: Int
    public let fileBytes: UnsafeRawBufferPointer
    private let owner: AnyObject

    /// Maps `path` read-only and validates it.
    public convenience init(path: String) throws(SafetensorsError) {
        let mapped = try MappedFile(path: path)
        try self.init(owner: mapped, bytes: mapped.bytes, path: path)
    }

    /// Validates a safetensors image held in memory (e.g. just decompressed). `label` names it in errors.
    public convenience init(data: Data, label: String) throws(SafetensorsError) {
        let buffer = OwnedBuffer(data)
        try self.init(owner: buffer, bytes: buffer.bytes, path: label)
    }

    /// Validates an image that `owner` keeps alive at `bytes`, without copying it (e.g. a member of
    /// a decompressed archive). `label` names it in errors.
    public convenience init(bytes: UnsafeRawBufferPointer, owner: AnyObject, label: String) throws(SafetensorsError) {
        try self.init(owner: owner, bytes: bytes, path: label)
    }

    private init(owner: AnyObject, bytes: UnsafeRawBufferPointer, path: String) throws(SafetensorsError) {
        self.owner = owner
        self.fileBytes = bytes
        self.path = path
        guard bytes.count >= 8 else { throw .truncated(path: path, reason: "\(bytes.count) bytes, shorter than the 8-byte header length") }
        let headerLength = bytes.loadUnaligned(as: UInt64.self).littleEndian
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw .badHeader(path: path, reason: "header length \(headerLength) exceeds \(Self.maxHeaderBytes) bytes")
        }
        guard 8 + Int(headerLength) <= bytes.count else {
            throw .truncated(path: path, reason: "header of \(headerLength) bytes runs past the end of the \(bytes.count)-byte file")
        }
        dataOffset = 8 + Int(headerLength)
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<dataOffset])
        let parsed = try Self.parseHeader(headerBytes, dataLength: bytes.count - dataOffset, path: path)
        tensors = parsed.tensors
        metadata = parsed.metadata
    }

    /// Tensor names in file order (by data offset).
    public var namesInFileOrder: [String] {
        tensors.values.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }.map(\.name)
    }

    public func info(_ name: String) throws(SafetensorsError) -> SafetensorsTensorInfo {
        guard let info = tensors[name] else { throw .missingTensor(path: path, tensor: name) }
        return info
    }

    /// The raw bytes of a tensor, a view into the file (valid as long as this object lives).
    public func bytes(of name: String) throws(SafetensorsError) -> UnsafeRawBufferPointer {
        let info = try info(name)
        return UnsafeRawBufferPointer(rebasing: fileBytes[(dataOffset + info.byteRange.lowerBound)..<(dataOffset + info.byteRange.upperBound)])
    }

    /// The tensor converted to f32 (F32, F16, BF16 and F64 are accepted).
    public func floats(_ name: String) throws(SafetensorsError) -> [Float] {
        let info = try info(name)
        let raw = try bytes(of: name)
        guard let values = FloatConversion.toFloat32(raw, dtype: info.dtype) else {
            throw .badTensor(path: path, tensor: name, reason: "dtype \(info.dtype.rawValue) is not a floating-point type")
        }
        return values
    }

    // MARK: - Header parsing

    private static func parseHeader(_ header: UnsafeRawBufferPointer, dataLength: Int, path: String) throws(SafetensorsError) -> (tensors: [String: SafetensorsTensorInfo], metadata: [String: String]) {
        guard String(validating: header, as: UTF8.self) != nil else {
            throw .badHeader(path: path, reason: "header is not valid UTF-8")
        }
        let raw: RawHeader
        do {
            raw = try JSONDecoder().decode(RawHeader.self, from: Data(header))
        } catch let error as RawHeader.EntryError {
            throw .badTensor(path: path, tensor: error.tensor, reason: error.reason)
        } catch {
            throw .badHeader(path: path, reason: "header is not a JSON object of tensor entries (\(Self.describe(error)))")
        }

        var tensors: [String: SafetensorsTensorInfo] = [:]
        tensors.reserveCapacity(raw.entries.count)
        for (name, entry) in raw.entries {
            guard let dtype = SafetensorsDType(rawValue: entry.dtype) else {
                throw .badTensor(path: path, tensor: name, reason: "unknown dtype '\(entry.dtype)'")
            }
            let shape = entry.shape, offsets = entry.data_offsets
            guard shape.allSatisfy({ $0 >= 0 }) else { throw .badTensor(path: path, tensor: name, reason: "shape \(shape) has a negative dimension") }
            guard offsets.count == 2, offsets[0] >= 0 else { throw .badTensor(path: path, tensor: name, reason: "data_offsets must be two non-negative integers") }
            guard offsets[0] <= offsets[1] else { throw .badTensor(path: path, tensor: name, reason: "data_offsets begin \(offsets[0]) is after end \(offsets[1])") }
            guard offsets[1] <= dataLength else {
                throw .truncated(path: path, reason: "tensor '\(name)' ends at data offset \(offsets[1]) but the data section has \(dataLength) bytes")
            }
            var count = 1
            for d in shape {
                let (m, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow else { throw .badTensor(path: path, tensor: name, reason: "shape \(shape) overflows") }
                count = m
            }
            let (expected, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, expected == offsets[1] - offsets[0] else {
                throw .badTensor(path: path, tensor: name, reason: "\(dtype.rawValue) × \(shape) needs \(expected) bytes but data_offsets span \(offsets[1] - offsets[0])")
            }
            tensors[name] = SafetensorsTensorInfo(name: name, dtype: dtype, shape: shape, byteRange: offsets[0]..<offsets[1])
        }
        let ordered = tensors.values.filter { !$0.byteRange.isEmpty }.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        for (a, b) in zip(ordered, ordered.dropFirst()) where a.byteRange.upperBound > b.byteRange.lowerBound {
            throw .badTensor(path: path, tensor: b.name, reason: "its bytes overlap tensor '\(a.name)'")
        }
        return (tensors, raw.metadata)
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.debugDescription
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c): return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        case DecodingError.keyNotFound(let k, let c): return "\((c.codingPath + [k]).map(\.stringValue).joined(separator: ".")) is missing"
        default: return "\(error)"
        }
    }
}

/// The header as JSON: tensor entries keyed by name, plus the optional string map `__metadata__`.
private struct RawHeader: Decodable {
    struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let data_offsets: [Int]
    }
    struct EntryError: Error { let tensor: String; let reason: String }
    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: Key.self)
        for key in c.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try c.decode([String: String].self, forKey: key)
                continue
            }
            do {
                entries[key.stringValue] = try c.decode(Entry.self, forKey: key)
            } catch {
                throw EntryError(tensor: key.stringValue, reason: "entry must have a string dtype, an integer shape list and two integer data_offsets")
            }
        }
    }
}

/// Keeps an in-memory safetensors image alive at a stable address.
private final class OwnedBuffer {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    init(_ data: Data) {
        count = data.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
        data.withUnsafeBytes { if let b = $0.baseAddress { pointer.copyMemory(from: b, byteCount: count) } }
    }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }
    deinit { pointer.deallocate() }
}
