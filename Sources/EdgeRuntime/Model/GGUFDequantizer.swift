/// ggml's block formats decoded to f32, with the same fp32 operation order as ggml's reference
/// `dequantize_row_*` and gguf-py (the code transformers' GGUF loader runs): a multiply, then an add,
/// never fused — so the f32 weights we quantise are the ones the reference tools see.
enum GGUFDequantizer {
    /// Decodes `raw` (whole blocks of `type`) into `out`, which holds exactly the element count.
    static func dequantize(_ raw: UnsafeRawBufferPointer, type: GGUFTensorType, into out: UnsafeMutableBufferPointer<Float>) {
        guard let src = raw.baseAddress, let dst = out.baseAddress, out.count > 0 else { return }
        let blocks = out.count / type.blockSize
        switch type.id {
        case GGUFTensorType.f32.id:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: out.count * 4)
        case GGUFTensorType.f16.id:
            for i in 0..<out.count { dst[i] = half(src, 2 * i) }
        case GGUFTensorType.bf16.id:
            for i in 0..<out.count { dst[i] = Float(bitPattern: UInt32(u16(src, 2 * i)) << 16) }
        case GGUFTensorType.q8_0.id:
            for b in 0..<blocks { q8_0(src + b * 34, dst + b * 32) }
        case GGUFTensorType.q4_0.id:
            for b in 0..<blocks { q4_0(src + b * 18, dst + b * 32) }
        case GGUFTensorType.q4_1.id:
            for b in 0..<blocks { q4_1(src + b * 20, dst + b * 32) }
        case GGUFTensorType.q4_K.id:
            for b in 0..<blocks { q4_K(src + b * 144, dst + b * 256) }
        case GGUFTensorType.q6_K.id:
            for b in 0..<blocks { q6_K(src + b * 210, dst + b * 256) }
        default:
            preconditionFailure("GGUFDequantizer called with unsupported type \(type.name)")
        }
    }

    @inline(__always) static func u16(_ p: UnsafeRawPointer, _ offset: Int) -> UInt16 {
        UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: u16(p, offset)))
    }

    /// {f16 d; i8 qs[32]}: x[i] = d * qs[i].
    @inline(__always) static func q8_0(_ block: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        let qs = (block + 2).assumingMemoryBound(to: Int8.self)
        for i in 0..<32 { y[i] = d * Float(qs[i]) }
    }

    /// {f16 d; u8 qs[16]}: element j is the low nibble of qs[j], element j + 16 the high nibble; x = d * (q - 8).
    @inline(__always) static func q4_0(_ block: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0)
        let qs = (block + 2).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            y[j] = d * Float(Int(qs[j] & 0x0f) - 8)
            y[j + 16] = d * Float(Int(qs[j] >> 4) - 8)
        }
    }

    /// {f16 d; f16 m; u8 qs[16]}: x = d * q + m, same nibble order as Q4_0.
    @inline(__always) static func q4_1(_ block: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), m = half(block, 2)
        let qs = (block + 4).assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            y[j] = d * Float(qs[j] & 0x0f) + m
            y[j + 16] = d * Float(qs[j] >> 4) + m
        }
    }

    /// The j-th (0..<8) 6-bit scale and min of a K-quant super-block's 12 packed scale bytes:
    /// bytes 0–3 hold scales 0–3 (low 6 bits) and the top 2 bits of scales 4–7; bytes 4–7 the same
    /// for the mins; bytes 8–11 the low 4 bits of scale (low nibble) and min (high nibble) 4–7.
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (scale: UInt8, min: UInt8) {
        if j < 4 {
            return (q[j] & 63, q[j + 4] & 63)
        }
        return ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }

    /// {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32; sub-block pair (2i, 2i+1)
    /// shares qs[32i ..< 32i+32], low nibbles for the first, high for the second;
    /// x = (d * scale) * q - (dmin * min).
    @inline(__always) static func q4_K(_ block: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(block, 0), dmin = half(block, 2)
        let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
        let qs = (block + 16).assumingMemoryBound(to: UInt8.self)
        for pair in 0..<4 {
            let (s1, m1) = scaleMinK4(2 * pair, scales)
            let (s2, m2) = scaleMinK4(2 * pair + 1, scales)
            let d1 = d * Float(s1), mm1 = dmin * Float(m1)
            let d2 = d * Float(s2), mm2 = dmin * Float(m2)
            let q = qs + 32 * pair
            let out = y + 64 * pair
            for l in 0..<32 {
                out[l] = d1 * Float(q[l] & 0x0f) - mm1
                out[l + 32] = d2 * Float(q[l] >> 4) - mm2
            }
        }
    }

    /// {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: two halves of 128 elements. In a half, element
    /// 32k + l (k = 0...3, l < 32) takes its low 4 bits from ql[l] (k = 0: low nibble, k = 2: high) or
    /// ql[l + 32] (k = 1: low, k = 3: high), its high 2 bits from qh[l] bits 2k...2k+1, and is
    /// (d * scales[l / 16 + 2k]) * (q - 32).
    @inline(__always) static func q6_K(_ block: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(block, 208)
        let qlBase = block.assumingMemoryBound(to: UInt8.self)
        let qhBase = (block + 128).assumingMemoryBound(to: UInt8.self)
        let scBase = (block + 192).assumingMemoryBound(to: Int8.self)
        for half in 0..<2 {
            let ql = qlBase + 64 * half, qh = qhBase + 32 * half, sc = scBase + 8 * half
            let out = y + 128 * half
            for l in 0..<32 {
                let s = l / 16
                let q1 = Int(Int8(bitPattern: (ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4))) - 32
                let q2 = Int(Int8(bitPattern: (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4))) - 32
                let q3 = Int(Int8(bitPattern: (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4))) - 32
                let q4 = Int(Int8(bitPattern: (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4))) - 32
                out[l] = (d * Float(sc[s])) * Float(q1)
                out[l + 32] = (d * Float(sc[s + 2])) * Float(q2)
                out[l + 64] = (d * Float(sc[s + 4])) * Float(q3)
                out[l + 96] = (d * Float(sc[s + 6])) * Float(q4)
            }
        }
    }
}
