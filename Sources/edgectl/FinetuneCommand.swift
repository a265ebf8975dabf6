import AdapterCache
import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl finetune …`: on-device QLoRA. `bench` runs locally on a model directory and
/// pre-tokenized batches (no daemon).
struct FinetuneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Fine-tune LoRA adapters on this device (QLoRA over the NF4 base).",
        discussion: helpExamples("edgectl finetune run --model ~/models/m --data train.jsonl --out ./my-adapter",
                                 "edgectl finetune create --adapter my --data train.jsonl", "edgectl finetune logs ftjob-… -f --plot loss.svg"),
        subcommands: [FinetuneRun.self, FinetuneBench.self, FinetuneCreate.self, FinetuneList.self, FinetuneStatus.self,
                      FinetuneLogs.self, FinetuneCancel.self, FinetuneRunPending.self]
    )
}

/// Times training steps on pre-tokenized batches (the fixture format: batch{i}.input_ids,
/// .attention_mask, .labels as I64 [B, T]) and prints tokens/s, s/step and peak RSS.
struct FinetuneBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure training speed (tokens/s, s/step) and peak RSS on pre-tokenized batches.",
        discussion: helpExamples("edgectl finetune bench --model ~/models/m --batches batches.safetensors --steps 5 --json"))

    @Option(help: "Model directory (made by `edgectl model import`), or a GGUF file imported to a temporary directory first.") var model: String
    @Option(help: "safetensors file with batch{i}.input_ids/.attention_mask/.labels.") var batches: String
    @Option(help: "Initial LoRA weights (PEFT safetensors); default: PEFT init with --seed.") var adapter: String?
    @Option(help: "Optimiser steps to run (step s uses batch s mod count).") var steps: Int = 5
    @Option(help: "Worker threads for the matrix products.") var threads: Int = 2
    @Option(help: "LoRA rank.") var rank: Int = 8
    @Option(help: "LoRA alpha.") var alpha: Float = 16
    @Option(help: "Learning rate (AdamW, constant).") var lr: Float = 1e-3
    @Option(help: "Seed of the LoRA initialisation.") var seed: UInt64 = 0
    @Flag(help: "Print one JSON object instead of text.") var json = false
    @Flag(help: "Recompute each layer's activations in the backward instead of keeping them (less memory, more compute).") var recompute = false
    @Flag(inversion: .prefixedNo, help: "Also run the same training in PyTorch + PEFT on CPU (when python3 imports torch, transformers and peft) and print the ratios.") var compareTorch = true
    @Option(help: "Also measure preemption: stop requests at this many random moments inside steps; prints how long the trainer took to yield (0: skip).") var preemption: Int = 0

    func run() async throws {
        TrainingRuntime.lineBufferStdout()
        setenv("OPENBLAS_NUM_THREADS", String(threads), 1)
        TrainingRuntime.setThreads(threads)
        let loadStart = Date()
        let base = try TrainingModelLoader.load(directory: try FinetuneSupport.modelDirectory(model))
        let file = try SafetensorsFile(path: batches)
        let list = try TrainingBatchFile.batches(file)
        guard !list.isEmpty else { throw ValidationError("\(batches) holds no batch{i}.input_ids tensors") }
        let lora = try LoRAParameters(shape: base.shape, rank: rank, alpha: alpha, targets: LoRATarget.allCases)
        if let adapter { try lora.load(from: try SafetensorsFile(path: adapter)) } else { lora.initialise(seed: seed) }
        let trainer = try LoRATrainer(base: base, lora: lora)
        if recompute { trainer.keepActivations = false }
        let opt = AdamW(parameterCount: lora.parameterCount)
        let loadSeconds = Date().timeIntervalSince(loadStart)
        var times: [Double] = [], losses: [Double] = [], tokens = 0, supervised = 0
        for s in 0..<steps {
            let b = list[s % list.count]
            let t0 = Date()
            lora.grads.zero()
            let sum = try trainer.accumulateGradients(b, gradScale: 1 / Float(b.supervisedCount))
            opt.update(lora.values, gradients: lora.grads, lr: lr)
            times.append(Date().timeIntervalSince(t0))
            losses.append(sum / Double(b.supervisedCount))
            tokens += b.batchSize * b.seqLen
            supervised += b.validLengths.reduce(0, +)
            if !json { print(String(format: "step %d  loss %.5f  %.2f s", s + 1, losses.last!, times.last!)) }
        }
        let steady = times.count > 1 ? Array(times.dropFirst()) : times
        let mean = steady.reduce(0, +) / Double(steady.count)
        let total = times.reduce(0, +)
        let rss = TrainingRuntime.peakRSSBytes()
        let cpu = TrainingRuntime.cpuSeconds()
        let yields = preemption > 0 ? try measurePreemption(trainer: trainer, batches: list, samples: preemption) : []
        var torch: [String: Any]?
        if compareTorch {
            if FinetuneTorchComparison.available() {
                if !json { print("running the same training in PyTorch + PEFT (\(threads) threads)…") }
                torch = try FinetuneTorchComparison.measure(model: try FinetuneSupport.modelDirectory(model), batches: batches, adapter: adapter, steps: steps,
                                                            threads: threads, rank: rank, alpha: alpha, lr: lr, seed: seed)
            } else if !json {
                print("PyTorch comparison skipped: python3 cannot import torch, transformers and peft (pip install torch transformers peft)")
            }
        }
        let oursTokens = Double(tokens) / total
        if json {
            var obj: [String: Any] = ["steps": steps, "threads": threads, "sec_per_step_mean_excl_first": mean,
                                      "first_step_sec": times[0], "tokens_per_sec_padded": oursTokens,
                                      "tokens_per_sec_nonpad": Double(supervised) / total, "peak_rss_bytes": rss,
                                      "load_sec": loadSeconds, "losses": losses, "cpu_sec_total": cpu, "recompute": recompute]
            if !yields.isEmpty { obj["preemption_ms"] = ["max": yields.max()!, "mean": yields.reduce(0, +) / Double(yields.count), "samples": yields.count] }
            if let torch {
                obj["torch"] = torch
                if let t = torch["tokens_per_sec_padded"] as? Double, t > 0 { obj["tokens_per_sec_ratio_ours_over_torch"] = oursTokens / t }
            }
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(String(format: "threads %d: %.3f s/step (excluding the first), %.1f tokens/s (padded), %.1f tokens/s (non-pad), peak RSS %.0f MiB, load %.1f s, process CPU %.1f s%@",
                         threads, mean, oursTokens, Double(supervised) / total, Double(rss) / 1_048_576, loadSeconds, cpu,
                         recompute ? ", recomputing activations" : ""))
            if !yields.isEmpty {
                print(String(format: "preemption: the trainer yielded %.1f ms (mean) / %.1f ms (max) after a stop request, %d samples inside steps",
                             yields.reduce(0, +) / Double(yields.count), yields.max()!, yields.count))
            }
            if let torch, let ts = torch["sec_per_step_mean_excl_first"] as? Double, let tt = torch["tokens_per_sec_padded"] as? Double,
               let trss = torch["peak_rss_bytes"] as? Double {
                print(String(format: "PyTorch+PEFT threads %d: %.3f s/step (excluding the first), %.1f tokens/s (padded), peak RSS %.0f MiB (torch %@)",
                             threads, ts, tt, trss / 1_048_576, torch["torch"] as? String ?? "?"))
                print(String(format: "ratio ours/PyTorch: %.2f× tokens/s, %.2f× peak RSS", oursTokens / tt, Double(rss) / trss))
            }
        }
    }

    /// Starts steps and, from another thread, asks the trainer to stop after a random delay within
    /// one step; returns the milliseconds between the request and the trainer giving the thread
    /// back (what a request arriving mid-training waits for, on top of its normal latency).
    func measurePreemption(trainer: LoRATrainer, batches: [TrainingBatch], samples: Int) throws -> [Double] {
        final class Flag: @unchecked Sendable {
            let lock = NSLock()
            var requestedAt: UInt64 = 0
            func set() { lock.lock(); requestedAt = DispatchTime.now().uptimeNanoseconds; lock.unlock() }
            var at: UInt64 { lock.lock(); defer { lock.unlock() }; return requestedAt }
        }
        var out: [Double] = []
        var rng = SystemRandomNumberGenerator()
        for i in 0..<samples {
            let b = batches[i % batches.count]
            let flag = Flag()
            let delay = Double.random(in: 0.05...0.9, using: &rng)
            let timer = Thread { Thread.sleep(forTimeInterval: delay); flag.set() }
            trainer.interruption = { flag.at != 0 }
            timer.start()
            // A Result rather than `catch TrainingError.interrupted`: the release compiler (6.3) crashes
            // in its ownership verifier on a pattern catch that rethrows the other cases.
            let step = Result { () throws(TrainingError) in
                try trainer.accumulateGradients(b, gradScale: 1 / Float(max(1, b.supervisedCount)))
            }
            switch step {
            case .success: break
            case .failure(.interrupted): out.append(Double(DispatchTime.now().uptimeNanoseconds - flag.at) / 1e6)
            case .failure(let error): throw error
            }
            trainer.interruption = nil
            while flag.at == 0 { usleep(1000) }   // a step faster than the delay: wait for the timer to finish
        }
        return out
    }
}

enum FinetuneSupport {
    /// A model directory as given, or a GGUF file imported into a fresh temporary directory.
    static func modelDirectory(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ValidationError("\(path) does not exist: give a model directory (from `edgectl model import`) or a GGUF file")
        }
        if isDir.boolValue { return path }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("edgectl-finetune-\(getpid())").path
        try? FileManager.default.removeItem(atPath: out)
        FileHandle.standardError.write(Data("importing \(path) into \(out)…\n".utf8))
        try ModelImporter(source: path, output: out).run()
        return out
    }
}
