/// Conversions of little-endian 16/32/64-bit floating-point tensor bytes to f32.
public enum FloatConversion {
    public static func toFloat32(_ raw: UnsafeRawBufferPointer, dtype: SafetensorsDType) -> [Float]? {
        switch dtype {
        case .f32:
            let n = raw.count / 4
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                if n > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: n * 4) }
                count = n
            }
        case .f16:
            let n = raw.count / 2
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0..<n { out[i] = Float(Float16(bitPattern: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian)) }
                count = n
            }
        case .bf16:
            let n = raw.count / 2
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0..<n { out[i] = Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self).littleEndian) << 16) }
                count = n
            }
        case .f64:
            let n = raw.count / 8
            return [Float](unsafeUninitializedCapacity: n) { out, count in
                for i in 0..<n { out[i] = Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self).littleEndian)) }
                count = n
            }
        default:
            return nil
        }
    }

    /// f32 → bf16 with round-to-nearest-even (NaN stays NaN), as torch rounds.
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = ((bits >> 16) & 1) &+ 0x7fff
        return UInt16((bits &+ rounding) >> 16)
    }
}
