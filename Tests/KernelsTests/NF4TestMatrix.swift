import Kernels

/// Deterministic pseudo-random numbers (SplitMix64), so every failure reproduces.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func signed() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func floats(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in signed() * scale } }
}

/// An NF4 matrix in the bitsandbytes layout with random codes and absmax (plain or double-quantised),
/// owning its buffers; `matrix` points into them and is valid while this object lives.
final class NF4TestMatrix {
    let rows: Int, cols: Int, blocksize: Int
    let packed: UnsafeMutableBufferPointer<UInt8>
    let absmax: UnsafeMutableBufferPointer<Float>?
    let q8: UnsafeMutableBufferPointer<UInt8>?
    let nested: UnsafeMutableBufferPointer<Float>?
    let map: UnsafeMutableBufferPointer<Float>?
    let offset: Float
    let nestedBlocksize: Int
    var blocks: Int { (rows * cols + blocksize - 1) / blocksize }

    init(rows: Int, cols: Int, blocksize: Int = 64, doubleQuant: Bool = false, nestedBlocksize: Int = 256, seed: UInt64) {
        self.rows = rows
        self.nestedBlocksize = nestedBlocksize
        self.cols = cols
        self.blocksize = blocksize
        var rng = SplitMix(seed: seed)
        let bytes = (rows * cols + 1) / 2
        packed = .allocate(capacity: bytes)
        for i in 0..<bytes { packed[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let nb = (rows * cols + blocksize - 1) / blocksize
        if doubleQuant {
            absmax = nil
            let q = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: nb)
            for i in 0..<nb { q[i] = UInt8(truncatingIfNeeded: rng.next()) }
            let nn = (nb + nestedBlocksize - 1) / nestedBlocksize
            let ne = UnsafeMutableBufferPointer<Float>.allocate(capacity: nn)
            for i in 0..<nn { ne[i] = 0.01 + 0.02 * rng.unit() }
            let m = UnsafeMutableBufferPointer<Float>.allocate(capacity: 256)
            withUnsafeBytes(of: ek_dynamic_map_bits) { raw in
                for i in 0..<256 { m[i] = Float(bitPattern: raw.load(fromByteOffset: 4 * i, as: UInt32.self)) }
            }
            q8 = q; nested = ne; map = m
            offset = 0.03
        } else {
            let a = UnsafeMutableBufferPointer<Float>.allocate(capacity: nb)
            for i in 0..<nb { a[i] = 0.005 + 0.05 * rng.unit() }
            absmax = a; q8 = nil; nested = nil; map = nil
            offset = 0
        }
    }

    deinit {
        packed.deallocate(); absmax?.deallocate(); q8?.deallocate(); nested?.deallocate(); map?.deallocate()
    }

    var matrix: ek_nf4_matrix {
        ek_nf4_matrix(
            packed: UnsafePointer(packed.baseAddress), absmax_f32: absmax.map { UnsafePointer($0.baseAddress) } ?? nil,
            absmax_q8: q8.map { UnsafePointer($0.baseAddress) } ?? nil,
            nested_absmax: nested.map { UnsafePointer($0.baseAddress) } ?? nil,
            dq_map: map.map { UnsafePointer($0.baseAddress) } ?? nil, offset: offset,
            rows: Int64(rows), cols: Int64(cols), blocksize: Int32(blocksize),
            nested_blocksize: Int32(nestedBlocksize))
    }

    static let codes: [Float] = withUnsafeBytes(of: ek_nf4_code_bits) { raw in
        (0..<16).map { Float(bitPattern: raw.load(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }

    /// Absmax of block b, decoded in fp32 in the order NF4.md fixes.
    func absmaxValue(_ b: Int) -> Float {
        if let absmax { return absmax[b] }
        let m = map![Int(q8![b])] * nested![b / nestedBlocksize]
        return m + offset
    }

    /// W[r, c] exactly as bitsandbytes dequantises it (one fp32 multiply), widened to Double.
    func weight(_ r: Int, _ c: Int) -> Double {
        let e = r * cols + c
        let byte = packed[e / 2]
        let code = e % 2 == 0 ? Int(byte >> 4) : Int(byte & 15)
        return Double(NF4TestMatrix.codes[code] * absmaxValue(e / blocksize))
    }

    /// Dense [rows, cols] row-major in Double.
    func dense() -> [Double] {
        var w = [Double](repeating: 0, count: rows * cols)
        for r in 0..<rows { for c in 0..<cols { w[r * cols + c] = weight(r, c) } }
        return w
    }
}

/// Runs body with each kernel variant this CPU supports, restoring the original one afterwards.
/// Unsupported variants are printed as NOT TESTED (they are never counted as passing).
func forEachVariant(_ names: [String] = ["scalar", "avx2", "avx512", "neon"], _ body: (String) throws -> Void) rethrows -> [String] {
    let original = String(cString: ek_variant_name())
    defer { _ = ek_set_variant(original) }
    var tested: [String] = []
    for name in names {
        guard ek_variant_supported(name) == 1 else {
            print("KernelsTests: variant \(name) NOT TESTED on this CPU (not supported); scripts/check-neon covers the aarch64 build")
            continue
        }
        precondition(ek_set_variant(name) == Int32(EK_OK))
        try body(name)
        tested.append(name)
    }
    return tested
}
