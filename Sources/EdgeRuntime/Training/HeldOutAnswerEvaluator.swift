import Foundation

/// Greedy answers of a LoRA being trained, on held-out prompts, through the inference engine (KV
/// cache, f32 activations) instead of the trainer's full-sequence forward: a 40-token answer costs
/// one prefill and 40 single-token steps rather than 40 forwards of the whole sequence. The LoRA's
/// current in-memory values are bound directly; nothing is written to disk.
///
/// Not thread-safe: one owner (the training thread of a job, or `edgectl finetune`).
public final class HeldOutAnswerEvaluator {
    public let model: LocalModel
    let llama: LlamaModel

    /// Opens the model directory the trainer uses (the weights are mapped, shared with the page cache).
    public init(modelDirectory: String) throws {
        model = try LocalModel(directory: modelDirectory)
        llama = LlamaModel(weights: model.weights, activations: .f32)
    }

    /// The LoRA's values as an engine binding (copied; later training steps do not change it).
    func binding(_ lora: LoRAParameters) throws -> LoRABinding {
        let v = lora.values.pointer
        let pairs: [LoRABinding.Pair] = try lora.entries.map { e in
            guard let p = LlamaProjection(moduleName: e.target.rawValue) else {
                throw TrainingError.modelUnsupported(reason: "the engine has no projection \(e.target.rawValue)")
            }
            return LoRABinding.Pair(key: e.keyStem, layer: e.layer, projection: p, rank: lora.rank, scale: lora.scaling,
                                    a: Array(UnsafeBufferPointer(start: v + e.aOffset, count: lora.rank * e.inFeatures)),
                                    b: Array(UnsafeBufferPointer(start: v + e.bOffset, count: e.outFeatures * lora.rank)))
        }
        return try LoRABinding(name: "training", pairs: pairs, hyperparameters: model.hyperparameters)
    }

    /// Greedy-decodes an answer for each example's prompt (at most its reference length + `slack`
    /// tokens, stopping at an end-of-generation token) and scores it against the reference.
    /// `interruption` is polled between tokens; true abandons with `TrainingError.interrupted`.
    public func score(lora: LoRAParameters?, examples: [TrainingExample], slack: Int = 16,
                      interruption: (() -> Bool)? = nil) throws -> (score: AnswerScore, answers: [String]) {
        let mix = try lora.map { AdapterMix([(binding: try binding($0), weight: 1)]) } ?? .none
        let stop = model.endOfGeneration
        var score = AnswerScore()
        var answers: [String] = []
        for ex in examples {
            if interruption?() == true { throw TrainingError.interrupted }
            let budget = ex.answerIds.count + slack
            let runner = SequenceRunner(model: llama, adapters: mix, capacity: ex.promptIds.count + budget + 1)
            var logits = try runner.feed(ex.promptIds)
            var out: [Int32] = []
            while out.count < budget {
                let next = Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) })
                if stop.contains(next) { break }
                out.append(next)
                if interruption?() == true { throw TrainingError.interrupted }
                logits = try runner.feed([next])
            }
            let answer = model.tokenizer.decode(out, skipSpecial: true)
            let reference = model.tokenizer.decode(ex.answerIds.filter { !stop.contains($0) }, skipSpecial: true)
            score.add(answer: answer, reference: reference)
            answers.append(answer)
        }
        return (score, answers)
    }
}
