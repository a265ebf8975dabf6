import ArgumentParser
import EdgeRuntime
import Foundation
import Kernels

/// `edgectl bench generate`: prefill and decode throughput of the local engine on one sequence,
/// and, when Python's `llama_cpp` is importable and `--gguf` is given, llama.cpp's figures for
/// Q4_0 and IQ4_NL re-quantised from that GGUF, measured in the same run.
struct BenchGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Measure prefill tokens/s (128-token prompt), decode tokens/s (64 tokens), time to first token and peak RSS.",
        discussion: helpExamples("edgectl bench generate --model ~/models/m", "edgectl bench generate --model ~/models/m --gguf model.gguf --json --plot generate.svg"))

    @OptionGroup var engine: EngineOptions

    @Option(name: .long, help: "Prompt tokens to prefill.")
    var promptTokens: Int = 128

    @Option(name: .long, help: "Tokens to decode.")
    var decodeTokens: Int = 64

    @Option(name: .long, help: "Repetitions (the best is reported).")
    var repeats: Int = 3

    @Option(name: .long, help: "Rounds: our engine and llama.cpp measured back to back this many times. Figures are per-round medians and each ratio is the median of its per-round ratios, so a noisy neighbour slows both sides of a ratio.")
    var rounds: Int = 1

    @Option(name: .long, help: "Also decode this many sequences together, one batched forward per token, as the daemon's scheduler does (1: skip). Reports their aggregate decode tokens/s: the engine's ceiling for concurrent streams, without the socket.")
    var batch: Int = 1

    @Option(name: .customLong("batch-adapters"), help: "With --batch: give each of the batched sequences its own random LoRA adapter of this rank on all seven projections, held as the daemon holds them (int8 rows in the fastest mode), and also time the batch that way: the engine's ceiling for the daemon's concurrent-adapter streams (0: skip).")
    var batchAdapterRank: Int = 0

    @Option(name: .long, help: "The GGUF the model was imported from: llama.cpp (llama_cpp Python package) is benchmarked on Q4_0 and IQ4_NL re-quantised from it.")
    var gguf: String?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @Option(name: .long, help: "Also draw prefill, decode and time-to-first-token as bar charts into this SVG file.")
    var plot: String?

    func validate() throws { try PlotError.checkPath(plot) }

    func run() throws {
        guard promptTokens > 0, decodeTokens > 0, repeats > 0, rounds > 0 else { throw ValidationError("token counts, --repeats and --rounds must be positive") }
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard batchAdapterRank >= 0, batchAdapterRank <= 256 else { throw ValidationError("--batch-adapters must be a rank of 0…256") }
        guard batchAdapterRank == 0 || batch > 1 else { throw ValidationError("--batch-adapters needs --batch of 2 or more") }
        let (local, model, mix) = try engine.open(defaultPrecision: .int8)
        let threads = Int(ek_threads())
        // Built once per model on first use: not part of any timed token.
        if model.activations == .int8 { _ = try local.weights.int8Head() }
        // A natural-text prompt of exactly promptTokens tokens.
        let seedText = "The quick brown fox jumps over the lazy dog while the committee reviews the annual report on regional water supply. "
        var prompt: [Int32] = []
        while prompt.count < promptTokens { prompt += local.tokenizer.encode(seedText, addSpecial: false, parseSpecial: false) }
        prompt = Array(prompt.prefix(promptTokens))
        // Without --gguf, the GGUF the test model comes from (EDGE_TEST_GGUF, as scripts/test sets it).
        let reference = gguf ?? ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"].flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
        var ours: [Figures] = []
        var theirs: [[String: [String: Any]]] = []
        var unavailable: String?
        var roundRatios: [[String: Double]] = []
        for _ in 0..<rounds {
            let mine = try measure(model: model, mix: mix, prompt: prompt)
            ours.append(mine)
            guard let reference, unavailable == nil else { continue }
            switch LlamaCppBench.run(gguf: reference, threads: threads, promptTokens: promptTokens, decodeTokens: decodeTokens) {
            case .success(let figures):
                theirs.append(figures)
                let d = figures.values.compactMap { $0["decode_tokens_per_s"] as? Double }.max() ?? 0
                let p = figures.values.compactMap { $0["prefill_tokens_per_s"] as? Double }.max() ?? 0
                if d > 0, p > 0 { roundRatios.append(["decode": mine.decode / d, "prefill": mine.prefill / p]) }
            case .failure(let reason):
                unavailable = reason.message
            }
        }
        let bestPrefill = median(ours.map(\.prefill)), bestDecode = median(ours.map(\.decode)), bestTTFT = median(ours.map(\.ttft))
        var batchDecode: Double?, adapterBatchDecode: Double?, adapterRatio: Double?
        if batch > 1 {
            let base = Array(repeating: mix, count: batch)
            if batchAdapterRank > 0 {
                // Base and adapter batches alternate, so a noisy neighbour slows both sides of the ratio.
                let adapters = try SyntheticAdapter.mixes(count: batch, rank: batchAdapterRank, model: model)
                var b: [Double] = [], a: [Double] = []
                for _ in 0..<repeats {
                    b.append(try batchedDecode(model: model, mixes: base, prompt: prompt, repeats: 1))
                    a.append(try batchedDecode(model: model, mixes: adapters, prompt: prompt, repeats: 1))
                }
                batchDecode = b.max()
                adapterBatchDecode = a.max()
                adapterRatio = median(zip(a, b).map { $0 / max(1e-9, $1) })
            } else {
                batchDecode = try batchedDecode(model: model, mixes: base, prompt: prompt, repeats: repeats)
            }
        }
        var result: [String: Any] = [
            "engine": "edge-runtime",
            "prefill_tokens_per_s": bestPrefill,
            "decode_tokens_per_s": bestDecode,
            "ttft_ms": bestTTFT,
            "peak_rss_bytes": Self.peakRSS(),
            "threads": threads,
            "prompt_tokens": promptTokens,
            "decode_tokens": decodeTokens,
            "activations": model.activations.rawValue,
            "kernels": String(cString: ek_variant_name()),
            "adapters": mix.entries.count,
            "rounds": rounds,
        ]
        if let batchDecode {
            result["batch"] = batch
            result["batch_decode_tokens_per_s"] = batchDecode
            result["batch_over_single"] = batchDecode / max(1e-9, bestDecode)
        }
        if let adapterBatchDecode, let batchDecode {
            result["batch_adapter_rank"] = batchAdapterRank
            result["batch_adapters_decode_tokens_per_s"] = adapterBatchDecode
            result["batch_adapters_over_batch"] = adapterRatio ?? adapterBatchDecode / max(1e-9, batchDecode)
            result["batch_adapters_over_single"] = adapterBatchDecode / max(1e-9, bestDecode)
        }
        if let unavailable {
            result["llama_cpp"] = ["unavailable": unavailable]
        } else if !theirs.isEmpty {
            // Each quantisation's figures: the per-round median of each number.
            var figures: [String: [String: Any]] = [:]
            for name in Set(theirs.flatMap(\.keys)) {
                let runs = theirs.compactMap { $0[name] }
                var merged = runs.last ?? [:]
                for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms"] {
                    let values = runs.compactMap { $0[key] as? Double }
                    if !values.isEmpty { merged[key] = median(values) }
                }
                figures[name] = merged
            }
            result["llama_cpp"] = figures
            if let d = figures.values.compactMap({ $0["decode_tokens_per_s"] as? Double }).max(), d > 0 {
                result["llama_cpp_best_decode_tokens_per_s"] = d
            }
            if let p = figures.values.compactMap({ $0["prefill_tokens_per_s"] as? Double }).max(), p > 0 {
                result["llama_cpp_best_prefill_tokens_per_s"] = p
            }
            if !roundRatios.isEmpty {
                result["decode_ratio_vs_best_llama_cpp"] = median(roundRatios.compactMap { $0["decode"] })
                result["prefill_ratio_vs_best_llama_cpp"] = median(roundRatios.compactMap { $0["prefill"] })
                result["round_ratios"] = roundRatios
            }
        }
        try BenchPlots.write(BenchPlots.generate(result), to: plot)
        if json {
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
            FileHandle.standardOutput.write(data + Data("\n".utf8))
        } else {
            print(String(format: "prefill: %.1f tokens/s (%d tokens), time to first token %.1f ms", bestPrefill, promptTokens, bestTTFT))
            print(String(format: "decode:  %.1f tokens/s (%d tokens)", bestDecode, decodeTokens))
            if let batchDecode {
                print(String(format: "decode, %d sequences together: %.1f tokens/s (%.2fx one sequence)", batch, batchDecode, batchDecode / max(1e-9, bestDecode)))
                if let adapterBatchDecode, let adapterRatio {
                    print(String(format: "decode, %d sequences with %d rank-%d adapters: %.1f tokens/s (%.2fx the same batch on the base, median of %d alternating runs; %.2fx one sequence)",
                                 batch, batch, batchAdapterRank, adapterBatchDecode, adapterRatio, repeats, adapterBatchDecode / max(1e-9, bestDecode)))
                }
            }
            print("peak RSS: \(Self.peakRSS() / (1 << 20)) MiB, threads: \(threads), kernels: \(String(cString: ek_variant_name())), activations: \(model.activations.rawValue)")
            if let figures = result["llama_cpp"] as? [String: [String: Any]] {
                for (name, f) in figures.sorted(by: { $0.key < $1.key }) {
                    let d = f["decode_tokens_per_s"] as? Double ?? 0, p = f["prefill_tokens_per_s"] as? Double ?? 0
                    print(String(format: "llama.cpp %@: prefill %.1f tokens/s, decode %.1f tokens/s", name, p, d))
                }
                if let r = result["decode_ratio_vs_best_llama_cpp"] as? Double, let q = result["prefill_ratio_vs_best_llama_cpp"] as? Double {
                    print(String(format: "ratio vs the faster llama.cpp: decode %.2fx, prefill %.2fx", r, q)
                          + (rounds > 1 ? " (medians of \(rounds) rounds: " + roundRatios.map { String(format: "%.2f/%.2f", $0["decode"] ?? 0, $0["prefill"] ?? 0) }.joined(separator: ", ") + ")" : ""))
                }
            } else if let l = result["llama_cpp"] {
                print("llama.cpp: \(l)")
            }
        }
    }

    struct Figures { var prefill, decode, ttft: Double }

    /// One sequence: prefill of the prompt, then decodeTokens single-token steps; the best of `repeats`.
    func measure(model: LlamaModel, mix: AdapterMix, prompt: [Int32]) throws -> Figures {
        var best = Figures(prefill: 0, decode: 0, ttft: .infinity)
        for _ in 0..<repeats {
            let runner = SequenceRunner(model: model, adapters: mix, capacity: promptTokens + decodeTokens + 1, prefillChunk: promptTokens)
            let t0 = DispatchTime.now().uptimeNanoseconds
            var logits = try runner.feed(prompt)
            var token = Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) })
            let t1 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<decodeTokens {
                logits = try runner.feed([token])
                token = Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) })
            }
            let t2 = DispatchTime.now().uptimeNanoseconds
            best.ttft = min(best.ttft, Double(t1 - t0) / 1e6)
            best.prefill = max(best.prefill, Double(promptTokens) / (Double(t1 - t0) / 1e9))
            best.decode = max(best.decode, Double(decodeTokens) / (Double(t2 - t1) / 1e9))
        }
        return best
    }

    /// Aggregate decode tokens/s of `mixes.count` sequences advanced by one forward per token (the
    /// best of `repeats` runs), sequence i with `mixes[i]`. Each sequence is prefilled alone first (not
    /// timed), with its own prompt so the rows differ as concurrent requests do.
    func batchedDecode(model: LlamaModel, mixes: [AdapterMix], prompt: [Int32], repeats: Int) throws -> Double {
        var best = 0.0
        let batch = mixes.count
        for _ in 0..<repeats {
            var caches: [SequenceCache] = []
            var next: [Int32] = []
            for i in 0..<batch {
                let runner = SequenceRunner(model: model, adapters: mixes[i], capacity: prompt.count + decodeTokens + 1, prefillChunk: prompt.count)
                // Rotating the prompt gives each sequence different tokens at the same length.
                let shift = i % prompt.count
                let logits = try runner.feed(Array(prompt[shift...] + prompt[..<shift]))
                caches.append(runner.cache)
                next.append(Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) }))
            }
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<decodeTokens {
                let outputs = try model.forward(caches.indices.map { .init(cache: caches[$0], tokens: [next[$0]], adapters: mixes[$0], logits: .last) })
                for (i, logits) in outputs.enumerated() {
                    next[i] = Int32(logits.withUnsafeBufferPointer { TokenSampler.argmax($0) })
                }
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            best = max(best, Double(batch * decodeTokens) / (Double(t1 - t0) / 1e9))
        }
        return best
    }

    /// VmHWM from /proc/self/status, in bytes.
    static func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
}
