import Kernels

/// A `[rows, cols]` matrix as int8 rows with one f32 scale each (value = scale × int8), at stable,
/// 64-byte-aligned addresses for C kernels (int8 LoRA weights). Owns its memory and frees it in
/// deinit; written once at creation.
final class Int8RowsBuffer: @unchecked Sendable {
    let rows: Int
    let cols: Int
    let values: UnsafeMutablePointer<Int8>
    let scales: UnsafeMutablePointer<Float>

    /// `m [rows, cols]` row-major, quantised per row (`ek_lora_quantize_rows`).
    init(quantizing m: [Float], rows: Int, cols: Int) {
        precondition(m.count == rows * cols, "Int8RowsBuffer: \(m.count) values for [\(rows), \(cols)]")
        self.rows = rows
        self.cols = cols
        values = UnsafeMutableRawPointer.allocate(byteCount: max(rows * cols, 1), alignment: 64).bindMemory(to: Int8.self, capacity: max(rows * cols, 1))
        scales = UnsafeMutableRawPointer.allocate(byteCount: max(rows, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(rows, 1))
        ek_lora_quantize_rows(m, Int64(rows), Int64(cols), Int64(cols), values, scales)
    }

    /// `b [out, rank]` transposed to `[rank, out]`, then quantised per rank row: what `ek_lora_slot.bt8` wants.
    convenience init(transposing b: [Float], out: Int, rank: Int) {
        var bt = [Float](repeating: 0, count: b.count)
        ek_lora_transpose_b(b, Int64(out), Int32(rank), &bt)
        self.init(quantizing: bt, rows: rank, cols: out)
    }

    /// Bytes held (values and scales).
    var byteCount: Int { rows * cols + rows * 4 }

    deinit {
        UnsafeMutableRawPointer(values).deallocate()
        UnsafeMutableRawPointer(scales).deallocate()
    }
}
