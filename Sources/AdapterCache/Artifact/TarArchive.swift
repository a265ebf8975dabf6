import Foundation

/// Reading and writing the small tar archives adapters travel in (ustar, with pax and GNU
/// extensions understood when reading).
///
/// Reading is deliberately narrow: only members whose names are in `wanted` are returned (as views
/// into the caller's buffer, no copies); every member is still checked, and links, devices, absolute
/// paths, `..` components, duplicate wanted members and members over `maxMemberBytes` are refused —
/// the archive comes from the network.
enum TarArchive {
    static let block = 512

    struct Member {
        let name: String
        let bytes: UnsafeRawBufferPointer
    }

    static func read(_ data: UnsafeRawBufferPointer, wanted: Set<String>, maxMemberBytes: Int, label: String) throws(AdapterError) -> [String: Member] {
        var found: [String: Member] = [:]
        var offset = 0
        var paxPath: String?
        var paxSize: Int?
        var gnuLongName: String?
        var sawEnd = false
        while offset + block <= data.count {
            let header = UnsafeRawBufferPointer(rebasing: data[offset..<(offset + block)])
            if header.allSatisfy({ $0 == 0 }) { sawEnd = true; break }
            try verifyChecksum(header, at: offset, label: label)
            let type = header[156]
            var name = gnuLongName ?? paxPath ?? headerName(header)
            var size = try parseNumber(header, offset: 124, length: 12, field: "size", label: label)
            if let p = paxSize { size = p }
            paxPath = nil; paxSize = nil; gnuLongName = nil
            let dataStart = offset + block
            // Checked before rounding up: a pax `size` record can say Int.max (Tests/Fuzz/regressions/artifact).
            guard size >= 0, size <= data.count - dataStart else {
                throw .badArchive(path: label, reason: "member '\(name.prefix(200))' of \(size) bytes runs past the end of the archive — it is truncated")
            }
            let padded = (size + block - 1) / block * block
            let body = UnsafeRawBufferPointer(rebasing: data[dataStart..<(dataStart + size)])
            offset = dataStart + padded

            switch type {
            case UInt8(ascii: "x"):  // pax extended header for the next member
                guard size <= 1 << 20 else { throw .tooLarge(path: label, what: "pax header", limit: 1 << 20) }
                let records = parsePax(body)
                paxPath = records["path"]
                if let s = records["size"] {
                    guard let n = Int(s), n >= 0 else { throw .badArchive(path: label, reason: "pax size '\(s.prefix(40))' is not a number") }
                    paxSize = n
                }
                continue
            case UInt8(ascii: "g"):  // pax global header: nothing we use
                continue
            case UInt8(ascii: "L"):  // GNU long name for the next member
                guard size <= 4096 else { throw .tooLarge(path: label, what: "GNU long name", limit: 4096) }
                gnuLongName = String(decoding: body.prefix { $0 != 0 }, as: UTF8.self)
                continue
            case UInt8(ascii: "1"), UInt8(ascii: "2"), UInt8(ascii: "K"):
                throw .unsafeMember(path: label, member: name, reason: "links are not allowed in adapter archives")
            case UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "6"):
                throw .unsafeMember(path: label, member: name, reason: "device and FIFO entries are not allowed")
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"), UInt8(ascii: "5"):
                break
            default:
                throw .unsafeMember(path: label, member: name, reason: "unsupported entry type '\(Character(Unicode.Scalar(type)))'")
            }

            name = try normalised(name, label: label)
            if type == UInt8(ascii: "5") || name.isEmpty { continue }  // directories (e.g. "./") carry no data
            guard size <= maxMemberBytes else { throw .tooLarge(path: label, what: "member '\(name)' (\(size) bytes)", limit: Int64(maxMemberBytes)) }
            guard wanted.contains(name) else { continue }
            guard found[name] == nil else { throw .unsafeMember(path: label, member: name, reason: "appears twice; refusing an ambiguous archive") }
            found[name] = Member(name: name, bytes: body)
        }
        if !sawEnd && offset < data.count {
            throw .badArchive(path: label, reason: "\(data.count - offset) trailing bytes do not form a tar header — it is truncated")
        }
        return found
    }

    /// Strips `./`, refuses absolute paths and `..`; returns "" for the archive root.
    static func normalised(_ raw: String, label: String) throws(AdapterError) -> String {
        guard !raw.hasPrefix("/") else { throw .unsafeMember(path: label, member: raw, reason: "absolute paths are not allowed") }
        guard !raw.contains("\0"), !raw.contains("\\") else { throw .unsafeMember(path: label, member: raw, reason: "the name contains NUL or backslash") }
        let parts = raw.split(separator: "/", omittingEmptySubsequences: true)
        guard !parts.contains("..") else { throw .unsafeMember(path: label, member: raw, reason: "'..' path components are not allowed") }
        return parts.filter { $0 != "." }.joined(separator: "/")
    }

    static func headerName(_ h: UnsafeRawBufferPointer) -> String {
        func field(_ o: Int, _ n: Int) -> String { String(decoding: h[o..<(o + n)].prefix { $0 != 0 }, as: UTF8.self) }
        let name = field(0, 100)
        let magic = field(257, 5)
        let prefix = magic == "ustar" ? field(345, 155) : ""
        return prefix.isEmpty ? name : prefix + "/" + name
    }

    static func verifyChecksum(_ h: UnsafeRawBufferPointer, at offset: Int, label: String) throws(AdapterError) {
        let stored = try parseNumber(h, offset: 148, length: 8, field: "checksum", label: label)
        var sum = 0
        for (i, b) in h.enumerated() { sum += (148..<156).contains(i) ? 0x20 : Int(b) }
        guard sum == stored else {
            throw .badArchive(path: label, reason: "header at byte \(offset) has a bad checksum — not a tar archive, or corrupt")
        }
    }

    /// An octal field (NUL/space terminated) or GNU base-256 (high bit set).
    static func parseNumber(_ h: UnsafeRawBufferPointer, offset: Int, length: Int, field: String, label: String) throws(AdapterError) -> Int {
        let bytes = h[offset..<(offset + length)]
        if let first = bytes.first, first & 0x80 != 0 {
            guard first == 0x80 else { throw .badArchive(path: label, reason: "negative or oversized \(field) field") }
            var v = 0
            for b in bytes.dropFirst() {
                guard v < Int.max >> 9 else { throw .badArchive(path: label, reason: "\(field) field overflows") }
                v = v << 8 | Int(b)
            }
            return v
        }
        var v = 0
        var seenDigit = false
        for b in bytes {
            if b == 0 || (b == 0x20 && seenDigit) { break }
            if b == 0x20 { continue }
            guard b >= 0x30 && b <= 0x37 else { throw .badArchive(path: label, reason: "\(field) field is not octal — not a tar archive") }
            guard v < Int.max >> 4 else { throw .badArchive(path: label, reason: "\(field) field overflows") }
            v = v * 8 + Int(b - 0x30)
            seenDigit = true
        }
        return v
    }

    /// pax records: "LEN key=value\n"…
    static func parsePax(_ body: UnsafeRawBufferPointer) -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        let bytes = Array(body)
        while i < bytes.count {
            var j = i
            while j < bytes.count, bytes[j] != 0x20 { j += 1 }
            // A record's length counts its own digits and the space, so it must reach past them;
            // `len <= count - i` rather than `i + len <= count` so a huge length cannot overflow.
            guard j < bytes.count, let len = Int(String(decoding: bytes[i..<j], as: UTF8.self)), len > j - i, len <= bytes.count - i else { break }
            let record = bytes[(j + 1)..<(i + len)]
            if let eq = record.firstIndex(of: 0x3d) {
                let key = String(decoding: record[record.startIndex..<eq], as: UTF8.self)
                var value = Array(record[(eq + 1)...])
                if value.last == 0x0a { value.removeLast() }
                out[key] = String(decoding: value, as: UTF8.self)
            }
            i += len
        }
        return out
    }

    /// A ustar archive of regular files (names under 100 bytes), ending with two zero blocks.
    static func write(_ members: [(String, Data)], mtime: Int) -> Data {
        var out = Data()
        for (name, bytes) in members {
            let m = (name: name, bytes: bytes)
            precondition(m.name.utf8.count < 100)
            var h = [UInt8](repeating: 0, count: block)
            func put(_ s: String, _ o: Int) { for (i, b) in s.utf8.enumerated() { h[o + i] = b } }
            func octal(_ v: Int, _ o: Int, _ len: Int) { put(String(repeating: "0", count: max(0, len - 1 - String(v, radix: 8).count)) + String(v, radix: 8), o) }
            put(m.name, 0)
            octal(0o644, 100, 8)
            octal(0, 108, 8)
            octal(0, 116, 8)
            octal(m.bytes.count, 124, 12)
            octal(mtime, 136, 12)
            h[156] = UInt8(ascii: "0")
            put("ustar", 257)
            h[262] = 0
            put("00", 263)
            for i in 148..<156 { h[i] = 0x20 }
            let sum = h.reduce(0) { $0 + Int($1) }
            put(String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8), 148)
            h[154] = 0
            h[155] = 0x20
            out.append(contentsOf: h)
            out.append(m.bytes)
            let pad = (block - m.bytes.count % block) % block
            out.append(Data(count: pad))
        }
        out.append(Data(count: 2 * block))
        return out
    }
}
