import Kernels

/// A fixed-size, 64-byte-aligned buffer of IEEE half bit patterns with a stable address for C kernels
/// (f16 LoRA weights). Owns its memory and frees it in deinit; written once at creation.
final class HalfBuffer: @unchecked Sendable {
    let count: Int
    let pointer: UnsafeMutablePointer<UInt16>

    /// `values` rounded to half (nearest even).
    init(halving values: [Float]) {
        count = values.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: max(count, 1))
        ek_f32_to_f16(values, pointer, Int64(count))
    }

    /// `b [out, rank]` transposed to `[rank, out]` and rounded to half: the layout `ek_lora_slot.bt16` wants.
    init(transposingToHalf b: [Float], out: Int, rank: Int) {
        count = b.count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: max(count, 1))
        ek_lora_transpose_b_f16(b, Int64(out), Int32(rank), pointer)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}
