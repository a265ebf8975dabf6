import Kernels

/// The three storage forms of a kernel LoRA slot, so callers name only the pointers of their dtype
/// (the C struct's memberwise init wants every field of every form).
extension ek_lora_slot {
    /// f32 `A` `[rank, in]` and `B` `[out, rank]` (training's form; `bt` optional, see edge_kernels.h).
    static func f32(a: UnsafePointer<Float>?, b: UnsafePointer<Float>?, bt: UnsafePointer<Float>? = nil, rank: Int, scale: Float) -> ek_lora_slot {
        var s = ek_lora_slot()
        s.a = a; s.b = b; s.bt = bt
        s.rank = Int32(rank); s.scale = scale; s.dtype = Int32(EK_DTYPE_F32)
        return s
    }

    /// Half `A` `[rank, in]` and `Bᵀ` `[rank, out]` bit patterns.
    static func f16(a: UnsafePointer<UInt16>?, bt: UnsafePointer<UInt16>?, rank: Int, scale: Float) -> ek_lora_slot {
        var s = ek_lora_slot()
        s.a16 = a; s.bt16 = bt
        s.rank = Int32(rank); s.scale = scale; s.dtype = Int32(EK_DTYPE_F16)
        return s
    }

    /// int8 `A` rows (`ek_q8_row_stride(in)` apart) and `Bᵀ` in rank quads, each row times its f32
    /// scale (edge_kernels.h, EK_DTYPE_I8).
    static func int8(a: UnsafePointer<Int8>?, aScales: UnsafePointer<Float>?, bt: UnsafePointer<Int8>?, btScales: UnsafePointer<Float>?,
                     rank: Int, inFeatures: Int, scale: Float) -> ek_lora_slot {
        var s = ek_lora_slot()
        s.a8 = a; s.a8_scale = aScales; s.bt8 = bt; s.bt8_scale = btScales
        s.a8_ld = ek_q8_row_stride(Int64(inFeatures))
        s.rank = Int32(rank); s.scale = scale; s.dtype = Int32(EK_DTYPE_I8)
        return s
    }
}
