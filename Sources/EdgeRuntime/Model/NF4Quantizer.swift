import AdapterCache
import Foundation
import Kernels

/// One weight in bitsandbytes NF4 form, as it is stored (NF4.md §6), owned in memory.
public struct NF4QuantizedTensor: Sendable {
    /// `(numel + 1) / 2` bytes, first element in the high nibble.
    public var packed: [UInt8]
    /// Per block of `state.blocksize`: fp32 absmax, or (double quantisation) its 8-bit codes.
    public var absmax: Absmax
    public var state: NF4QuantState

    public enum Absmax: Sendable {
        case plain([Float])
        /// q8[nb] codes into the dynamic map, nested_absmax[ceil(nb / nested blocksize)], fp32 offset.
        case double(q8: [UInt8], nestedAbsmax: [Float], offset: Float)
    }

    /// The tensors `save_pretrained` writes for a Linear called `module`: its `.weight` and the
    /// quant-state companions, in bitsandbytes' state-dict order.
    public func safetensorsEntries(module: String) -> [(name: String, dtype: SafetensorsDType, shape: [Int], bytes: Data)] {
        let w = module + ".weight"
        var out: [(String, SafetensorsDType, [Int], Data)] = []
        out.append((w, .u8, [packed.count, 1], Data(packed)))
        let codes = NF4Tables.codes.withUnsafeBytes { Data($0) }
        switch absmax {
        case .plain(let a):
            out.append((w + ".absmax", .f32, [a.count], a.withUnsafeBytes { Data($0) }))
            out.append((w + ".quant_map", .f32, [16], codes))
        case .double(let q8, let nested, _):
            out.append((w + ".absmax", .u8, [q8.count], Data(q8)))
            out.append((w + ".quant_map", .f32, [16], codes))
            out.append((w + ".nested_absmax", .f32, [nested.count], nested.withUnsafeBytes { Data($0) }))
            out.append((w + ".nested_quant_map", .f32, [256], NF4Tables.dynamicMap.withUnsafeBytes { Data($0) }))
        }
        let json = Data(state.encoded().utf8)
        out.append((w + ".quant_state.bitsandbytes__nf4", .u8, [json.count], json))
        return out
    }

    /// The fp32 absmax per block (recovered from the double-quantised form when needed).
    public func absmaxFloats() -> [Float] {
        switch absmax {
        case .plain(let a): return a
        case .double(let q8, let nested, let offset):
            let map = NF4Tables.dynamicMap
            return [Float](unsafeUninitializedCapacity: q8.count) { out, n in
                ek_bnb_dequantize_absmax(q8, Int64(q8.count), map, nested, Int32(state.nested!.blocksize), offset, out.baseAddress)
                n = q8.count
            }
        }
    }

    /// The weights back in fp32 (flat rule, NF4.md §4), row-major in `state.shape`.
    public func dequantized() -> [Float] {
        let n = state.elementCount
        let absmax = absmaxFloats()
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            ek_bnb_dequantize_nf4(packed, Int64(n), Int32(state.blocksize), NF4Tables.codes, absmax, out.baseAddress)
            count = n
        }
    }
}

/// The exact bitsandbytes NF4 quantiser (C, in Kernels) behind a Swift signature.
public enum NF4Quantizer {
    public static let defaultBlocksize = 64
    public static let defaultNestedBlocksize = 256

    /// Quantises `values` (row-major, `shape`) as `quantize_4bit(quant_type="nf4",
    /// compress_statistics: doubleQuant)` does. `sourceDType` is recorded in the quant state.
    public static func quantize(_ values: UnsafeBufferPointer<Float>, shape: [Int], blocksize: Int = defaultBlocksize,
                                doubleQuant: Bool = true, nestedBlocksize: Int = defaultNestedBlocksize,
                                sourceDType: String = "float32") -> NF4QuantizedTensor {
        let n = values.count
        precondition(shape.reduce(1, *) == n, "shape \(shape) does not hold \(n) values")
        precondition(blocksize >= 32 && blocksize <= 4096 && blocksize & (blocksize - 1) == 0, "blocksize must be a power of two in 32...4096")
        let nb = (n + blocksize - 1) / blocksize
        var absmax = [Float](repeating: 0, count: nb)
        let packed = [UInt8](unsafeUninitializedCapacity: (n + 1) / 2) { out, count in
            absmax.withUnsafeMutableBufferPointer { a in
                ek_bnb_quantize_nf4(values.baseAddress, Int64(n), Int32(blocksize), out.baseAddress, a.baseAddress)
            }
            count = (n + 1) / 2
        }
        guard doubleQuant else {
            return NF4QuantizedTensor(packed: packed, absmax: .plain(absmax),
                                      state: NF4QuantState(blocksize: blocksize, dtype: sourceDType, shape: shape, nested: nil))
        }
        let nn = (nb + nestedBlocksize - 1) / nestedBlocksize
        var nested = [Float](repeating: 0, count: nn)
        var offset: Float = 0
        let q8 = [UInt8](unsafeUninitializedCapacity: nb) { out, count in
            nested.withUnsafeMutableBufferPointer { nptr in
                offset = ek_bnb_double_quantize(absmax, Int64(nb), Int32(nestedBlocksize), out.baseAddress, nptr.baseAddress)
            }
            count = nb
        }
        let state = NF4QuantState(blocksize: blocksize, dtype: sourceDType, shape: shape,
                                  nested: .init(blocksize: nestedBlocksize, offset: Double(offset)))
        return NF4QuantizedTensor(packed: packed, absmax: .double(q8: q8, nestedAbsmax: nested, offset: offset), state: state)
    }

    public static func quantize(_ values: [Float], shape: [Int], blocksize: Int = defaultBlocksize, doubleQuant: Bool = true,
                                nestedBlocksize: Int = defaultNestedBlocksize, sourceDType: String = "float32") -> NF4QuantizedTensor {
        values.withUnsafeBufferPointer {
            quantize($0, shape: shape, blocksize: blocksize, doubleQuant: doubleQuant, nestedBlocksize: nestedBlocksize, sourceDType: sourceDType)
        }
    }
}

/// The format's tables as fp32 values (from the bit patterns in Kernels).
public enum NF4Tables {
    /// The 16 NF4 code values, index = code.
    public static let codes: [Float] = withUnsafeBytes(of: ek_nf4_code_bits) { Array($0.bindMemory(to: UInt32.self)) }.map(Float.init(bitPattern:))
    /// bitsandbytes' signed dynamic map, the 256 values of an 8-bit absmax code.
    public static let dynamicMap: [Float] = withUnsafeBytes(of: ek_dynamic_map_bits) { Array($0.bindMemory(to: UInt32.self)) }.map(Float.init(bitPattern:))
}
