import Crypto
import Foundation

/// sha256 as lower-case hex, of memory or of a file read in 1 MiB chunks (a base model's
/// model.safetensors can be gigabytes; it is never read whole).
public enum FileDigest {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        hex(SHA256.hash(data: bytes))
    }

    public static func sha256(_ data: Data) -> String {
        hex(SHA256.hash(data: data))
    }

    public static func sha256(file path: String) throws(AdapterError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var hasher = SHA256()
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        while true {
            let n = read(fd, chunk.baseAddress, chunk.count)
            if n < 0 { if errno == EINTR { continue }; throw .io(path: path, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
        }
        return hex(hasher.finalize())
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in digest { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// True for 64 lower-case hex digits.
    /// A digest as a person may paste it — `sha256:`-prefixed as `edgectl model info` prints it, or in
    /// upper case — in the bare lower-case hex form the files and manifests hold.
    public static func normalized(_ s: String) -> String {
        let bare = s.hasPrefix("sha256:") ? String(s.dropFirst(7)) : s
        return bare.lowercased()
    }

    public static func isHexDigest(_ s: String) -> Bool {
        s.utf8.count == 64 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }
}
