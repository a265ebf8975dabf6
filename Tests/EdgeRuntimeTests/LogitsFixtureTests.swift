import AdapterCache
import EdgeRuntime
import Foundation
import Kernels
import XCTest

/// The acceptance test of the forward pass: our logits over the imported NF4 model against
/// transformers f32 over the same bnb-dequantised weights (Tests/Fixtures/logits).
final class LogitsFixtureTests: XCTestCase {
    /// f32 activations: every prompt position (top-10 KL and top-1; full KL at the last one) and
    /// 32 free-running greedy tokens, which must equal the reference's.
    private func checkReference(adapter: LoRAPrecision?, kv: SequenceCache.Precision = .f32) throws {
        let weights = try EngineTestModel.weights()
        let fixture = try LogitsFixture(file: adapter != nil ? "adapter_a.safetensors" : "nf4.safetensors")
        let mix = try Self.mix(adapter)
        let model = LlamaModel(weights: weights, activations: .f32, kvPrecision: kv)
        let vocab = weights.hyperparameters.vocabularySize
        var stats = LogitsAgreement()
        var greedyMismatches: [String] = []
        for prompt in fixture.prompts {
            let runner = SequenceRunner(model: model, adapters: mix, capacity: prompt.inputIDs.count + 33, prefillChunk: 128)
            let logits = try runner.feed(prompt.inputIDs, allLogits: true)
            XCTAssertEqual(logits.count, prompt.inputIDs.count * vocab)
            logits.withUnsafeBufferPointer { all in
                for i in 0..<prompt.inputIDs.count {
                    let row = UnsafeBufferPointer(rebasing: all[(i * vocab)..<((i + 1) * vocab)])
                    if i == prompt.inputIDs.count - 1 {
                        stats.addFull(ours: row, ref: prompt.lastLogits)
                    } else {
                        stats.add(ours: row, refIDs: prompt.top10IDs[i], refLogits: prompt.top10Logits[i])
                    }
                }
            }
            let last = Array(logits[((prompt.inputIDs.count - 1) * vocab)...])
            let greedy = try runner.greedy(after: last, count: prompt.greedyIDs.count)
            if greedy != prompt.greedyIDs {
                greedyMismatches.append("\(prompt.name): ours \(greedy) vs reference \(prompt.greedyIDs)")
            }
        }
        let label = "f32\(adapter.map { " + adapter a (\($0.rawValue))" } ?? "")\(kv == .f16 ? ", f16 KV" : "")"
        print("logits fixture [\(label)]: top-1 \(stats.top1Matches)/\(stats.positions) = \(stats.top1Rate), mean KL \(stats.meanKL), worst KL \(stats.worstKL)")
        XCTAssertGreaterThanOrEqual(stats.top1Rate, 0.995, "top-1 agreement [\(label)]")
        XCTAssertLessThanOrEqual(stats.meanKL, 1e-4, "mean KL(ref ‖ ours) [\(label)]")
        XCTAssertEqual(greedyMismatches, [], "greedy continuations [\(label)]")
    }

    /// The fastest mode (int8 activations in the decode products, f32 tiled GEMM for prompts): every
    /// prompt position as in the f32 test, then the reference's greedy tokens fed one at a time
    /// (teacher forcing, so one early flip cannot derail the rest), each decode step's distribution
    /// compared with the reference's top-10 at that step. Both kinds of position count.
    private func checkFastest(adapter: LoRAPrecision?, kv: SequenceCache.Precision = .f32) throws {
        // The fastest mode's numbers depend on the kernels (int8 layout, bf16 prompts): test the ones
        // this CPU runs by default, not whatever an earlier test left active.
        if ProcessInfo.processInfo.environment["EDGE_KERNELS"] == nil {
            for best in ["avx512", "avx2", "neon"] where ek_variant_supported(best) == 1 {
                XCTAssertEqual(String(cString: ek_variant_name()), best, "the default kernel variant is active")
                break
            }
        }
        let weights = try EngineTestModel.weights()
        let fixture = try LogitsFixture(file: adapter != nil ? "adapter_a.safetensors" : "nf4.safetensors")
        let mix = try Self.mix(adapter)
        let model = LlamaModel(weights: weights, activations: .int8, kvPrecision: kv)
        let vocab = weights.hyperparameters.vocabularySize
        var stats = LogitsAgreement()
        var decodeStats = LogitsAgreement()
        for prompt in fixture.prompts {
            XCTAssertEqual(prompt.greedyTop10IDs[0][0], prompt.greedyIDs[1], "fixture: greedy_top10 step j is the distribution after greedy_ids[j]")
            let runner = SequenceRunner(model: model, adapters: mix, capacity: prompt.inputIDs.count + 33, prefillChunk: 128)
            let all = try runner.feed(prompt.inputIDs, allLogits: true)
            all.withUnsafeBufferPointer { all in
                for i in 0..<prompt.inputIDs.count {
                    let row = UnsafeBufferPointer(rebasing: all[(i * vocab)..<((i + 1) * vocab)])
                    if i == prompt.inputIDs.count - 1 {
                        stats.addFull(ours: row, ref: prompt.lastLogits)
                    } else {
                        stats.add(ours: row, refIDs: prompt.top10IDs[i], refLogits: prompt.top10Logits[i])
                    }
                }
            }
            var logits: [Float]
            for step in 0..<prompt.greedyIDs.count {
                logits = try runner.feed([prompt.greedyIDs[step]])
                logits.withUnsafeBufferPointer {
                    stats.add(ours: $0, refIDs: prompt.greedyTop10IDs[step], refLogits: prompt.greedyTop10Logits[step])
                    decodeStats.add(ours: $0, refIDs: prompt.greedyTop10IDs[step], refLogits: prompt.greedyTop10Logits[step])
                }
            }
        }
        let label = "int8\(adapter.map { " + adapter a (\($0.rawValue))" } ?? "")\(kv == .f16 ? ", f16 KV" : ""), kernels \(String(cString: ek_variant_name()))"
        print("logits fixture [\(label)]: top-1 \(stats.top1Matches)/\(stats.positions) = \(stats.top1Rate), mean KL \(stats.meanKL), worst KL \(stats.worstKL); decode steps alone: top-1 \(decodeStats.top1Rate), mean KL \(decodeStats.meanKL)")
        XCTAssertGreaterThanOrEqual(stats.top1Rate, 0.98, "top-1 agreement [\(label)]")
        XCTAssertLessThanOrEqual(stats.meanKL, 0.01, "mean KL(ref ‖ ours) [\(label)]")
    }

    /// Adapter `a` held as training holds it (f32 pairs) or as serving does (the cache's f16 or int8 form).
    private static func mix(_ adapter: LoRAPrecision?) throws -> AdapterMix {
        switch adapter {
        case nil: return .none
        case .f32?: return AdapterMix([(try EngineTestModel.adapterA(), 1)])
        case let p?: return AdapterMix([(try EngineTestModel.adapterAServing(p), 1)])
        }
    }

    func testBaseF32MatchesTransformers() throws {
        try checkReference(adapter: nil)
    }

    func testBaseFastestModeMatchesTransformers() throws {
        try checkFastest(adapter: nil)
    }

    func testAdapterAF32MatchesPEFT() throws {
        try checkReference(adapter: .f32)
    }

    func testAdapterAFastestModeMatchesPEFT() throws {
        try checkFastest(adapter: .f32)
    }

    /// The accuracy cost of f16 adapter storage, in the strict mode's own tolerances.
    func testAdapterAF16StorageF32ModeMatchesPEFT() throws {
        try checkReference(adapter: .f16)
    }

    func testAdapterAF16StorageFastestModeMatchesPEFT() throws {
        try checkFastest(adapter: .f16)
    }

    /// int8 adapter storage (what the daemon's cache holds in the fastest mode), in that mode's tolerances.
    func testAdapterAInt8StorageFastestModeMatchesPEFT() throws {
        try checkFastest(adapter: .int8)
    }

    /// f16 keys and values (half the KV bytes) keep both modes within their tolerances.
    func testBaseWithF16KVMatchesTransformers() throws {
        try checkReference(adapter: nil, kv: .f16)
        try checkFastest(adapter: nil, kv: .f16)
    }

    func testAdapterAWithF16KVMatchesPEFT() throws {
        try checkReference(adapter: .f16, kv: .f16)
        try checkFastest(adapter: .f16, kv: .f16)
    }
}
