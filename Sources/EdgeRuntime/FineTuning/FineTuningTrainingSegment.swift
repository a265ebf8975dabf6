import AdapterCache
import Foundation

/// One stretch of training of one job, run on the dedicated low-priority thread: loads the base,
/// rebuilds the datasets from the job's files (deterministic, so a checkpoint's step count locates
/// the data position), resumes from the checkpoint, trains until done / preempted / cancelled, and
/// on completion evaluates and applies the eval gate. Blocking; never called on the actor.
struct FineTuningTrainingSegment: Sendable {
    enum Outcome: Sendable {
        /// Stopped between steps for inference (or shutdown); the checkpoint holds `step`.
        case paused(step: Int, total: Int, baseline: Double?, tokens: Int)
        case cancelled(step: Int, tokens: Int)
        /// Trained and evaluated; `promotedDirectory` is the PEFT dir of the new version when it passed.
        case finished(total: Int, baseline: Double, heldOut: Double, verdict: EvalGate.Verdict, tokens: Int)
        case failed(String)
    }

    let record: FineTuningJobRecord
    let files: FineTuningJobFiles
    let modelDirectory: String
    /// PEFT dir of the newest promoted version of this adapter (the gate's baseline), if any.
    let previousVersionDirectory: String?
    let gate: EvalGate
    let checkpointEvery: Int
    let events: FineTuningEventLog
    let control: FineTuningTrainingControl
    let inferenceBusy: @Sendable () -> Bool

    func run() -> Outcome {
        do { return try train() } catch { return .failed("\(error)") }
    }

    private func read(_ path: String) throws -> Data {
        guard let d = FileManager.default.contents(atPath: path) else { throw FineTuningError.io(path: path, reason: "missing or unreadable") }
        return d
    }

    private func train() throws -> Outcome {
        let id = record.job.id
        let hyper = record.hyper
        let base = try TrainingModelLoader.load(directory: modelDirectory)
        let formatter = try ChatTemplatePromptFormatter(tokenizer: try Tokenizer(directory: URL(fileURLWithPath: modelDirectory)))
        var train = try TrainingDataset(data: try read(files.train), file: "training_data", formatter: formatter, maxLength: hyper.maxLength)
        let held: TrainingDataset
        if record.hasValidationFile {
            held = try TrainingDataset(data: try read(files.validation), file: "validation_data", formatter: formatter, maxLength: hyper.maxLength)
        } else {
            (train, held) = try train.split(heldOutFraction: hyper.validationFraction, seed: hyper.seed, minimumTrain: hyper.minimumExamples)
        }
        func adapter(_ dir: String?) throws -> SafetensorsFile? {
            try dir.map { try SafetensorsFile(path: $0 + "/adapter_model.safetensors") }
        }
        let tuner = try LoRAFineTuner(base: base, hyper: hyper, train: train, heldOut: held, padId: formatter.padId,
                                      initialAdapter: try adapter(record.startAdapterDirectory))
        if FileManager.default.fileExists(atPath: files.checkpoint) {
            try tuner.loadCheckpoint(from: files.checkpoint)
            events.append(jobID: id, message: "resumed from the checkpoint at step \(tuner.completedSteps)/\(tuner.totalSteps)")
        }
        var tokens = 0
        var stopReason: String?
        // Polled between steps and before every layer / head chunk / generated token inside them.
        let shouldStop: () -> Bool = {
            if control.isCancelled { stopReason = "cancelled"; return true }
            if control.isStopped { stopReason = "the daemon is stopping"; return true }
            if inferenceBusy() { stopReason = "inference requests"; return true }
            return false
        }
        var baseline = record.baselineLoss
        func pause() throws -> Outcome {
            if stopReason == "cancelled" { return .cancelled(step: tuner.completedSteps, tokens: tokens) }
            try tuner.saveCheckpoint(to: files.checkpoint)
            events.append(jobID: id, message: "paused at step \(tuner.completedSteps)/\(tuner.totalSteps) for \(stopReason ?? "inference requests"); resumes from the checkpoint when the device is idle")
            return .paused(step: tuner.completedSteps, total: tuner.totalSteps, baseline: baseline, tokens: tokens)
        }
        do {
            if baseline == nil {
                // The previous version of this adapter, or the base itself (a fresh LoRA has B = 0).
                var h = hyper
                h.maxSteps = nil
                if let prev = previousVersionDirectory { try Self.adoptShape(of: prev, into: &h) }
                let reference = try LoRAFineTuner(base: base, hyper: h, train: train, heldOut: held, padId: formatter.padId,
                                                  initialAdapter: try adapter(previousVersionDirectory))
                reference.trainer.interruption = shouldStop
                let b = try reference.evaluate()
                baseline = b
                events.append(jobID: id, message: String(format: "held-out loss of %@: %.5f", previousVersionDirectory == nil ? "the base model" : "the previous version", b),
                              type: "metrics", data: ["step": Double(tuner.completedSteps), "valid_loss": b])
            }
            try tuner.run(checkpointEvery: checkpointEvery, checkpointPath: files.checkpoint, shouldStop: shouldStop, onStep: { p in
                tokens += p.tokens
                events.append(jobID: id, message: String(format: "step %d/%d: training loss %.5f", p.step, p.totalSteps, p.loss), type: "metrics",
                              data: ["step": Double(p.step), "total_steps": Double(p.totalSteps), "train_loss": p.loss,
                                     "learning_rate": Double(p.learningRate), "seconds": p.seconds])
            })
            if stopReason != nil { return try pause() }
            tuner.trainer.interruption = shouldStop
            defer { tuner.trainer.interruption = nil }
            let after = try tuner.evaluate()
            var answers: AnswerScore?
            if let metric = gate.answerMetric {
                let evaluator = try HeldOutAnswerEvaluator(modelDirectory: modelDirectory)
                let scored = try evaluator.score(lora: tuner.lora, examples: held.examples, interruption: shouldStop).score
                answers = scored
                events.append(jobID: id, message: "held-out answers (greedy): \(scored.summary)", type: "metrics",
                              data: ["step": Double(tuner.completedSteps), "answers": Double(scored.prompts), "exact_match": scored.rate(.exactMatch),
                                     "json_fields": scored.rate(.jsonFields), "answer_rate": scored.rate(metric)])
            }
            let b = baseline!
            let verdict = gate.decide(newLoss: after, previousLoss: b, answers: answers)
            events.append(jobID: id, message: String(format: "held-out loss after training: %.5f (baseline %.5f)", after, b), type: "metrics",
                          data: ["step": Double(tuner.completedSteps), "valid_loss": after, "baseline_loss": b])
            try? FileManager.default.removeItem(atPath: files.adapter)
            try tuner.lora.savePEFT(to: files.adapter, baseModelName: modelDirectory, extraMetadata: [
                "edge.heldout_loss_before": String(b), "edge.heldout_loss_after": String(after), "edge.job": id])
            return .finished(total: tuner.totalSteps, baseline: b, heldOut: after, verdict: verdict, tokens: tokens)
        } catch TrainingError.interrupted {
            return try pause()
        }
    }

    /// Sets rank, alpha and targets from a PEFT directory's adapter_config.json, so its weights
    /// load into parameters of the same shape (an earlier version may have used another rank).
    static func adoptShape(of directory: String, into h: inout FineTuneHyperparameters) throws {
        let path = directory + "/adapter_config.json"
        guard let data = FileManager.default.contents(atPath: path),
              let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let r = obj["r"] as? Int, let a = (obj["lora_alpha"] as? NSNumber)?.floatValue else {
            throw FineTuningError.corruptJob(path: path, reason: "no r / lora_alpha in the adapter config")
        }
        h.rank = r
        h.alpha = a
        if let names = obj["target_modules"] as? [String] {
            let targets = names.compactMap { LoRATarget(name: ($0 as NSString).lastPathComponent) }
            if !targets.isEmpty { h.targets = LoRATarget.allCases.filter(targets.contains) }
        }
        h.useRSLoRA = obj["use_rslora"] as? Bool ?? false
    }

    /// Runs `body` on a new thread lowered to SCHED_IDLE (nice 19 as fallback), so inference
    /// threads always win the CPU, and resumes the caller with its result.
    ///
    /// The kernels' thread pool (Sources/Kernels/pool.c) is shared with inference and its workers
    /// keep normal priority; it runs one job at a time and a caller that finds it busy runs its
    /// tasks alone. So priority alone would let a training product hold the pool (and the second
    /// core) while a request decodes. Instead training gives the pool back: `shouldStop` sees the
    /// scheduler busy before every layer / head chunk / generated token (`LoRATrainer.interruption`),
    /// abandons the step and pauses the job, so a request waits for at most one such unit
    /// (≈ 5–15 ms at 500 tokens on a 135M model) plus the pause checkpoint's write, which happens on
    /// this SCHED_IDLE thread while the request already runs.
    static func onTrainingThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let t = Thread {
                TrainingThreadPriority.lowerCurrentThread()
                c.resume(returning: body())
            }
            t.name = "edge-finetune"
            t.stackSize = 16 << 20
            t.start()
        }
    }
}
