import AdapterCache
import Foundation

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension — `in_features` of a weight.
    public let dims: [Int]
    public let type: GGUFTensorType
    /// Offset of the tensor's bytes from the start of the data section.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { dims.reduce(1, *) }
    /// Row-major shape as PyTorch and safetensors spell it (ggml's dims reversed): `[out, in]`.
    public var shape: [Int] { dims.reversed() }
}

/// A validated, read-only GGUF file (version 2 or 3, little-endian), mapped once.
///
/// Validation happens in init: magic and version, every count and string length against the bytes
/// that remain, strings valid UTF-8, value and tensor types known, `general.alignment` a power of two,
/// tensor dims and sizes consistent with their type's block geometry, tensor data aligned, inside the
/// file and non-overlapping. After init the object is immutable and safe to share across threads.
public final class GGUFFile: @unchecked Sendable {
    public static let magic: UInt32 = 0x4655_4747 // "GGUF" read little-endian
    static let maxDims = 4
    static let maxArrayNesting = 4

    public let path: String
    public let version: UInt32
    /// Metadata keys in file order, and their values.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    /// Tensors in file (header) order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Offset of the data section from the start of the file.
    public let dataOffset: Int
    private let tensorIndex: [String: Int]
    private let file: MappedFile

    public init(path: String) throws(ModelError) {
        self.path = path
        do { file = try MappedFile(path: path) } catch { throw .io(path: path, reason: Self.reason(error)) }
        var r = Reader(bytes: file.bytes, path: path)
        let magic = try r.u32("magic")
        guard magic == Self.magic else {
            throw .badGGUF(path: path, reason: "the file does not start with the GGUF magic (found 0x\(String(magic, radix: 16)))")
        }
        let version = try r.u32("version")
        if version.byteSwapped == 2 || version.byteSwapped == 3 {
            throw .badGGUF(path: path, reason: "big-endian GGUF files are not supported; convert the model on a little-endian machine")
        }
        guard version == 2 || version == 3 else {
            throw .badGGUF(path: path, reason: "GGUF version \(version) is not supported (only 2 and 3); re-convert the model with a current llama.cpp")
        }
        self.version = version
        let tensorCount = try r.count("tensor count", minimumItemBytes: 8 + 4 + 8 + 4 + 8)
        let kvCount = try r.count("metadata count", minimumItemBytes: 8 + 4 + 1)

        var keys: [String] = []
        var metadata: [String: GGUFValue] = [:]
        keys.reserveCapacity(kvCount)
        for _ in 0..<kvCount {
            let key = try r.string("metadata key")
            let typeID = try r.u32("type of metadata '\(key)'")
            let value = try r.value(typeID: typeID, key: key, depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw .badGGUF(path: path, reason: "metadata key '\(key)' appears twice")
            }
            keys.append(key)
        }
        metadataKeys = keys
        self.metadata = metadata

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.integer, a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                throw .badMetadata(path: path, key: "general.alignment", reason: "must be a power of two (found \(value))")
            }
            alignment = Int(a)
        }
        self.alignment = alignment

        var infos: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        infos.reserveCapacity(tensorCount)
        for _ in 0..<tensorCount {
            let name = try r.string("tensor name")
            let nDims = try r.u32("dimension count of tensor '\(name)'")
            guard nDims >= 1, nDims <= UInt32(Self.maxDims) else {
                throw .badGGUF(path: path, reason: "tensor '\(name)' has \(nDims) dimensions (1...\(Self.maxDims) allowed)")
            }
            var dims: [Int] = []
            var count = 1
            for _ in 0..<nDims {
                let d = try r.u64("dimension of tensor '\(name)'")
                guard d <= UInt64(Int32.max) * 64 else { throw .badGGUF(path: path, reason: "tensor '\(name)' has an impossible dimension \(d)") }
                let (m, overflow) = count.multipliedReportingOverflow(by: Int(d))
                guard !overflow else { throw .badGGUF(path: path, reason: "tensor '\(name)' has too many elements") }
                count = m
                dims.append(Int(d))
            }
            let typeID = try r.u32("type of tensor '\(name)'")
            guard let type = GGUFTensorType.known(typeID) else {
                throw .unsupportedTensorType(path: path, tensor: name, type: "unknown ggml type id \(typeID)")
            }
            guard dims[0] % type.blockSize == 0 else {
                throw .badGGUF(path: path, reason: "tensor '\(name)' has a row of \(dims[0]) elements, not a multiple of the \(type.name) block of \(type.blockSize)")
            }
            let offset = try r.u64("offset of tensor '\(name)'")
            guard offset <= UInt64(Int.max / 2) else { throw .badGGUF(path: path, reason: "tensor '\(name)' has an impossible offset \(offset)") }
            let (bytes, overflow) = (count / type.blockSize).multipliedReportingOverflow(by: type.typeSize)
            guard !overflow else { throw .badGGUF(path: path, reason: "tensor '\(name)' is too large") }
            guard index.updateValue(infos.count, forKey: name) == nil else {
                throw .badGGUF(path: path, reason: "tensor '\(name)' appears twice")
            }
            infos.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: Int(offset), byteCount: bytes))
        }
        let headerEnd = r.position
        dataOffset = (headerEnd + alignment - 1) / alignment * alignment
        let dataLength = file.count - min(dataOffset, file.count)
        for t in infos {
            guard t.offset % alignment == 0 else {
                throw .badGGUF(path: path, reason: "tensor '\(t.name)' starts at data offset \(t.offset), not a multiple of the alignment \(alignment)")
            }
            guard t.offset + t.byteCount <= dataLength else {
                throw .truncated(path: path, reason: "tensor '\(t.name)' ends at data offset \(t.offset + t.byteCount) but the data section has \(dataLength) bytes")
            }
        }
        let ordered = infos.filter { $0.byteCount > 0 }.sorted { $0.offset < $1.offset }
        for (a, b) in zip(ordered, ordered.dropFirst()) where a.offset + a.byteCount > b.offset {
            throw .badGGUF(path: path, reason: "tensor '\(b.name)' overlaps tensor '\(a.name)'")
        }
        tensors = infos
        tensorIndex = index
    }

    public func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// The raw bytes of a tensor, a view into the mapping (valid while this object lives).
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: file.bytes[(dataOffset + tensor.offset)..<(dataOffset + tensor.offset + tensor.byteCount)])
    }

    /// The tensor as f32 in row-major order of `shape` (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K).
    public func dequantize(_ tensor: GGUFTensorInfo) throws(ModelError) -> [Float] {
        guard tensor.type.isSupported else { throw .unsupportedTensorType(path: path, tensor: tensor.name, type: tensor.type.name) }
        let raw = bytes(of: tensor)
        return [Float](unsafeUninitializedCapacity: tensor.elementCount) { out, count in
            GGUFDequantizer.dequantize(raw, type: tensor.type, into: out)
            count = tensor.elementCount
        }
    }

    public var architecture: String? { metadata["general.architecture"]?.string }

    /// Reads the whole mapping ahead (the importer is about to stream through it once).
    public func adviseWillNeed() { file.adviseWillNeed() }

    private static func reason(_ error: SafetensorsError) -> String {
        switch error {
        case .io(_, let r), .truncated(_, let r), .badHeader(_, let r), .write(_, let r): r
        case .badTensor(_, _, let r): r
        case .missingTensor(_, let t): "missing \(t)"
        }
    }

    // MARK: - Header parsing

    /// A bounds-checked little-endian cursor over the mapping.
    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        let path: String
        var position = 0

        init(bytes: UnsafeRawBufferPointer, path: String) {
            self.bytes = bytes
            self.path = path
        }

        var remaining: Int { bytes.count - position }

        mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(ModelError) {
            guard n >= 0, n <= remaining else {
                throw .truncated(path: path, reason: "\(what()) at byte \(position) needs \(n) bytes but only \(remaining) remain")
            }
        }

        mutating func load<T: FixedWidthInteger>(_ type: T.Type, _ what: @autoclosure () -> String) throws(ModelError) -> T {
            try need(MemoryLayout<T>.size, what())
            let v = bytes.loadUnaligned(fromByteOffset: position, as: T.self)
            position += MemoryLayout<T>.size
            return T(littleEndian: v)
        }

        mutating func u32(_ what: @autoclosure () -> String) throws(ModelError) -> UInt32 { try load(UInt32.self, what()) }
        mutating func u64(_ what: @autoclosure () -> String) throws(ModelError) -> UInt64 { try load(UInt64.self, what()) }

        /// A u64 count of items that each take at least `minimumItemBytes`, checked against the bytes left.
        mutating func count(_ what: String, minimumItemBytes: Int) throws(ModelError) -> Int {
            let n = try u64(what)
            guard n <= UInt64(remaining / max(minimumItemBytes, 1)) else {
                throw .truncated(path: path, reason: "\(what) \(n) cannot fit in the \(remaining) bytes that remain")
            }
            return Int(n)
        }

        mutating func string(_ what: @autoclosure () -> String) throws(ModelError) -> String {
            let n = try u64("length of \(what())")
            guard n <= UInt64(remaining) else {
                throw .truncated(path: path, reason: "\(what()) at byte \(position) claims \(n) bytes but only \(remaining) remain")
            }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + Int(n))])
            guard let s = String(validating: slice, as: UTF8.self) else {
                throw .badGGUF(path: path, reason: "\(what()) at byte \(position) is not valid UTF-8")
            }
            position += Int(n)
            return s
        }

        mutating func value(typeID: UInt32, key: String, depth: Int) throws(ModelError) -> GGUFValue {
            guard let type = GGUFValue.TypeID(rawValue: typeID) else {
                throw .badGGUF(path: path, reason: "metadata '\(key)' has unknown value type \(typeID)")
            }
            switch type {
            case .uint8: return .uint8(try load(UInt8.self, "metadata '\(key)'"))
            case .int8: return .int8(try load(Int8.self, "metadata '\(key)'"))
            case .uint16: return .uint16(try load(UInt16.self, "metadata '\(key)'"))
            case .int16: return .int16(try load(Int16.self, "metadata '\(key)'"))
            case .uint32: return .uint32(try load(UInt32.self, "metadata '\(key)'"))
            case .int32: return .int32(try load(Int32.self, "metadata '\(key)'"))
            case .uint64: return .uint64(try load(UInt64.self, "metadata '\(key)'"))
            case .int64: return .int64(try load(Int64.self, "metadata '\(key)'"))
            case .float32: return .float32(Float(bitPattern: try load(UInt32.self, "metadata '\(key)'")))
            case .float64: return .float64(Double(bitPattern: try load(UInt64.self, "metadata '\(key)'")))
            case .bool:
                let b = try load(UInt8.self, "metadata '\(key)'")
                guard b <= 1 else { throw .badGGUF(path: path, reason: "metadata '\(key)' is a bool with value \(b)") }
                return .bool(b == 1)
            case .string: return .string(try string("metadata '\(key)'"))
            case .array:
                guard depth < GGUFFile.maxArrayNesting else {
                    throw .badGGUF(path: path, reason: "metadata '\(key)' nests arrays more than \(GGUFFile.maxArrayNesting) deep")
                }
                let elementType = try u32("element type of metadata '\(key)'")
                guard let et = GGUFValue.TypeID(rawValue: elementType) else {
                    throw .badGGUF(path: path, reason: "metadata '\(key)' is an array of unknown value type \(elementType)")
                }
                let minimum: Int = switch et {
                case .uint8, .int8, .bool: 1
                case .uint16, .int16: 2
                case .uint32, .int32, .float32: 4
                case .uint64, .int64, .float64, .string: 8
                case .array: 12
                }
                let n = try count("element count of metadata '\(key)'", minimumItemBytes: minimum)
                var items: [GGUFValue] = []
                items.reserveCapacity(n)
                for _ in 0..<n { items.append(try value(typeID: elementType, key: key, depth: depth + 1)) }
                return .array(elementType: elementType, items)
            }
        }
    }
}
