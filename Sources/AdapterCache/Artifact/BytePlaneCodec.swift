/// The artifact's weight encoding ("byte-planes-v1"), Blosc's shuffle applied across a whole
/// safetensors file: the header is kept as is, and the data section is rearranged so that, for
/// every element size (8, 4, then 2 bytes), byte 0 of every element of every such tensor comes
/// first, then byte 1, and so on. Sign/exponent bytes of floats are low-entropy and the mantissa
/// bytes are noise; grouped into long runs of one kind, zstd's entropy coder sees each
/// distribution alone instead of an interleaved mixture. 1-byte tensors and any bytes no tensor
/// covers follow unchanged in file order. The encoded data section has the original's length,
/// so the header's offsets stay valid for validation.
struct BytePlaneCodec {
    struct Group {
        let elementSize: Int
        /// Tensors of this element size in file order, with their first element's index in the group.
        let tensors: [(info: SafetensorsTensorInfo, firstElement: Int)]
        let elementCount: Int
        /// Where the group's planes start in the encoded data section.
        let start: Int
    }

    let groups: [Group]
    /// Byte ranges of the original data section kept verbatim, in order, after the groups.
    let rest: [Range<Int>]
    let restStart: Int
    let dataLength: Int

    init(tensors: [SafetensorsTensorInfo], dataLength: Int) {
        self.dataLength = dataLength
        let ordered = tensors.sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        var groups: [Group] = []
        var start = 0
        var covered: [Range<Int>] = []
        for size in [8, 4, 2] {
            var members: [(SafetensorsTensorInfo, Int)] = []
            var count = 0
            for t in ordered where t.dtype.byteSize == size && !t.byteRange.isEmpty {
                members.append((t, count))
                count += t.elementCount
                covered.append(t.byteRange)
            }
            if count > 0 {
                groups.append(Group(elementSize: size, tensors: members.map { (info: $0.0, firstElement: $0.1) }, elementCount: count, start: start))
                start += count * size
            }
        }
        covered.sort { $0.lowerBound < $1.lowerBound }
        var rest: [Range<Int>] = []
        var cursor = 0
        for r in covered {
            if r.lowerBound > cursor { rest.append(cursor..<r.lowerBound) }
            cursor = max(cursor, r.upperBound)
        }
        if cursor < dataLength { rest.append(cursor..<dataLength) }
        self.groups = groups
        self.rest = rest
        self.restStart = start
    }

    /// Original data section → planes. Both buffers are `dataLength` bytes.
    func encode(_ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer) {
        let s = src.assumingMemoryBound(to: UInt8.self), d = dst.assumingMemoryBound(to: UInt8.self)
        for g in groups {
            let es = g.elementSize, n = g.elementCount
            for (info, first) in g.tensors {
                let base = s + info.byteRange.lowerBound
                for p in 0..<es {
                    let plane = d + g.start + p * n + first
                    for j in 0..<info.elementCount { plane[j] = base[j * es + p] }
                }
            }
        }
        var at = restStart
        for r in rest {
            (d + at).update(from: s + r.lowerBound, count: r.count)
            at += r.count
        }
    }

    /// Planes → original data section.
    func decode(_ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer) {
        let s = src.assumingMemoryBound(to: UInt8.self), d = dst.assumingMemoryBound(to: UInt8.self)
        for g in groups {
            let es = g.elementSize, n = g.elementCount
            for (info, first) in g.tensors {
                let base = d + info.byteRange.lowerBound
                for p in 0..<es {
                    let plane = s + g.start + p * n + first
                    for j in 0..<info.elementCount { base[j * es + p] = plane[j] }
                }
            }
        }
        var at = restStart
        for r in rest {
            (d + r.lowerBound).update(from: s + at, count: r.count)
            at += r.count
        }
    }

    /// Pointers to byte 0, 1, … of `info`'s first element inside an encoded data section.
    func planes(of info: SafetensorsTensorInfo, in data: UnsafeRawPointer) -> [UnsafePointer<UInt8>]? {
        let bytes = data.assumingMemoryBound(to: UInt8.self)
        for g in groups where g.elementSize == info.dtype.byteSize {
            guard let t = g.tensors.first(where: { $0.info.name == info.name }) else { continue }
            return (0..<g.elementSize).map { UnsafePointer(bytes + g.start + $0 * g.elementCount + t.firstElement) }
        }
        return nil
    }
}

/// A byte-plane-encoded safetensors image as a tensor source (decoded straight to f32, never
/// re-interleaved).
struct BytePlaneTensorSource: AdapterTensorSource {
    let file: SafetensorsFile  // the encoded image: header valid, data section in planes
    let codec: BytePlaneCodec
    var label: String { file.path }
    var tensorInfos: [SafetensorsTensorInfo] { Array(file.tensors.values) }
    private let lookup: [String: [UnsafePointer<UInt8>]]

    init(file: SafetensorsFile) {
        self.file = file
        codec = BytePlaneCodec(tensors: Array(file.tensors.values), dataLength: file.fileBytes.count - file.dataOffset)
        let data = file.fileBytes.baseAddress! + file.dataOffset
        var lookup: [String: [UnsafePointer<UInt8>]] = [:]
        for g in codec.groups {
            for t in g.tensors {
                lookup[t.info.name] = (0..<g.elementSize).map { UnsafePointer(data.assumingMemoryBound(to: UInt8.self) + g.start + $0 * g.elementCount + t.firstElement) }
            }
        }
        self.lookup = lookup
    }

    func decode(_ info: SafetensorsTensorInfo, into dst: UnsafeMutablePointer<Float>) -> Bool {
        guard let planes = lookup[info.name] else {
            // 1-byte or empty tensors are stored verbatim; the decoder refuses their dtypes anyway.
            return info.elementCount == 0
        }
        return TensorDecoding.decodePlanes(planes, count: info.elementCount, dtype: info.dtype, into: dst)
    }
}
