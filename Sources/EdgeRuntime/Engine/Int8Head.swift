import Kernels

/// A dense output head quantised to int8 with one f32 scale per vocabulary row (`ek_q8_matrix`): what
/// the fastest mode (int8 activations) multiplies the final hidden state by. The f32 head of a tied
/// SmolLM2-135M is 576 × 49152 × 4 = 113 MB read per decoded token, more than all NF4 projections
/// together; this is a quarter of it, read with integer dot products. The f32 mode keeps the f32 head.
///
/// Owns its buffers (freed in deinit); immutable after init, shared read-only by every thread.
public final class Int8Head: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    private let codes: UnsafeMutableRawPointer
    private let scales: UnsafeMutablePointer<Float>
    public let matrix: ek_q8_matrix

    /// Quantises `dense` ([rows, cols] row-major f32) row by row.
    public init(dense: UnsafePointer<Float>, rows: Int, cols: Int) throws(EngineError) {
        self.rows = rows
        self.cols = cols
        let ld = Int(ek_q8_row_stride(Int64(cols)))
        codes = UnsafeMutableRawPointer.allocate(byteCount: max(1, rows * ld), alignment: 64)
        scales = .allocate(capacity: max(1, rows))
        let status = ek_q8_quantize_rows(dense, Int64(rows), Int64(cols), Int64(cols), Int64(ld),
                                         codes.assumingMemoryBound(to: Int8.self), scales)
        matrix = ek_q8_matrix(q: UnsafePointer(codes.assumingMemoryBound(to: Int8.self)), scale: UnsafePointer(scales),
                              rows: Int64(rows), cols: Int64(cols), ld: Int64(ld))
        if status != 0 {
            codes.deallocate()
            scales.deallocate()
            throw .kernel(operation: "q8_quantize_rows(lm_head)", status: status, message: String(cString: ek_status_message(status)))
        }
    }

    deinit {
        codes.deallocate()
        scales.deallocate()
    }
}
