import Foundation

/// Turns PEFT tensors into a `LoRAAdapter`: maps every key to (layer, projection, A|B), checks
/// partners, ranks, shapes, dtypes and values, then converts all of it into one f32 arena.
///
/// Accepted keys: `[prefix.]layers.N.self_attn.{q,k,v,o}_proj.lora_{A,B}[.ADAPTER].weight` and
/// `[prefix.]layers.N.mlp.{gate,up,down}_proj.lora_{A,B}[.ADAPTER].weight` (PEFT's
/// `save_pretrained` writes prefix `base_model.model.model`). Every other tensor is refused with its
/// key named: embedding LoRA, DoRA magnitudes, LoRA biases, `modules_to_save` copies, full weights.
public enum LoRAAdapterDecoder {
    /// Reads a PEFT directory (`adapter_config.json` + `adapter_model.safetensors`).
    public static func load(directory: String) throws(AdapterError) -> LoRAAdapter {
        let config = try PEFTConfig(contentsOf: (directory as NSString).appendingPathComponent("adapter_config.json"))
        let weightsPath = (directory as NSString).appendingPathComponent("adapter_model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            if FileManager.default.fileExists(atPath: (directory as NSString).appendingPathComponent("adapter_model.bin")) {
                throw .unsupported(path: directory, key: "adapter_model.bin", reason: "pickled PyTorch weights are not read (they can run code); save the adapter with safe_serialization=True")
            }
            throw .io(path: weightsPath, reason: "no such file (a PEFT directory holds adapter_model.safetensors)")
        }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: weightsPath) } catch { throw .safetensors(error) }
        return try decode(config: config, source: SafetensorsTensorSource(file: file), label: directory)
    }

    /// Decodes an in-memory safetensors image with its config (used for hand-packed tars).
    public static func decode(config: PEFTConfig, safetensors: SafetensorsFile, label: String) throws(AdapterError) -> LoRAAdapter {
        try decode(config: config, source: SafetensorsTensorSource(file: safetensors), label: label)
    }

    struct ParsedKey {
        let layer: Int
        let projection: LoRAProjection
        let isA: Bool
        /// Module name in the base model, e.g. `model.layers.0.self_attn.q_proj` (for patterns).
        let module: String
    }

    /// Maps a tensor key to its module, or throws naming the key.
    static func parse(key: String, label: String) throws(AdapterError) -> ParsedKey {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.contains(where: { $0.hasPrefix("lora_embedding_") }) {
            throw .unsupported(path: label, key: key, reason: "embedding LoRA (lora_embedding_A/B) is not applied by the engine; target only the attention and MLP projections")
        }
        if parts.contains("lora_magnitude_vector") {
            throw .unsupported(path: label, key: key, reason: "DoRA magnitude vectors are not supported; train a plain LoRA adapter")
        }
        if parts.contains("modules_to_save") {
            throw .unsupported(path: label, key: key, reason: "modules_to_save copies whole modules; only LoRA weights are supported")
        }
        guard let i = parts.lastIndex(where: { $0 == "lora_A" || $0 == "lora_B" }) else {
            throw .unsupported(path: label, key: key, reason: "not a LoRA tensor (expected …lora_A.weight or …lora_B.weight); full weights and other tuners are not supported")
        }
        let tail = parts[(i + 1)...]
        guard tail.last == "weight", tail.count == 1 || tail.count == 2 else {
            if tail.last == "bias" { throw .unsupported(path: label, key: key, reason: "LoRA bias terms are not applied by the engine") }
            throw .badTensor(path: label, key: key, reason: "expected the key to end in lora_A.weight or lora_B.weight")
        }
        guard i >= 4, parts[i - 4] == "layers", let layer = Int(parts[i - 3]), layer >= 0, layer < 100_000, String(layer) == parts[i - 3] else {
            throw .badTensor(path: label, key: key, reason: "expected '…layers.N.self_attn|mlp.PROJ.lora_A|B.weight' (a Llama decoder projection)")
        }
        guard let projection = LoRAProjection(rawValue: parts[i - 1]) else {
            throw .unsupported(path: label, key: key, reason: "module '\(parts[i - 1])' is not a Llama projection (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")
        }
        guard parts[i - 2] == projection.parent else {
            throw .badTensor(path: label, key: key, reason: "\(projection.rawValue) belongs under '\(projection.parent)', found '\(parts[i - 2])'")
        }
        var moduleParts = Array(parts[..<i])
        if moduleParts.count >= 2, moduleParts[0] == "base_model", moduleParts[1] == "model" { moduleParts.removeFirst(2) }
        return ParsedKey(layer: layer, projection: projection, isA: parts[i] == "lora_A", module: moduleParts.joined(separator: "."))
    }

    static func decode(config: PEFTConfig, source: AdapterTensorSource, label: String) throws(AdapterError) -> LoRAAdapter {
        struct Pair { var a: SafetensorsTensorInfo?; var b: SafetensorsTensorInfo?; var module: String }
        var pairs: [Int: Pair] = [:]  // layer * 7 + ordinal
        let infos = source.tensorInfos.sorted { $0.byteRange.lowerBound < $1.byteRange.lowerBound }
        guard !infos.isEmpty else { throw .noLoRAWeights(path: source.label) }
        for info in infos {
            let parsed = try parse(key: info.name, label: source.label)
            // PEFT makes no module for such a layer, so it would silently drop these weights.
            if let layers = config.layersToTransform, !layers.contains(parsed.layer) {
                throw .badTensor(path: source.label, key: info.name, reason: "is for layer \(parsed.layer), which adapter_config.json's layers_to_transform \(layers.sorted()) leaves out")
            }
            let slot = parsed.layer * 7 + parsed.projection.ordinal
            var pair = pairs[slot] ?? Pair(module: parsed.module)
            if parsed.isA {
                if let other = pair.a { throw .badTensor(path: source.label, key: info.name, reason: "duplicates '\(other.name)' (same layer and projection)") }
                pair.a = info
            } else {
                if let other = pair.b { throw .badTensor(path: source.label, key: info.name, reason: "duplicates '\(other.name)' (same layer and projection)") }
                pair.b = info
            }
            pairs[slot] = pair
        }

        // Shapes first, so nothing is allocated for an adapter that will be refused.
        struct Planned { let a: SafetensorsTensorInfo; let b: SafetensorsTensorInfo; let layer: Int; let projection: LoRAProjection; let rank: Int; let scale: Float }
        var planned: [Planned] = []
        let slots = pairs.keys.sorted()
        let configured = config.rankAndAlpha(forModules: slots.map { pairs[$0]!.module })
        for (index, slot) in slots.enumerated() {
            let pair = pairs[slot]!
            guard let a = pair.a else { throw .missingPartner(path: source.label, key: pair.b!.name, partner: pair.b!.name.replacingOccurrences(of: "lora_B", with: "lora_A")) }
            guard let b = pair.b else { throw .missingPartner(path: source.label, key: a.name, partner: a.name.replacingOccurrences(of: "lora_A", with: "lora_B")) }
            for t in [a, b] {
                guard t.dtype == .f32 || t.dtype == .f16 || t.dtype == .bf16 || t.dtype == .f64 else {
                    throw .badTensor(path: source.label, key: t.name, reason: "dtype \(t.dtype.rawValue) is not a float type (f32, f16 or bf16 expected)")
                }
                guard t.shape.count == 2, t.shape[0] > 0, t.shape[1] > 0 else {
                    throw .badTensor(path: source.label, key: t.name, reason: "shape \(t.shape) is not a non-empty 2-D matrix")
                }
            }
            let rank = a.shape[0]
            guard b.shape[1] == rank else {
                throw .badTensor(path: source.label, key: b.name, reason: "lora_B is [\(b.shape[0]), \(b.shape[1])] but its lora_A '\(a.name)' has rank \(rank); expected [out, \(rank)]")
            }
            let (configRank, alpha) = configured[index]
            guard configRank == rank else {
                throw .badTensor(path: source.label, key: a.name, reason: "has rank \(rank) but adapter_config.json gives r=\(configRank) for module '\(pair.module)' (r / rank_pattern)")
            }
            planned.append(Planned(a: a, b: b, layer: slot / 7, projection: LoRAProjection.allCases[slot % 7], rank: rank, scale: config.scale(rank: rank, alpha: alpha)))
        }

        // One arena; each matrix starts on a 64-byte boundary (16 floats).
        func padded(_ n: Int) -> Int { (n + 15) & ~15 }
        var total = 0
        for p in planned { total += padded(p.a.elementCount) + padded(p.b.elementCount) }
        let arena = UnsafeMutableRawPointer.allocate(byteCount: max(total, 16) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(total, 16))
        var modules: [LoRAModule] = []
        modules.reserveCapacity(planned.count)
        var offset = 0
        for p in planned {
            let aOffset = offset
            offset += padded(p.a.elementCount)
            let bOffset = offset
            offset += padded(p.b.elementCount)
            for (t, at) in [(p.a, aOffset), (p.b, bOffset)] {
                // Padding is zeroed so SIMD kernels may read whole vectors past a row end.
                let padStart = at + t.elementCount, padEnd = at + padded(t.elementCount)
                if padEnd > padStart { (arena + padStart).initialize(repeating: 0, count: padEnd - padStart) }
                guard source.decode(t, into: arena + at) else {
                    arena.deallocate()
                    throw .badTensor(path: source.label, key: t.name, reason: "contains NaN or infinite values")
                }
            }
            modules.append(LoRAModule(layer: p.layer, projection: p.projection, rank: p.rank, inFeatures: p.a.shape[1], outFeatures: p.b.shape[0],
                                      scale: p.scale, aOffset: aOffset, bOffset: bOffset, keyA: p.a.name, keyB: p.b.name))
        }
        if total == 0 { arena.initialize(repeating: 0, count: 16) }
        return LoRAAdapter(modules: modules, storage: arena, floatCount: max(total, 16), config: config, label: label)
    }
}
