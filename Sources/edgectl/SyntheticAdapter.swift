import AdapterCache
import EdgeRuntime
import Foundation

/// Writes PEFT directories for benchmarks: a synthetic Llama adapter with trained-looking value
/// ranges (A ~ U(±1/√in), B ~ N(0, 0.02)) in f16, and an f16 copy of a real adapter.
enum SyntheticAdapter {
    /// A random rank-`rank` PEFT adapter on `projections` (default: all seven) of every layer.
    static func write(to dir: String, layers: Int, hidden: Int, intermediate: Int, kvDim: Int, rank: Int, seed: UInt64, qDim: Int? = nil,
                      projections: [LlamaProjection] = LlamaProjection.allCases) throws {
        let qDim = qDim ?? hidden
        try AtomicFile.makeDirectory(dir)
        var rng = SplitMix(state: seed)
        var writer = SafetensorsWriter()
        let shapes: [(LlamaProjection, Int, Int)] = [  // projection, out, in
            (.q, qDim, hidden), (.k, kvDim, hidden), (.v, kvDim, hidden), (.o, hidden, qDim),
            (.gate, intermediate, hidden), (.up, intermediate, hidden), (.down, hidden, intermediate),
        ]
        for l in 0..<layers {
            for (p, out, inp) in shapes where projections.contains(p) {
                let prefix = "base_model.model.model.layers.\(l).\(p.rawValue)"
                let bound = 1 / Float(inp).squareRoot()
                let a = (0..<(rank * inp)).map { _ in Float16((rng.unit() * 2 - 1) * bound).bitPattern }
                let b = (0..<(out * rank)).map { _ in Float16(rng.gaussian() * 0.02).bitPattern }
                writer.add("\(prefix).lora_A.weight", dtype: .f16, shape: [rank, inp], bytes: a.withUnsafeBytes { Data($0) })
                writer.add("\(prefix).lora_B.weight", dtype: .f16, shape: [out, rank], bytes: b.withUnsafeBytes { Data($0) })
            }
        }
        try writer.write(to: dir + "/adapter_model.safetensors")
        let config = """
        {"peft_type": "LORA", "r": \(rank), "lora_alpha": \(2 * rank), "use_rslora": false, "rank_pattern": {}, "alpha_pattern": {},
         "target_modules": [\(projections.map { "\"\($0.moduleName)\"" }.joined(separator: ", "))], "bias": "none",
         "modules_to_save": null, "task_type": "CAUSAL_LM", "base_model_name_or_path": "synthetic-1b"}
        """
        try config.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
    }

    /// `count` random rank-`rank` adapters on all seven projections of `model`, bound in memory (no
    /// files) at the precision the model's mode serves adapters in, one mix each: what `count`
    /// daemon streams with distinct adapters run with.
    static func mixes(count: Int, rank: Int, model: LlamaModel) throws -> [AdapterMix] {
        let hp = model.hyperparameters
        return try (0..<count).map { i in
            var rng = SplitMix(state: UInt64(2000 + i))
            var pairs: [LoRABinding.Pair] = []
            for layer in 0..<hp.layerCount {
                for p in LlamaProjection.allCases {
                    let (out, inp) = p.shape(hp)
                    let bound = 1 / Float(inp).squareRoot()
                    pairs.append(LoRABinding.Pair(key: "layers.\(layer).\(p.moduleName)", layer: layer, projection: p, rank: rank, scale: 2,
                                                  a: (0..<(rank * inp)).map { _ in (rng.unit() * 2 - 1) * bound },
                                                  b: (0..<(out * rank)).map { _ in rng.gaussian() * 0.02 }))
                }
            }
            let binding = try LoRABinding(name: "synthetic-\(i)", pairs: pairs, hyperparameters: hp, precision: model.activations.adapterPrecision)
            return AdapterMix([(binding, 1)])
        }
    }

    /// Copies a PEFT directory with every float tensor rounded to f16.
    static func convertToF16(from src: String, to dir: String) throws {
        try AtomicFile.makeDirectory(dir)
        let file = try SafetensorsFile(path: src + "/adapter_model.safetensors")
        var writer = SafetensorsWriter(metadata: file.metadata)
        for name in file.namesInFileOrder {
            let info = try file.info(name)
            let halves = try file.floats(name).map { Float16($0).bitPattern }
            writer.add(name, dtype: .f16, shape: info.shape, bytes: halves.withUnsafeBytes { Data($0) })
        }
        try writer.write(to: dir + "/adapter_model.safetensors")
        try FileManager.default.copyItem(atPath: src + "/adapter_config.json", toPath: dir + "/adapter_config.json")
    }
}

/// Deterministic generator for synthetic weights.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func gaussian() -> Float {
        let u1 = max(unit(), 1e-7), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
