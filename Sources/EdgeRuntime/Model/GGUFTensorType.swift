/// ggml tensor types as GGUF stores them (the `ggml_type` ids). Every type's block geometry is known
/// so that any file's layout can be validated; only some types can be dequantised (`isSupported`).
public struct GGUFTensorType: Sendable, Equatable, CustomStringConvertible {
    public let id: UInt32
    public let name: String
    /// Elements per block and bytes per block.
    public let blockSize: Int
    public let typeSize: Int

    public var description: String { name }

    /// The types the importer dequantises to f32.
    public var isSupported: Bool { Self.supported.contains(id) }

    public static let f32 = GGUFTensorType(id: 0, name: "F32", blockSize: 1, typeSize: 4)
    public static let f16 = GGUFTensorType(id: 1, name: "F16", blockSize: 1, typeSize: 2)
    /// {f16 d; u8 qs[16]}: x = (nibble - 8) * d, low nibbles are elements 0..15, high 16..31.
    public static let q4_0 = GGUFTensorType(id: 2, name: "Q4_0", blockSize: 32, typeSize: 18)
    /// {f16 d; f16 m; u8 qs[16]}: x = nibble * d + m.
    public static let q4_1 = GGUFTensorType(id: 3, name: "Q4_1", blockSize: 32, typeSize: 20)
    /// {f16 d; i8 qs[32]}: x = q * d.
    public static let q8_0 = GGUFTensorType(id: 8, name: "Q8_0", blockSize: 32, typeSize: 34)
    /// {f16 d; f16 dmin; u8 scales[12] (8 × 6-bit scale + 8 × 6-bit min); u8 qs[128]}.
    public static let q4_K = GGUFTensorType(id: 12, name: "Q4_K", blockSize: 256, typeSize: 144)
    /// {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 6-bit quants, one scale per 16 elements.
    public static let q6_K = GGUFTensorType(id: 14, name: "Q6_K", blockSize: 256, typeSize: 210)
    public static let bf16 = GGUFTensorType(id: 30, name: "BF16", blockSize: 1, typeSize: 2)

    private static let supported: Set<UInt32> = [0, 1, 2, 3, 8, 12, 14, 30]

    private static let all: [GGUFTensorType] = [
        .f32, .f16, .q4_0, .q4_1,
        GGUFTensorType(id: 6, name: "Q5_0", blockSize: 32, typeSize: 22),
        GGUFTensorType(id: 7, name: "Q5_1", blockSize: 32, typeSize: 24),
        .q8_0,
        GGUFTensorType(id: 9, name: "Q8_1", blockSize: 32, typeSize: 36),
        GGUFTensorType(id: 10, name: "Q2_K", blockSize: 256, typeSize: 84),
        GGUFTensorType(id: 11, name: "Q3_K", blockSize: 256, typeSize: 110),
        .q4_K,
        GGUFTensorType(id: 13, name: "Q5_K", blockSize: 256, typeSize: 176),
        .q6_K,
        GGUFTensorType(id: 15, name: "Q8_K", blockSize: 256, typeSize: 292),
        GGUFTensorType(id: 16, name: "IQ2_XXS", blockSize: 256, typeSize: 66),
        GGUFTensorType(id: 17, name: "IQ2_XS", blockSize: 256, typeSize: 74),
        GGUFTensorType(id: 18, name: "IQ3_XXS", blockSize: 256, typeSize: 98),
        GGUFTensorType(id: 19, name: "IQ1_S", blockSize: 256, typeSize: 50),
        GGUFTensorType(id: 20, name: "IQ4_NL", blockSize: 32, typeSize: 18),
        GGUFTensorType(id: 21, name: "IQ3_S", blockSize: 256, typeSize: 110),
        GGUFTensorType(id: 22, name: "IQ2_S", blockSize: 256, typeSize: 82),
        GGUFTensorType(id: 23, name: "IQ4_XS", blockSize: 256, typeSize: 136),
        GGUFTensorType(id: 24, name: "I8", blockSize: 1, typeSize: 1),
        GGUFTensorType(id: 25, name: "I16", blockSize: 1, typeSize: 2),
        GGUFTensorType(id: 26, name: "I32", blockSize: 1, typeSize: 4),
        GGUFTensorType(id: 27, name: "I64", blockSize: 1, typeSize: 8),
        GGUFTensorType(id: 28, name: "F64", blockSize: 1, typeSize: 8),
        GGUFTensorType(id: 29, name: "IQ1_M", blockSize: 256, typeSize: 56),
        .bf16,
        GGUFTensorType(id: 34, name: "TQ1_0", blockSize: 256, typeSize: 54),
        GGUFTensorType(id: 35, name: "TQ2_0", blockSize: 256, typeSize: 66),
        GGUFTensorType(id: 39, name: "MXFP4", blockSize: 32, typeSize: 17),
    ]

    private static let byID: [UInt32: GGUFTensorType] = Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) })

    /// The type with ggml id `id`, or nil for ids this reader does not know.
    public static func known(_ id: UInt32) -> GGUFTensorType? { byID[id] }
}
