import Kernels

/// Rank-`rank` adapters for `layers` copies of a layer's projections, `adapters` different adapters
/// each, stored as f32 (`A`, `Bᵀ`), as f16 (`A`, `Bᵀ` half bit patterns) and as int8 rows with row
/// scales, in three 64-byte aligned arenas, with the kernel slots precomputed. Random values of
/// LoRA-like magnitude.
final class LoRACopies {
    /// slots[precision][layer][projection]: one slot per adapter.
    private(set) var f32Slots: [[[ek_lora_slot]]] = []
    private(set) var f16Slots: [[[ek_lora_slot]]] = []
    private(set) var i8Slots: [[[ek_lora_slot]]] = []
    private let arena32: UnsafeMutablePointer<Float>
    private let arena16: UnsafeMutablePointer<UInt16>
    private let arena8: UnsafeMutablePointer<Int8>
    private let scales8: UnsafeMutablePointer<Float>
    /// Weight bytes of one layer's adapters, per precision.
    let f32BytesPerLayer: Int
    let f16BytesPerLayer: Int
    let i8BytesPerLayer: Int

    init(shapes: [(out: Int, in: Int)], layers: Int, adapters: Int, rank: Int, seed: UInt64) {
        func padded(_ n: Int) -> Int { (n + 31) / 32 * 32 }
        let perLayer = shapes.reduce(0) { $0 + adapters * (padded(rank * $1.in) + padded(rank * $1.out)) }
        // The int8 form (edge_kernels.h, EK_DTYPE_I8): A rows padded to 64 bytes, Bᵀ in rank quads.
        func i8Bytes(_ shape: (out: Int, in: Int)) -> (a: Int, bt: Int) {
            (rank * Int(ek_q8_row_stride(Int64(shape.in))), (Int(ek_lora_i8_bt_bytes(Int32(rank), Int64(shape.out))) + 63) / 64 * 64)
        }
        let perLayer8 = shapes.reduce(0) { $0 + adapters * (i8Bytes($1).a + i8Bytes($1).bt) }
        f32BytesPerLayer = shapes.reduce(0) { $0 + adapters * rank * ($1.in + $1.out) * 4 }
        f16BytesPerLayer = f32BytesPerLayer / 2
        i8BytesPerLayer = perLayer8 + shapes.count * adapters * 2 * rank * 4
        let scaleCount = max(shapes.count * adapters * 2 * rank * layers, 1)
        arena8 = UnsafeMutableRawPointer.allocate(byteCount: max(perLayer8 * layers, 1), alignment: 64).bindMemory(to: Int8.self, capacity: max(perLayer8 * layers, 1))
        scales8 = UnsafeMutablePointer<Float>.allocate(capacity: scaleCount)
        arena32 = UnsafeMutableRawPointer.allocate(byteCount: max(perLayer * layers, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(perLayer * layers, 1))
        arena16 = UnsafeMutableRawPointer.allocate(byteCount: max(perLayer * layers, 1) * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: max(perLayer * layers, 1))
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<(perLayer * layers) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            arena32[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * 0.05
        }
        ek_f32_to_f16(arena32, arena16, Int64(perLayer * layers))
        var offset = 0, offset8 = 0, scaleOffset = 0
        var b = [Float]()
        for _ in 0..<layers {
            var l32: [[ek_lora_slot]] = [], l16: [[ek_lora_slot]] = [], l8: [[ek_lora_slot]] = []
            for shape in shapes {
                var p32: [ek_lora_slot] = [], p16: [ek_lora_slot] = [], p8: [ek_lora_slot] = []
                for _ in 0..<adapters {
                    let a = offset, bt = offset + padded(rank * shape.in)
                    offset = bt + padded(rank * shape.out)
                    // B itself is not needed when Bᵀ is given (the engine binds Bᵀ for serving).
                    p32.append(.f32(a: arena32 + a, b: arena32 + bt, bt: arena32 + bt, rank: rank, scale: 2))
                    p16.append(.f16(a: arena16 + a, bt: arena16 + bt, rank: rank, scale: 2))
                    let sa = scales8 + scaleOffset, sbt = scales8 + scaleOffset + rank
                    scaleOffset += 2 * rank
                    let a8 = offset8, bt8 = offset8 + i8Bytes(shape).a
                    offset8 = bt8 + i8Bytes(shape).bt
                    // The same B the f32 slot reads as Bᵀ [rank, out], as B [out, rank] for the quantiser.
                    b = [Float](repeating: 0, count: rank * shape.out)
                    for t in 0..<rank { for j in 0..<shape.out { b[j * rank + t] = arena32[bt + t * shape.out + j] } }
                    _ = ek_q8_quantize_rows(arena32 + a, Int64(rank), Int64(shape.in), Int64(shape.in), ek_q8_row_stride(Int64(shape.in)), arena8 + a8, sa)
                    ek_lora_quantize_bt(b, Int32(rank), Int64(shape.out), arena8 + bt8, sbt)
                    p8.append(.int8(a: arena8 + a8, aScales: sa, bt: arena8 + bt8, btScales: sbt, rank: rank, inFeatures: shape.in, scale: 2))
                }
                l32.append(p32)
                l16.append(p16)
                l8.append(p8)
            }
            f32Slots.append(l32)
            f16Slots.append(l16)
            i8Slots.append(l8)
        }
    }

    deinit {
        UnsafeMutableRawPointer(arena32).deallocate()
        UnsafeMutableRawPointer(arena16).deallocate()
        UnsafeMutableRawPointer(arena8).deallocate()
        scales8.deallocate()
    }
}
