/// Converts stored f32/f16/bf16 tensor bytes to f32, either contiguous little-endian elements or
/// byte planes (plane p holds byte p of every element, as the artifact stores them), and reports
/// whether every value was finite. These loops are the disk → RAM hot path: f16 goes through a
/// 64 K-entry table because the default x86-64 target has no F16C and `Float(Float16)` would be a
/// library call per element.
enum TensorDecoding {
    /// f16 bit pattern → f32, built once (256 KiB).
    static let halfTable: [Float] = (0..<65536).map { Float(Float16(bitPattern: UInt16($0))) }

    /// Contiguous elements → f32. Returns false if any value is NaN or infinite.
    static func decode(_ src: UnsafeRawPointer, count: Int, dtype: SafetensorsDType, into dst: UnsafeMutablePointer<Float>) -> Bool {
        switch dtype {
        case .f32:
            var bad: UInt32 = 0
            let out = UnsafeMutableRawPointer(dst)
            for i in 0..<count {
                let bits = UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                bad |= (bits & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0
                out.storeBytes(of: bits, toByteOffset: 4 * i, as: UInt32.self)
            }
            return bad == 0
        case .f16:
            return halfTable.withUnsafeBufferPointer { table in
                var bad: UInt16 = 0
                for i in 0..<count {
                    let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                    bad |= (h & 0x7c00) == 0x7c00 ? 1 : 0
                    dst[i] = table[Int(h)]
                }
                return bad == 0
            }
        case .bf16:
            var bad: UInt16 = 0
            for i in 0..<count {
                let h = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                bad |= (h & 0x7f80) == 0x7f80 ? 1 : 0
                dst[i] = Float(bitPattern: UInt32(h) << 16)
            }
            return bad == 0
        case .f64:
            var ok = true
            for i in 0..<count {
                let v = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                ok = ok && v.isFinite
                dst[i] = v
            }
            return ok
        default:
            return false
        }
    }

    /// Byte planes → f32. `plane(p)` points at byte p of this tensor's first element; the planes
    /// are not contiguous with each other (see `BytePlaneCodec`).
    static func decodePlanes(_ planes: [UnsafePointer<UInt8>], count: Int, dtype: SafetensorsDType, into dst: UnsafeMutablePointer<Float>) -> Bool {
        switch dtype {
        case .f32:
            let p0 = planes[0], p1 = planes[1], p2 = planes[2], p3 = planes[3]
            var bad: UInt32 = 0
            let out = UnsafeMutableRawPointer(dst)
            for i in 0..<count {
                let bits = UInt32(p0[i]) | UInt32(p1[i]) << 8 | UInt32(p2[i]) << 16 | UInt32(p3[i]) << 24
                bad |= (bits & 0x7f80_0000) == 0x7f80_0000 ? 1 : 0
                out.storeBytes(of: bits, toByteOffset: 4 * i, as: UInt32.self)
            }
            return bad == 0
        case .f16:
            let lo = planes[0], hi = planes[1]
            return halfTable.withUnsafeBufferPointer { table in
                var bad: UInt16 = 0
                for i in 0..<count {
                    let h = UInt16(lo[i]) | UInt16(hi[i]) << 8
                    bad |= (h & 0x7c00) == 0x7c00 ? 1 : 0
                    dst[i] = table[Int(h)]
                }
                return bad == 0
            }
        case .bf16:
            let lo = planes[0], hi = planes[1]
            var bad: UInt16 = 0
            for i in 0..<count {
                let h = UInt16(lo[i]) | UInt16(hi[i]) << 8
                bad |= (h & 0x7f80) == 0x7f80 ? 1 : 0
                dst[i] = Float(bitPattern: UInt32(h) << 16)
            }
            return bad == 0
        case .f64:
            var ok = true
            for i in 0..<count {
                var bits: UInt64 = 0
                for p in 0..<8 { bits |= UInt64(planes[p][i]) << (8 * UInt64(p)) }
                let v = Float(Double(bitPattern: bits))
                ok = ok && v.isFinite
                dst[i] = v
            }
            return ok
        default:
            return false
        }
    }
}
