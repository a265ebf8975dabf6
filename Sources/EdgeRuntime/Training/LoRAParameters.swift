import AdapterCache
import Foundation

/// The trainable LoRA tensors of every adapted projection, stored in one flat f32 array (and the
/// gradient and AdamW moments in parallel arrays of the same layout), so the optimiser, gradient
/// clipping and checkpointing are single passes over contiguous memory.
///
/// Per adapted projection (layer, target): A [rank, in] (PEFT lora_A.weight) then B [out, rank]
/// (lora_B.weight). delta(x) = scaling · B·(A·x), scaling = alpha/rank (alpha/√rank with rsLoRA).
/// Not thread-safe: owned by one trainer.
public final class LoRAParameters: @unchecked Sendable {
    public struct Entry: Sendable, Equatable {
        public let layer: Int
        public let target: LoRATarget
        public let inFeatures: Int
        public let outFeatures: Int
        public let aOffset: Int
        public let bOffset: Int
        /// PEFT key stem, e.g. "base_model.model.model.layers.3.self_attn.q_proj"
        public var keyStem: String { "base_model.model.model.layers.\(layer).\(target.modulePath)" }
    }

    public let rank: Int
    public let alpha: Float
    public let useRSLoRA: Bool
    public let targets: [LoRATarget]
    public let entries: [Entry]
    public let values: TrainBuffer
    public let grads: TrainBuffer
    public var scaling: Float { useRSLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
    public var parameterCount: Int { values.count }

    /// Lookup: entryIndex[layer][target]
    let entryIndex: [[LoRATarget: Int]]

    public init(shape: TrainingModelShape, rank: Int, alpha: Float, targets: [LoRATarget],
                useRSLoRA: Bool = false) throws(TrainingError) {
        guard rank >= 1, rank <= 256 else { throw .invalidHyperparameter(name: "rank", reason: "\(rank) is outside 1…256") }
        guard alpha > 0, alpha.isFinite else { throw .invalidHyperparameter(name: "alpha", reason: "\(alpha) must be positive") }
        guard !targets.isEmpty else { throw .invalidHyperparameter(name: "targets", reason: "no projection selected") }
        let ordered = LoRATarget.allCases.filter { targets.contains($0) }
        var entries: [Entry] = []
        var index: [[LoRATarget: Int]] = []
        var offset = 0
        for layer in 0..<shape.layers {
            var row: [LoRATarget: Int] = [:]
            for t in ordered {
                let d = shape.dims(of: t)
                let e = Entry(layer: layer, target: t, inFeatures: d.in, outFeatures: d.out,
                              aOffset: offset, bOffset: offset + rank * d.in)
                offset += rank * d.in + d.out * rank
                row[t] = entries.count
                entries.append(e)
            }
            index.append(row)
        }
        self.rank = rank
        self.alpha = alpha
        self.useRSLoRA = useRSLoRA
        self.targets = ordered
        self.entries = entries
        self.entryIndex = index
        self.values = TrainBuffer(count: offset)
        self.grads = TrainBuffer(count: offset)
    }

    public func entry(layer: Int, target: LoRATarget) -> Entry? {
        guard layer < entryIndex.count, let i = entryIndex[layer][target] else { return nil }
        return entries[i]
    }

    /// PEFT's default initialisation: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0.
    public func initialise(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        values.zero()
        for e in entries {
            let bound = 1 / Float(e.inFeatures).squareRoot()
            for i in 0..<(rank * e.inFeatures) { values[e.aOffset + i] = rng.uniform(-bound, bound) }
        }
    }

    /// Loads A/B from a safetensors file with PEFT keys (`….lora_A.weight`, or the in-memory
    /// `….lora_A.default.weight`). Every adapted tensor must be present with the right shape.
    public func load(from file: SafetensorsFile) throws(TrainingError) {
        for e in entries {
            for (which, offset, shape) in [("lora_A", e.aOffset, [rank, e.inFeatures]), ("lora_B", e.bOffset, [e.outFeatures, rank])] {
                let names = ["\(e.keyStem).\(which).weight", "\(e.keyStem).\(which).default.weight"]
                guard let name = names.first(where: { file.tensors[$0] != nil }), let info = file.tensors[name] else {
                    throw .missingTensor(file: file.path, key: names[0])
                }
                guard info.shape == shape else { throw .shapeMismatch(what: "\(file.path): \(name)", expected: shape, found: info.shape) }
                let floats: [Float]
                do { floats = try file.floats(name) } catch { throw .io(path: file.path, reason: error.description) }
                floats.withUnsafeBufferPointer { src in
                    (values.pointer + offset).update(from: src.baseAddress!, count: floats.count)
                }
            }
        }
    }

    /// Tensors keyed by PEFT names (without ".default"), each as (shape, values) — from `values`
    /// or, with `gradients: true`, from `grads`.
    public func tensors(gradients: Bool = false) -> [(name: String, shape: [Int], values: [Float])] {
        let src = gradients ? grads : values
        var out: [(String, [Int], [Float])] = []
        for e in entries {
            let a = Array(UnsafeBufferPointer(start: src.pointer + e.aOffset, count: rank * e.inFeatures))
            let b = Array(UnsafeBufferPointer(start: src.pointer + e.bOffset, count: e.outFeatures * rank))
            out.append(("\(e.keyStem).lora_A.weight", [rank, e.inFeatures], a))
            out.append(("\(e.keyStem).lora_B.weight", [e.outFeatures, rank], b))
        }
        return out
    }

    /// Writes a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) that
    /// `PeftModel.from_pretrained` loads. Files are written to temporaries, fsynced and renamed.
    public func savePEFT(to directory: String, baseModelName: String, extraMetadata: [String: String] = [:]) throws(TrainingError) {
        let fm = FileManager.default
        do { try fm.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .io(path: directory, reason: "cannot create directory: \(error.localizedDescription)")
        }
        var writer = SafetensorsWriter(metadata: ["format": "pt"].merging(extraMetadata) { a, _ in a })
        for t in tensors() { writer.add(t.name, shape: t.shape, floats: t.values) }
        let weightsPath = directory + "/adapter_model.safetensors"
        do { try writer.write(to: weightsPath + ".tmp") } catch { throw .io(path: weightsPath, reason: error.description) }
        try TrainingFiles.fsyncAndRename(weightsPath + ".tmp", to: weightsPath)
        let config = PEFTAdapterConfig(
            baseModelName: baseModelName, rank: rank, alpha: alpha, targets: targets.map(\.rawValue), useRSLoRA: useRSLoRA)
        try TrainingFiles.write(config.json(), to: directory + "/adapter_config.json")
    }
}

/// The subset of PEFT's LoraConfig this runtime writes (and reads back); key names as PEFT's.
public struct PEFTAdapterConfig: Codable, Equatable, Sendable {
    public var baseModelName: String
    public var rank: Int
    public var alpha: Float
    public var targets: [String]
    public var useRSLoRA: Bool

    enum CodingKeys: String, CodingKey {
        case baseModelName = "base_model_name_or_path", rank = "r", alpha = "lora_alpha"
        case targets = "target_modules", useRSLoRA = "use_rslora"
    }

    public init(baseModelName: String, rank: Int, alpha: Float, targets: [String], useRSLoRA: Bool) {
        self.baseModelName = baseModelName; self.rank = rank; self.alpha = alpha; self.targets = targets; self.useRSLoRA = useRSLoRA
    }

    func json() -> Data {
        let alphaJSON = alpha == alpha.rounded() ? String(Int(alpha)) : String(alpha)
        let targetsJSON = targets.map { "\"\($0)\"" }.joined(separator: ", ")
        let name = baseModelName.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let text = """
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": "\(name)",
          "bias": "none",
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "lora_alpha": \(alphaJSON),
          "lora_dropout": 0.0,
          "modules_to_save": null,
          "peft_type": "LORA",
          "r": \(rank),
          "rank_pattern": {},
          "revision": null,
          "target_modules": [\(targetsJSON)],
          "task_type": "CAUSAL_LM",
          "use_dora": false,
          "use_rslora": \(useRSLoRA)
        }

        """
        return Data(text.utf8)
    }
}
