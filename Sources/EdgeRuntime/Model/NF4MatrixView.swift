import Kernels

/// A zero-copy view of one bitsandbytes NF4 weight inside the mapped model file: pointers into the
/// mapping plus the geometry. Valid while the `NF4Model` it came from lives.
///
/// The fields are exactly those of the kernels' C struct `ek_nf4_matrix` (packed, absmax_f32,
/// absmax_q8, nested_absmax, dq_map, offset, rows, cols, blocksize, nested_blocksize), so filling it is a
/// field-by-field copy. The weight is `[rows, cols]` = `[out_features, in_features]`, row-major; blocks of
/// `blocksize` run over the flattened weight (they may span rows).
public struct NF4MatrixView: @unchecked Sendable {
    /// HF module name, e.g. `model.layers.0.self_attn.q_proj`.
    public let name: String
    /// `(rows * cols + 1) / 2` bytes, element 2j in the high nibble of byte j.
    public let packed: UnsafePointer<UInt8>
    /// Per-block fp32 absmax (no double quantisation), else nil.
    public let absmaxF32: UnsafePointer<Float>?
    /// Per-block 8-bit absmax codes (double quantisation), else nil.
    public let absmaxQ8: UnsafePointer<UInt8>?
    /// One fp32 scale per `nestedBlocksize` absmax codes (double quantisation), else nil.
    public let nestedAbsmax: UnsafePointer<Float>?
    /// The 256-entry dynamic map as stored (`nested_quant_map`; double quantisation), else nil.
    public let dqMap: UnsafePointer<Float>?
    /// The 16 NF4 code values as stored (`quant_map`).
    public let quantMap: UnsafePointer<Float>
    /// Added to every dequantised absmax (double quantisation; 0 otherwise).
    public let offset: Float
    public let rows: Int
    public let cols: Int
    public let blocksize: Int32
    /// 0 without double quantisation.
    public let nestedBlocksize: Int32

    public var elementCount: Int { rows * cols }
    public var blockCount: Int { (elementCount + Int(blocksize) - 1) / Int(blocksize) }
    public var isDoubleQuantised: Bool { absmaxQ8 != nil }

    /// The fp32 absmax of every block (NF4.md §5 dequantisation when double-quantised).
    public func absmax() -> [Float] {
        let nb = blockCount
        if let absmaxF32 { return Array(UnsafeBufferPointer(start: absmaxF32, count: nb)) }
        return [Float](unsafeUninitializedCapacity: nb) { out, count in
            ek_bnb_dequantize_absmax(absmaxQ8!, Int64(nb), dqMap!, nestedAbsmax!, nestedBlocksize, offset, out.baseAddress!)
            count = nb
        }
    }

    /// The whole weight in fp32 by the scalar reference rule (for tests and tools, not the hot path).
    public func dequantized() -> [Float] {
        let a = absmax()
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            ek_bnb_dequantize_nf4(packed, Int64(n), blocksize, quantMap, a, out.baseAddress!)
            count = n
        }
    }
}

/// A zero-copy view of an unquantised tensor (embeddings, norms, lm_head) in the mapped file.
public struct TensorView: @unchecked Sendable {
    public enum DType: String, Sendable { case f32 = "F32", f16 = "F16", bf16 = "BF16" }

    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// The tensor's bytes inside the mapping, little-endian.
    public let raw: UnsafeRawBufferPointer

    public var elementCount: Int { shape.reduce(1, *) }

    /// Typed pointer when the tensor is f32 (aligned: the loader checks it).
    public var f32: UnsafePointer<Float>? {
        dtype == .f32 ? raw.baseAddress!.assumingMemoryBound(to: Float.self) : nil
    }

    /// Typed pointer to the 16-bit elements when the tensor is f16 or bf16.
    public var bits16: UnsafePointer<UInt16>? {
        dtype == .f32 ? nil : raw.baseAddress!.assumingMemoryBound(to: UInt16.self)
    }

    /// Row `r` of a 2-D tensor converted to f32 (e.g. one embedding row).
    public func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let cols = shape.count == 2 ? shape[1] : elementCount
        let base = r * cols
        switch dtype {
        case .f32: out.update(from: f32! + base, count: cols)
        case .f16: for c in 0..<cols { out[c] = Float(Float16(bitPattern: UInt16(littleEndian: bits16![base + c]))) }
        case .bf16: for c in 0..<cols { out[c] = Float(bitPattern: UInt32(UInt16(littleEndian: bits16![base + c])) << 16) }
        }
    }

    /// All values as f32 (a copy).
    public func floats() -> [Float] {
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { out, count in
            let cols = shape.count == 2 ? shape[1] : n
            let rows = cols == 0 ? 0 : n / cols
            for r in 0..<rows { row(r, into: out.baseAddress! + r * cols) }
            count = n
        }
    }
}
