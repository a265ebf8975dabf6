import AdapterCache
import Foundation

/// What a training run reports after each optimiser step.
public struct TrainingProgress: Sendable, Equatable, Codable {
    public var step: Int            // 1-based, optimiser steps done
    public var totalSteps: Int
    public var loss: Double         // token-mean train loss of this step
    public var learningRate: Float
    public var gradNorm: Double     // before clipping
    public var tokens: Int          // tokens processed in this step (padded)
    public var seconds: Double      // wall time of this step
}

/// Runs LoRA fine-tuning: the step plan (epochs × batches, gradient accumulation, max steps), the
/// learning-rate schedule, clipping, AdamW, held-out evaluation and checkpoints.
///
/// Deterministic given the hyper-parameters (seeded init and shuffles), so a checkpoint only needs
/// the step count to know where in the data it stopped. Not thread-safe; one run per instance.
public final class LoRAFineTuner: @unchecked Sendable {
    public let hyper: FineTuneHyperparameters
    public let train: TrainingDataset
    public let heldOut: TrainingDataset
    public let padId: Int32
    public let lora: LoRAParameters
    public let optimizer: AdamW
    public let trainer: LoRATrainer
    public private(set) var completedSteps = 0

    public var batchesPerEpoch: Int { (train.examples.count + hyper.batchSize - 1) / hyper.batchSize }
    public var totalSteps: Int {
        let micro = batchesPerEpoch * hyper.epochs
        let steps = (micro + hyper.gradientAccumulation - 1) / hyper.gradientAccumulation
        return min(steps, hyper.maxSteps ?? steps)
    }

    public init(base: TrainingBaseModel, hyper: FineTuneHyperparameters, train: TrainingDataset, heldOut: TrainingDataset,
                padId: Int32, initialAdapter: SafetensorsFile? = nil) throws(TrainingError) {
        try hyper.validate()
        try train.requireAtLeast(hyper.minimumExamples, purpose: "too few rows to learn from")
        try heldOut.requireAtLeast(1, purpose: "the eval gate needs held-out examples")
        self.hyper = hyper
        self.train = train
        self.heldOut = heldOut
        self.padId = padId
        lora = try LoRAParameters(shape: base.shape, rank: hyper.rank, alpha: hyper.alpha, targets: hyper.targets, useRSLoRA: hyper.useRSLoRA)
        if let initialAdapter { try lora.load(from: initialAdapter) } else { lora.initialise(seed: hyper.seed) }
        optimizer = AdamW(parameterCount: lora.parameterCount, beta1: hyper.beta1, beta2: hyper.beta2,
                          epsilon: hyper.epsilon, weightDecay: hyper.weightDecay)
        trainer = try LoRATrainer(base: base, lora: lora)
    }

    /// The micro-batches of optimiser step `step` (0-based).
    func microBatches(ofStep step: Int) throws(TrainingError) -> [TrainingBatch] {
        var out: [TrainingBatch] = []
        let bpe = batchesPerEpoch
        for j in (step * hyper.gradientAccumulation)..<((step + 1) * hyper.gradientAccumulation) {
            let epoch = j / bpe
            guard epoch < hyper.epochs else { break }
            let order = train.order(epoch: epoch, seed: hyper.seed, shuffle: hyper.shuffle)
            let k = j % bpe
            let idx = Array(order[(k * hyper.batchSize)..<min((k + 1) * hyper.batchSize, order.count)])
            out.append(try TrainingBatch(sequences: idx.map { train.examples[$0].sequence }, padId: padId))
        }
        return out
    }

    /// One optimiser step over the given micro-batches; returns the token-mean loss.
    public func step(_ batches: [TrainingBatch], learningRate: Float) throws(TrainingError) -> (loss: Double, gradNorm: Double) {
        let count = batches.reduce(0) { $0 + $1.supervisedCount }
        guard count > 0 else { throw .invalidHyperparameter(name: "batch", reason: "no supervised tokens in this step") }
        lora.grads.zero()
        var sum = 0.0
        for b in batches { sum += try trainer.accumulateGradients(b, gradScale: 1 / Float(count)) }
        let loss = sum / Double(count)
        guard loss.isFinite else { throw .nonFiniteLoss(step: completedSteps + 1) }
        let norm = AdamW.clipGradients(lora.grads, maxNorm: hyper.maxGradNorm)
        optimizer.update(lora.values, gradients: lora.grads, lr: learningRate)
        return (loss, norm)
    }

    /// Runs steps until done. `shouldStop` is polled between optimiser steps and, inside a step,
    /// before every layer of the forward/backward (`LoRATrainer.interruption`), so a preempting
    /// request waits for one layer's work, not a whole step. Returning true ends the run early
    /// without error, with `completedSteps`, the weights and the optimiser as they were after the
    /// last whole step (an interrupted step is redone on resume, giving exactly the uninterrupted
    /// result), so the caller can checkpoint. `onStep` sees every step's progress.
    public func run(checkpointEvery: Int = 0, checkpointPath: String? = nil,
                    shouldStop: () -> Bool = { false }, onStep: (TrainingProgress) -> Void = { _ in }) throws(TrainingError) {
        let total = totalSteps
        while completedSteps < total {
            if shouldStop() { return }
            let start = DispatchTime.now().uptimeNanoseconds
            let batches = try microBatches(ofStep: completedSteps)
            let lr = hyper.learningRate(at: completedSteps, of: total)
            let result: Result<(loss: Double, gradNorm: Double), TrainingError> = withoutActuallyEscaping(shouldStop) { check in
                trainer.interruption = check
                defer { trainer.interruption = nil }
                do throws(TrainingError) { return .success(try step(batches, learningRate: lr)) } catch { return .failure(error) }
            }
            let loss: Double, norm: Double
            switch result {
            case .success(let r): (loss, norm) = r
            case .failure(.interrupted): return
            case .failure(let e): throw e
            }
            completedSteps += 1
            let secs = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            onStep(TrainingProgress(step: completedSteps, totalSteps: total, loss: loss, learningRate: lr, gradNorm: norm,
                                    tokens: batches.reduce(0) { $0 + $1.batchSize * $1.seqLen }, seconds: secs))
            if let checkpointPath, checkpointEvery > 0, completedSteps % checkpointEvery == 0 || completedSteps == total {
                try saveCheckpoint(to: checkpointPath)
            }
        }
    }

    /// Token-mean loss over a dataset (held-out by default), batched like training.
    public func evaluate(_ dataset: TrainingDataset? = nil) throws(TrainingError) -> Double {
        let data = dataset ?? heldOut
        var sum = 0.0, count = 0
        for b in try data.batches(batchSize: hyper.batchSize, padId: padId) {
            let r = try trainer.loss(b)
            sum += r.sum; count += r.count
        }
        guard count > 0 else { throw .datasetTooSmall(file: data.file, usable: 0, minimum: 1, reason: "no supervised tokens") }
        return sum / Double(count)
    }

    // MARK: - Checkpoints

    /// One safetensors file: LoRA values, AdamW moments, and in the metadata the step count and a
    /// fingerprint of the hyper-parameters and data (a checkpoint from another job is refused).
    /// Written to a temporary, fsynced and renamed.
    public func saveCheckpoint(to path: String) throws(TrainingError) {
        var w = SafetensorsWriter(metadata: ["format": "pt", "edge.step": String(completedSteps),
                                             "edge.adam_step": String(optimizer.step), "edge.fingerprint": fingerprint])
        let n = lora.parameterCount
        w.add("lora", shape: [n], floats: lora.values.array)
        w.add("adam.m", shape: [n], floats: optimizer.m.array)
        w.add("adam.v", shape: [n], floats: optimizer.v.array)
        do { try w.write(to: path + ".tmp") } catch {
            unlink(path + ".tmp")  // a torn temporary (disk full) must not keep holding the space
            throw .io(path: path, reason: error.description)
        }
        try TrainingFiles.fsyncAndRename(path + ".tmp", to: path)
    }

    /// Restores a checkpoint written by `saveCheckpoint` for the same job.
    public func loadCheckpoint(from path: String) throws(TrainingError) {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: path) } catch { throw .checkpointInvalid(path: path, reason: error.description) }
        guard file.metadata["edge.fingerprint"] == fingerprint else {
            throw .checkpointInvalid(path: path, reason: "it belongs to a job with other data or hyper-parameters")
        }
        guard let step = file.metadata["edge.step"].flatMap(Int.init), let adamStep = file.metadata["edge.adam_step"].flatMap(Int64.init),
              step >= 0, step <= totalSteps else {
            throw .checkpointInvalid(path: path, reason: "the step count is missing or out of range")
        }
        do {
            let values = try file.floats("lora"), m = try file.floats("adam.m"), v = try file.floats("adam.v")
            guard values.count == lora.parameterCount else {
                throw TrainingError.checkpointInvalid(path: path, reason: "it holds \(values.count) parameters, the job has \(lora.parameterCount)")
            }
            try optimizer.restore(m: m, v: v, step: adamStep)
            values.withUnsafeBufferPointer { lora.values.pointer.update(from: $0.baseAddress!, count: values.count) }
        } catch let e as TrainingError { throw e } catch {
            throw .checkpointInvalid(path: path, reason: "\(error)")
        }
        completedSteps = step
    }

    /// Identifies the job a checkpoint belongs to: hyper-parameters and the training token ids.
    var fingerprint: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ x: UInt64) { h = (h ^ x) &* 0x0000_0100_0000_01B3 }
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]  // key order must not vary between runs
        if let data = try? enc.encode(hyper) { for b in data { mix(UInt64(b)) } }
        for e in train.examples {
            for id in e.promptIds { mix(UInt64(UInt32(bitPattern: id))) }
            mix(0xFFFF_FFFF)
            for id in e.answerIds { mix(UInt64(UInt32(bitPattern: id))) }
        }
        return String(h, radix: 16)
    }
}
