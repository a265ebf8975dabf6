import Kernels

/// Rank-`rank` adapters for `layers` copies of a layer's projections, `adapters` different adapters
/// each, stored both as f32 (`A`, `Bᵀ`) and as f16 (`A`, `Bᵀ` half bit patterns) in two 64-byte
/// aligned arenas, with the kernel slots precomputed. Random values of LoRA-like magnitude.
final class LoRACopies {
    /// slots[precision][layer][projection]: one slot per adapter.
    private(set) var f32Slots: [[[ek_lora_slot]]] = []
    private(set) var f16Slots: [[[ek_lora_slot]]] = []
    private let arena32: UnsafeMutablePointer<Float>
    private let arena16: UnsafeMutablePointer<UInt16>
    /// Weight bytes of one layer's adapters, per precision.
    let f32BytesPerLayer: Int
    let f16BytesPerLayer: Int

    init(shapes: [(out: Int, in: Int)], layers: Int, adapters: Int, rank: Int, seed: UInt64) {
        func padded(_ n: Int) -> Int { (n + 31) / 32 * 32 }
        let perLayer = shapes.reduce(0) { $0 + adapters * (padded(rank * $1.in) + padded(rank * $1.out)) }
        f32BytesPerLayer = shapes.reduce(0) { $0 + adapters * rank * ($1.in + $1.out) * 4 }
        f16BytesPerLayer = f32BytesPerLayer / 2
        arena32 = UnsafeMutableRawPointer.allocate(byteCount: max(perLayer * layers, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(perLayer * layers, 1))
        arena16 = UnsafeMutableRawPointer.allocate(byteCount: max(perLayer * layers, 1) * 2, alignment: 64).bindMemory(to: UInt16.self, capacity: max(perLayer * layers, 1))
        var s = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<(perLayer * layers) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            arena32[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * 0.05
        }
        ek_f32_to_f16(arena32, arena16, Int64(perLayer * layers))
        var offset = 0
        for _ in 0..<layers {
            var l32: [[ek_lora_slot]] = [], l16: [[ek_lora_slot]] = []
            for shape in shapes {
                var p32: [ek_lora_slot] = [], p16: [ek_lora_slot] = []
                for _ in 0..<adapters {
                    let a = offset, bt = offset + padded(rank * shape.in)
                    offset = bt + padded(rank * shape.out)
                    // B itself is not needed when Bᵀ is given (the engine binds Bᵀ for serving).
                    p32.append(ek_lora_slot(a: arena32 + a, b: arena32 + bt, bt: arena32 + bt, rank: Int32(rank), scale: 2,
                                            dtype: Int32(EK_DTYPE_F32), a16: nil, b16: nil, bt16: nil))
                    p16.append(ek_lora_slot(a: nil, b: nil, bt: nil, rank: Int32(rank), scale: 2,
                                            dtype: Int32(EK_DTYPE_F16), a16: arena16 + a, b16: nil, bt16: arena16 + bt))
                }
                l32.append(p32)
                l16.append(p16)
            }
            f32Slots.append(l32)
            f16Slots.append(l16)
        }
    }

    deinit {
        UnsafeMutableRawPointer(arena32).deallocate()
        UnsafeMutableRawPointer(arena16).deallocate()
    }
}
