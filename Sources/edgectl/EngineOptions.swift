import ArgumentParser
import EdgeRuntime
import Foundation
import Kernels

/// Options shared by the local inference commands (`run`, `eval`, `bench generate`).
struct EngineOptions: ParsableArguments {
    @Option(name: .long, help: "Model directory (config.json, model.safetensors, tokenizer.json), as `edgectl model import` writes it.")
    var model: String

    @Option(name: .long, help: ArgumentHelp("A PEFT LoRA directory or adapter artifact, optionally with a mixing weight: PATH[:WEIGHT]. Repeat to combine adapters.", valueName: "PATH[:WEIGHT]"))
    var adapter: [String] = []

    @Option(name: .long, help: "Kernel threads (default: all cores).")
    var threads: Int?

    @Option(name: .long, help: "Context length to allocate (default: the model's max_position_embeddings).")
    var ctx: Int?

    @Option(name: .long, help: "Activation precision: f32 (the accuracy reference) or int8 (fastest: int8 decode products, bf16 prompt products where the CPU has AVX512_BF16).")
    var activations: String?

    @Option(name: .long, help: "KV cache precision: auto (default: f16 where the CPU's attention kernel reads it no slower, i.e. AVX-512; else f32), f32, or f16 (half the bytes).")
    var kv: String?

    /// Parses `PATH[:WEIGHT]`: the part after the last ':' is a weight only if it parses as a number.
    static func parseAdapter(_ spec: String) -> (path: String, weight: Float) {
        if let colon = spec.lastIndex(of: ":"), let w = Float(spec[spec.index(after: colon)...]) {
            return (String(spec[..<colon]), w)
        }
        return (spec, 1)
    }

    func precision(default d: LlamaModel.ActivationPrecision) throws -> LlamaModel.ActivationPrecision {
        guard let activations else { return d }
        guard let p = LlamaModel.ActivationPrecision(rawValue: activations) else {
            throw ValidationError("--activations must be f32 or int8, not '\(activations)'")
        }
        return p
    }

    /// Opens the model and the adapters, sets the thread count.
    func open(defaultPrecision: LlamaModel.ActivationPrecision) throws -> (LocalModel, LlamaModel, AdapterMix) {
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            ek_set_threads(Int32(threads))
        }
        if let ctx, ctx <= 0 { throw ValidationError("--ctx must be positive") }
        let local = try LocalModel(directory: model, contextLength: ctx ?? 0)
        guard let kvPrecision = SequenceCache.Precision.named(kv ?? "auto") else {
            throw ValidationError("--kv must be auto, f32 or f16, not '\(kv ?? "")'")
        }
        let llama = LlamaModel(weights: local.weights, activations: try precision(default: defaultPrecision), kvPrecision: kvPrecision)
        var entries: [(binding: LoRABinding, weight: Float)] = []
        for spec in adapter {
            let (path, weight) = Self.parseAdapter(spec)
            entries.append((try local.loadAdapter(path: path, precision: llama.activations.adapterPrecision), weight))
        }
        return (local, llama, AdapterMix(entries))
    }
}

/// Writes to stderr (progress and diagnostics stay off stdout, which scripts parse).
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
