import XCTest
@testable import EdgeRuntime

final class TrainerGradientTests: XCTestCase {
    /// Every LoRA tensor's gradient, projected on a random direction, matches a central difference of
    /// the loss (f32 forward, so the tolerance is loose but a wrong backward is off by far more).
    func testGradientsMatchFiniteDifferences() throws {
        let base = try TrainingTinyModel.base()
        let lora = try LoRAParameters(shape: TrainingTinyModel.shape, rank: 2, alpha: 4, targets: LoRATarget.allCases)
        lora.initialise(seed: 1)
        // Non-zero B so A's gradient is exercised too.
        var rng = SplitMix64(seed: 99)
        for e in lora.entries { for i in 0..<(e.outFeatures * 2) { lora.values[e.bOffset + i] = rng.uniform(-0.3, 0.3) } }
        let trainer = try LoRATrainer(base: base, lora: lora)
        let batch = try TrainingTinyModel.batch()
        let count = batch.supervisedCount
        XCTAssertEqual(count, 8)
        lora.grads.zero()
        let lossSum = try trainer.accumulateGradients(batch, gradScale: 1 / Float(count))
        let (evalSum, evalCount) = try trainer.loss(batch)
        XCTAssertEqual(evalCount, count)
        XCTAssertEqual(lossSum, evalSum, accuracy: 1e-5 * abs(evalSum))

        func meanLoss() throws -> Double { try trainer.loss(batch).sum / Double(count) }
        let eps: Float = 1e-2
        for e in lora.entries {
            for (offset, size) in [(e.aOffset, 2 * e.inFeatures), (e.bOffset, e.outFeatures * 2)] {
                let dir = (0..<size).map { _ in rng.uniform(-1, 1) }
                var analytic = 0.0
                for i in 0..<size { analytic += Double(lora.grads[offset + i]) * Double(dir[i]) }
                let saved = (0..<size).map { lora.values[offset + $0] }
                for i in 0..<size { lora.values[offset + i] = saved[i] + eps * dir[i] }
                let plus = try meanLoss()
                for i in 0..<size { lora.values[offset + i] = saved[i] - eps * dir[i] }
                let minus = try meanLoss()
                for i in 0..<size { lora.values[offset + i] = saved[i] }
                let numeric = (plus - minus) / Double(2 * eps)
                let tol = 2e-2 * max(abs(numeric), 1e-2)
                XCTAssertEqual(analytic, numeric, accuracy: tol, "layer \(e.layer) \(e.target) \(offset == e.aOffset ? "A" : "B")")
            }
        }
    }

    /// Gradient accumulation over two micro-batches equals the gradient of one batch holding both.
    func testAccumulationEqualsOneBatch() throws {
        let base = try TrainingTinyModel.base()
        let lora = try LoRAParameters(shape: TrainingTinyModel.shape, rank: 2, alpha: 4, targets: [.q, .v, .down])
        lora.initialise(seed: 3)
        var rng = SplitMix64(seed: 5)
        for e in lora.entries { for i in 0..<(e.outFeatures * 2) { lora.values[e.bOffset + i] = rng.uniform(-0.3, 0.3) } }
        let trainer = try LoRATrainer(base: base, lora: lora)
        let full = try TrainingTinyModel.batch()
        let total = Float(full.supervisedCount)
        lora.grads.zero()
        try trainer.accumulateGradients(full, gradScale: 1 / total)
        let reference = lora.grads.array
        let first = try TrainingBatch(batchSize: 1, seqLen: full.seqLen, inputIds: Array(full.inputIds[0..<full.seqLen]),
                                      labels: Array(full.labels[0..<full.seqLen]), validLengths: [full.validLengths[0]])
        let second = try TrainingBatch(sequences: [(Array(full.inputIds[full.seqLen..<(full.seqLen + 5)]),
                                                    Array(full.labels[full.seqLen..<(full.seqLen + 5)]))], padId: 2)
        lora.grads.zero()
        try trainer.accumulateGradients(first, gradScale: 1 / total)
        try trainer.accumulateGradients(second, gradScale: 1 / total)
        let acc = lora.grads.array
        var num = 0.0, den = 0.0
        for i in 0..<acc.count { num += Double((acc[i] - reference[i]) * (acc[i] - reference[i])); den += Double(reference[i] * reference[i]) }
        XCTAssertGreaterThan(den, 0)
        XCTAssertLessThan((num / den).squareRoot(), 1e-5)
    }

    /// Keeping every layer's activations and recomputing them give the same gradients.
    func testKeptActivationsEqualRecomputation() throws {
        let base = try TrainingTinyModel.base()
        let lora = try LoRAParameters(shape: TrainingTinyModel.shape, rank: 2, alpha: 4, targets: LoRATarget.allCases)
        lora.initialise(seed: 8)
        var rng = SplitMix64(seed: 6)
        for e in lora.entries { for i in 0..<(e.outFeatures * 2) { lora.values[e.bOffset + i] = rng.uniform(-0.3, 0.3) } }
        let trainer = try LoRATrainer(base: base, lora: lora)
        let batch = try TrainingTinyModel.batch()
        var results: [[Float]] = []
        for keep in [false, true, false] {
            trainer.keepActivations = keep
            lora.grads.zero()
            try trainer.accumulateGradients(batch, gradScale: 0.125)
            results.append(lora.grads.array)
        }
        XCTAssertEqual(results[0], results[1])
        XCTAssertEqual(results[0], results[2])
    }
}
