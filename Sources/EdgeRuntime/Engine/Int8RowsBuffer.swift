import Kernels

/// One LoRA matrix in the kernels' int8 form (EK_DTYPE_I8 in edge_kernels.h): int8 values with one f32
/// scale per rank row, at stable, 64-byte-aligned addresses. Owns its memory and frees it in deinit;
/// written once at creation.
final class Int8RowsBuffer: @unchecked Sendable {
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>
    /// Bytes held (values and scales).
    let byteCount: Int

    private init(bytes: Int, rank: Int, fill: (UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>) -> Void) {
        values = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 1), alignment: 64).bindMemory(to: Int8.self, capacity: max(bytes, 1))
        scales = UnsafeMutableRawPointer.allocate(byteCount: max(rank, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(rank, 1))
        byteCount = bytes + rank * 4
        fill(values, scales)
    }

    /// `A [rank, in]` row-major: rows `ek_q8_row_stride(in)` bytes apart (`ek_q8_quantize_rows`).
    convenience init(loraA a: [Float], rank: Int, in inFeatures: Int) {
        precondition(a.count == rank * inFeatures, "Int8RowsBuffer: \(a.count) values for A [\(rank), \(inFeatures)]")
        let ld = ek_q8_row_stride(Int64(inFeatures))
        self.init(bytes: rank * Int(ld), rank: rank) {
            let status = ek_q8_quantize_rows(a, Int64(rank), Int64(inFeatures), Int64(inFeatures), ld, $0, $1)
            precondition(status == 0, "Int8RowsBuffer: ek_q8_quantize_rows failed (\(status)) for A [\(rank), \(inFeatures)]")
        }
    }

    /// `B [out, rank]` row-major (PEFT's lora_B) as `Bᵀ` in rank quads (`ek_lora_quantize_bt`).
    convenience init(loraB b: [Float], out: Int, rank: Int) {
        precondition(b.count == out * rank, "Int8RowsBuffer: \(b.count) values for B [\(out), \(rank)]")
        self.init(bytes: Int(ek_lora_i8_bt_bytes(Int32(rank), Int64(out))), rank: rank) {
            ek_lora_quantize_bt(b, Int32(rank), Int64(out), $0, $1)
        }
    }

    deinit {
        UnsafeMutableRawPointer(values).deallocate()
        UnsafeMutableRawPointer(scales).deallocate()
    }
}
