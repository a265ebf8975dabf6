import Foundation

/// Fixture adapter `a` (`../shared/fixtures/adapters/a`, made with PEFT 0.21.2 on torch 2.15) rebuilt
/// byte for byte instead of tracked in git (9.8 MB of f32 weights). Its maker ran `torch.manual_seed(1)`,
/// `get_peft_model` with r=8 on all seven projections and `init_lora_weights=False` — so every
/// `lora_A` and `lora_B` is nn.Linear's default init, kaiming-uniform from torch's CPU mt19937 in
/// module order — and then scaled every `lora_B` by 0.3. This replays that stream and writes the
/// tensors as the safetensors library does; `sha256` is the original file's, which the tests check.
public enum FixtureAdapterA {
    /// SHA-256 of the original `adapter_model.safetensors`.
    public static let sha256 = "9739737eba829bd161c8eecbf37889bf868d842cef48f19e98a5155d601b3ff2"

    /// The fixture directory, made once per process in the temp dir: the tracked
    /// `Tests/Fixtures/adapters/a/adapter_config.json` beside the rebuilt safetensors file.
    public static func directory() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let made { return made }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edge-fixture-adapter-a-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/adapters/a/adapter_config.json")
        try FileManager.default.copyItem(atPath: config.path, toPath: dir + "/adapter_config.json")
        try safetensors().write(to: URL(fileURLWithPath: dir + "/adapter_model.safetensors"))
        made = dir
        return dir
    }

    nonisolated(unsafe) private static var made: String?
    private static let lock = NSLock()

    /// SmolLM2-135M's projections in PEFT's module order: (parent, name, out, in).
    static let projections: [(String, String, Int, Int)] = [
        ("self_attn", "q_proj", 576, 576), ("self_attn", "k_proj", 192, 576), ("self_attn", "v_proj", 192, 576),
        ("self_attn", "o_proj", 576, 576), ("mlp", "gate_proj", 1536, 576), ("mlp", "up_proj", 1536, 576),
        ("mlp", "down_proj", 576, 1536),
    ]

    /// The file's bytes.
    public static func safetensors() -> Data {
        let rank = 8
        var rng = MT19937(seed: 1)
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for layer in 0..<30 {
            for (parent, name, out, inp) in projections {
                let key = "base_model.model.model.layers.\(layer).\(parent).\(name)"
                // nn.Linear(in, r) for lora_A, then nn.Linear(r, out) for lora_B, each kaiming-uniform over its fan-in.
                tensors[key + ".lora_A.weight"] = ([rank, inp], kaimingUniform(count: rank * inp, fanIn: inp, &rng))
                let b = kaimingUniform(count: out * rank, fanIn: rank, &rng)
                tensors[key + ".lora_B.weight"] = ([out, rank], b.map { $0 * Float(0.3) })
            }
        }
        return write(tensors, metadata: ["format": "pt"])
    }

    /// torch.nn.init.kaiming_uniform_(a=√5) on CPU: bound = √3 · gain / √fan_in in double; each value
    /// from the low 24 bits of one mt19937 output, x · (to − from) + from in float with one rounding.
    static func kaimingUniform(count: Int, fanIn: Int, _ rng: inout MT19937) -> [Float] {
        let a = 5.0.squareRoot()
        let gain = (2.0 / (1 + a * a)).squareRoot()
        let bound = 3.0.squareRoot() * (gain / Double(fanIn).squareRoot())
        let to = Float(bound), from = Float(-bound)
        return (0..<count).map { _ in
            let x = Float(rng.next() & 0xFF_FFFF) * (1 / Float(1 << 24))
            return from.addingProduct(x, to - from)
        }
    }

    /// The safetensors library's layout: an 8-byte little-endian header length, compact JSON with the
    /// keys sorted (`__metadata__` first) padded with spaces to 8 bytes, then the tensors in key order.
    static func write(_ tensors: [String: (shape: [Int], values: [Float])], metadata: [String: String]) -> Data {
        let keys = tensors.keys.sorted()
        var entries = ["\"__metadata__\":{" + metadata.keys.sorted().map { "\"\($0)\":\"\(metadata[$0]!)\"" }.joined(separator: ",") + "}"]
        var offset = 0
        for key in keys {
            let t = tensors[key]!, bytes = t.values.count * 4
            entries.append("\"\(key)\":{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var data = Data(capacity: 8 + header.count + offset)
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for key in keys {
            tensors[key]!.values.withUnsafeBufferPointer { data.append(UnsafeBufferPointer(start: UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: UInt8.self), count: $0.count * 4)) }
        }
        return data
    }
}

/// The 32-bit Mersenne Twister as torch's CPU generator runs it (`init_genrand` seeding).
struct MT19937 {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 { state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i) }
    }

    mutating func next() -> UInt32 {
        if index >= 624 {
            for i in 0..<624 {
                let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
                state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_B0DF)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }
}
