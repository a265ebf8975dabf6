import AdapterCache
import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl finetune run`: trains a LoRA adapter locally (no daemon) from a JSONL file, evaluates it
/// on held-out data, applies the eval gate and writes a PEFT adapter directory. Checkpoints let a
/// killed run continue with `--resume`.
extension AnswerMetric: ExpressibleByArgument {}

struct FinetuneRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Train a LoRA adapter on this machine from a JSONL dataset (no daemon).",
        discussion: """
            Exits with status 2 when the result does not beat the starting point on the held-out data \
            (the eval gate); the adapter is then written to OUT.rejected.

            """ + helpExamples("edgectl finetune run --model ~/models/m --data train.jsonl --out ./my-adapter",
                               "edgectl finetune run --model ~/models/m --data train.jsonl --validation held.jsonl --out ./a --rank 16 --lr 2e-4 --epochs 2 --plot loss.svg"))

    @Option(help: "Model directory, or a GGUF file (imported to a temporary directory first).") var model: String
    @Option(help: "Training data: JSONL rows {\"messages\": [...]} or {\"instruction\", \"input\", \"output\"}.") var data: String
    @Option(help: "Held-out data (JSONL); default: a fraction of --data carved off with the seed.") var validation: String?
    @Option(help: "Output PEFT adapter directory.") var out: String
    @Option(help: "Start from this PEFT adapter directory instead of a fresh initialisation.") var initAdapter: String?
    @Option(help: "LoRA rank.") var rank: Int = 8
    @Option(help: "LoRA alpha.") var alpha: Float = 16
    @Option(help: "Projections to adapt, comma-separated (q,k,v,o,gate,up,down).") var targets: String = "q,k,v,o,gate,up,down"
    @Option(help: "Peak learning rate.") var lr: Float = 1e-3
    @Option(help: "Epochs over the training data.") var epochs: Int = 3
    @Option(help: "Stop after this many optimiser steps.") var maxSteps: Int?
    @Option(help: "Examples per micro-batch.") var batchSize: Int = 4
    @Option(help: "Micro-batches per optimiser step.") var gradAccum: Int = 1
    @Option(help: "Longest example in tokens; longer rows are reported as bad.") var maxLength: Int = 1024
    @Option(help: "Seed of initialisation, shuffling and the held-out split.") var seed: UInt64 = 0
    @Option(help: "Learning-rate schedule: constant, linear or cosine.") var schedule: String = "linear"
    @Option(help: "Warm-up steps.") var warmup: Int = 0
    @Option(help: "AdamW weight decay.") var weightDecay: Float = 0
    @Option(help: "Gradient-norm clip (0: off).") var maxGradNorm: Float = 1.0
    @Flag(help: "Keep the file order (no per-epoch shuffle).") var noShuffle = false
    @Flag(help: "Skip bad rows (they are still listed) instead of refusing the file.") var skipBadRows = false
    @Option(help: "Required relative held-out improvement over the starting point to accept the result.") var margin: Double = 0.02
    @Option(help: "Checkpoint file (adapter + optimiser state + position).") var checkpoint: String?
    @Option(help: "Write a checkpoint every N steps.") var checkpointEvery: Int = 10
    @Flag(help: "Continue from --checkpoint if it exists.") var resume = false
    @Option(help: "Worker threads.") var threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)
    @Flag(help: "Run training at idle priority (SCHED_IDLE).") var idlePriority = false
    @Option(help: "Also draw the loss per step and the held-out losses before and after into this SVG file.") var plot: String?
    @Option(help: "Also score greedy answers to the held-out prompts: json_fields (a JSON object with the reference's fields) or exact_match; the gate then needs --min-answer-rate of them.") var evalAnswers: AnswerMetric?
    @Option(help: "With --eval-answers: the fraction of held-out prompts that must pass.") var minAnswerRate: Double = 0.5

    func validate() throws { try PlotError.checkPath(plot) }

    func run() async throws {
        TrainingRuntime.lineBufferStdout()
        setenv("OPENBLAS_NUM_THREADS", String(threads), 1)
        TrainingRuntime.setThreads(threads)
        if idlePriority { TrainingThreadPriority.lowerCurrentThread() }
        var hyper = FineTuneHyperparameters()
        hyper.rank = rank; hyper.alpha = alpha; hyper.learningRate = lr; hyper.epochs = epochs; hyper.maxSteps = maxSteps
        hyper.batchSize = batchSize; hyper.gradientAccumulation = gradAccum; hyper.maxLength = maxLength; hyper.seed = seed
        hyper.shuffle = !noShuffle; hyper.warmupSteps = warmup; hyper.weightDecay = weightDecay; hyper.maxGradNorm = maxGradNorm
        guard let sched = FineTuneHyperparameters.Schedule(rawValue: schedule) else {
            throw ValidationError("--schedule must be constant, linear or cosine")
        }
        hyper.schedule = sched
        hyper.targets = try targets.split(separator: ",").map { name in
            guard let t = LoRATarget(name: String(name).trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("unknown target \(name); use q,k,v,o,gate,up,down")
            }
            return t
        }
        try hyper.validate()

        let dir = try FinetuneSupport.modelDirectory(model)
        let base = try TrainingModelLoader.load(directory: dir)
        let formatter = try ChatTemplatePromptFormatter(tokenizer: try Tokenizer(directory: URL(fileURLWithPath: dir)))
        func read(_ path: String) throws -> Data {
            guard let d = FileManager.default.contents(atPath: path) else { throw TrainingError.unreadableFile(path: path, reason: "missing or unreadable") }
            return d
        }
        var train = try TrainingDataset(data: try read(data), file: data, formatter: formatter, maxLength: maxLength, skipBadRows: skipBadRows)
        for issue in train.skipped { FileHandle.standardError.write(Data("\(data):\(issue.line): skipped: \(issue.reason)\n".utf8)) }
        let held: TrainingDataset
        if let validation {
            held = try TrainingDataset(data: try read(validation), file: validation, formatter: formatter, maxLength: maxLength, skipBadRows: skipBadRows)
        } else {
            (train, held) = try train.split(heldOutFraction: hyper.validationFraction, seed: seed, minimumTrain: hyper.minimumExamples)
        }
        let initial = try initAdapter.map { try SafetensorsFile(path: $0 + "/adapter_model.safetensors") }
        let tuner = try LoRAFineTuner(base: base, hyper: hyper, train: train, heldOut: held, padId: formatter.padId, initialAdapter: initial)
        if resume, let checkpoint, FileManager.default.fileExists(atPath: checkpoint) {
            try tuner.loadCheckpoint(from: checkpoint)
            print("resumed from \(checkpoint) at step \(tuner.completedSteps)/\(tuner.totalSteps)")
        }
        // The eval gate's baseline: the starting point (the base itself when B = 0, or --init-adapter).
        let before: Double
        if tuner.completedSteps == 0 {
            before = try tuner.evaluate()
        } else {
            let fresh = try LoRAFineTuner(base: base, hyper: hyper, train: train, heldOut: held, padId: formatter.padId, initialAdapter: initial)
            before = try fresh.evaluate()
        }
        print(String(format: "%d training / %d held-out examples, %d steps; held-out loss before: %.5f",
                     train.examples.count, held.examples.count, tuner.totalSteps, before))
        let started = Date()
        var tokens = 0
        var lossPlot = LossPlot(title: "edgectl finetune run: \(data)")
        lossPlot.heldOutLoss.append((Double(tuner.completedSteps), before))
        try tuner.run(checkpointEvery: checkpoint == nil ? 0 : checkpointEvery, checkpointPath: checkpoint, onStep: { p in
            lossPlot.trainLoss.append((Double(p.step), p.loss))
            tokens += p.tokens
            let rate = Double(tokens) / Date().timeIntervalSince(started)
            let eta = Double(p.totalSteps - p.step) * Date().timeIntervalSince(started) / Double(max(1, p.step))
            print(String(format: "step %d/%d  loss %.5f  lr %.2e  |g| %.3f  %.1f s  %.0f tok/s  ETA %.0f s",
                         p.step, p.totalSteps, p.loss, p.learningRate, p.gradNorm, p.seconds, rate, eta))
        })
        let after = try tuner.evaluate()
        lossPlot.heldOutLoss.append((Double(tuner.completedSteps), after))
        var answers: AnswerScore?
        if let evalAnswers {
            let evaluator = try HeldOutAnswerEvaluator(modelDirectory: dir)
            let (score, texts) = try evaluator.score(lora: tuner.lora, examples: held.examples)
            for (ex, text) in zip(held.examples, texts) { print("held-out line \(ex.line): \(text)") }
            print(String(format: "held-out answers (greedy): %@ — %@ rate %.2f", score.summary, evalAnswers.rawValue, score.rate(evalAnswers)))
            answers = score
        }
        let verdict = EvalGate(relativeMargin: margin, answerMetric: evalAnswers, minimumAnswerRate: minAnswerRate)
            .decide(newLoss: after, previousLoss: before, answers: answers)
        let target: String
        switch verdict {
        case .promote: target = out
        case .reject: target = out + ".rejected"
        }
        try tuner.lora.savePEFT(to: target, baseModelName: dir, extraMetadata: [
            "edge.heldout_loss_before": String(before), "edge.heldout_loss_after": String(after)])
        // After the adapter: a plot that cannot be written must not cost the trained weights.
        if let plot { try lossPlot.write(to: plot) }
        switch verdict {
        case .promote:
            print(String(format: "held-out loss %.5f → %.5f: accepted, adapter written to %@", before, after, target))
        case .reject(let why):
            print("rejected: \(why); adapter kept in \(target)")
            throw ExitCode(2)
        }
    }
}
