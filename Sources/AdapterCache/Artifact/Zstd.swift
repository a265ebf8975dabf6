import CZstd
import Foundation

/// libzstd one-shot compression and bounded decompression. Decompression never allocates more
/// than the caller's limit, whatever a frame header claims: a small file that expands to gigabytes
/// (a "zstd bomb") is refused with `.tooLarge` instead of exhausting memory.
public enum Zstd {
    static let contentSizeUnknown = UInt64.max
    static let contentSizeError = UInt64.max - 1

    static func errorName(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }

    /// Compresses `input` into one frame that records its content size and a checksum.
    public static func compress(_ input: UnsafeRawBufferPointer, level: Int32, label: String) throws(AdapterError) -> Data {
        guard let cctx = ZSTD_createCCtx() else { throw .zstd(path: label, reason: "cannot allocate a compression context") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let bound = ZSTD_compressBound(input.count)
        var out = Data(count: bound)
        let written: Int = out.withUnsafeMutableBytes { dst in
            ZSTD_compress2(cctx, dst.baseAddress, bound, input.baseAddress, input.count)
        }
        if ZSTD_isError(written) != 0 { throw .zstd(path: label, reason: errorName(written)) }
        out.count = written
        return out
    }

    /// Decompresses every frame in `input`, refusing output larger than `limit` bytes.
    public static func decompress(_ input: UnsafeRawBufferPointer, limit: Int, label: String) throws(AdapterError) -> OwnedBytes {
        guard input.count >= 4 else { throw .zstd(path: label, reason: "\(input.count) bytes is too short for a zstd frame") }
        guard let dctx = ZSTD_createDCtx() else { throw .zstd(path: label, reason: "cannot allocate a decompression context") }
        defer { ZSTD_freeDCtx(dctx) }
        // Caps the window a frame may ask for (128 MiB), another way a hostile frame could demand memory.
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27)
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if declared == contentSizeError {
            throw .zstd(path: label, reason: "not a zstd stream (bad frame header) — is the file compressed with zstd?")
        }
        // The one-shot path applies to a single frame that declares its size; anything else streams.
        let firstFrame = ZSTD_findFrameCompressedSize(input.baseAddress, input.count)
        if declared != contentSizeUnknown && ZSTD_isError(firstFrame) == 0 && firstFrame == input.count {
            guard declared <= UInt64(limit) else { throw .tooLarge(path: label, what: "decompressed size \(declared)", limit: Int64(limit)) }
            // Fast path: the frames say how large they are; one call, no copies.
            let out = OwnedBytes(capacity: Int(declared))
            let n = ZSTD_decompressDCtx(dctx, out.pointer, Int(declared), input.baseAddress, input.count)
            if ZSTD_isError(n) != 0 { throw .zstd(path: label, reason: "\(errorName(n)) — the file is corrupt or truncated") }
            guard n == Int(declared) else { throw .zstd(path: label, reason: "frame decoded to \(n) bytes but declared \(declared)") }
            out.setCount(n)
            return out
        }
        // Streaming path (e.g. `tar --zstd` writes frames without a size): grow up to the limit.
        var capacity = min(max(input.count * 4, 1 << 20), limit)
        var out = OwnedBytes(capacity: capacity)
        var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        var produced = 0
        var lastResult = 1
        while true {
            if produced == capacity {
                guard capacity < limit else { throw .tooLarge(path: label, what: "decompressed data", limit: Int64(limit)) }
                capacity = min(capacity * 2, limit)
                let bigger = OwnedBytes(capacity: capacity)
                bigger.pointer.copyMemory(from: out.pointer, byteCount: produced)
                out = bigger
            }
            var outBuf = ZSTD_outBuffer(dst: out.pointer + produced, size: capacity - produced, pos: 0)
            let r = ZSTD_decompressStream(dctx, &outBuf, &inBuf)
            if ZSTD_isError(r) != 0 { throw .zstd(path: label, reason: "\(errorName(r)) — the file is corrupt or truncated") }
            produced += outBuf.pos
            lastResult = r
            if inBuf.pos == inBuf.size && outBuf.pos < outBuf.size { break }
        }
        guard lastResult == 0 else { throw .zstd(path: label, reason: "the stream ends in the middle of a frame — the file is truncated") }
        out.setCount(produced)
        return out
    }
}
