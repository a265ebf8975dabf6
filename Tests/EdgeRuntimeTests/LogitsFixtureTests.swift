import EdgeRuntime
import XCTest

/// The acceptance test of the forward pass: our logits over the imported NF4 model against
/// transformers f32 over the same bnb-dequantised weights (Tests/Fixtures/logits).
final class LogitsFixtureTests: XCTestCase {
    /// Runs every fixture prompt: all prompt positions (top-10 KL and top-1), the last position
    /// (full KL), then 32 greedy tokens, which must equal the reference's.
    private func check(activations: LlamaModel.ActivationPrecision, adapter: Bool, minTop1: Double, maxKL: Double, exactGreedy: Bool) throws {
        let weights = try EngineTestModel.weights()
        let fixture = try LogitsFixture(file: adapter ? "adapter_a.safetensors" : "nf4.safetensors")
        let mix = adapter ? AdapterMix([(try EngineTestModel.adapterA(), 1)]) : .none
        let model = LlamaModel(weights: weights, activations: activations)
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
        let label = "\(activations.rawValue)\(adapter ? " + adapter a" : "")"
        print("logits fixture [\(label)]: top-1 \(stats.top1Matches)/\(stats.positions) = \(stats.top1Rate), mean KL \(stats.meanKL), worst KL \(stats.worstKL)")
        XCTAssertGreaterThanOrEqual(stats.top1Rate, minTop1, "top-1 agreement [\(label)]")
        XCTAssertLessThanOrEqual(stats.meanKL, maxKL, "mean KL(ref ‖ ours) [\(label)]")
        if exactGreedy {
            XCTAssertEqual(greedyMismatches, [], "greedy continuations [\(label)]")
        } else {
            // int8 activations may flip a near-tie late in a continuation; the first tokens must agree.
            XCTAssertLessThanOrEqual(greedyMismatches.count, 1, "greedy continuations [\(label)]: \(greedyMismatches)")
        }
    }

    func testBaseF32MatchesTransformers() throws {
        try check(activations: .f32, adapter: false, minTop1: 0.995, maxKL: 1e-4, exactGreedy: true)
    }

    func testBaseFastestModeMatchesTransformers() throws {
        try check(activations: .int8, adapter: false, minTop1: 0.98, maxKL: 0.01, exactGreedy: false)
    }

    func testAdapterAF32MatchesPEFT() throws {
        try check(activations: .f32, adapter: true, minTop1: 0.995, maxKL: 1e-4, exactGreedy: true)
    }

    func testAdapterAFastestModeMatchesPEFT() throws {
        try check(activations: .int8, adapter: true, minTop1: 0.98, maxKL: 0.01, exactGreedy: false)
    }
}
