import AdapterCache
import Foundation
import XCTest
@testable import EdgeRuntime

/// A run interrupted after a checkpoint and resumed in a fresh process-like state ends with exactly
/// the weights of an uninterrupted run (same data position, optimiser moments and step count).
final class FinetuneCheckpointTests: XCTestCase {
    func examples(_ n: Int, seed: UInt64) -> [TrainingExample] {
        var rng = SplitMix64(seed: seed)
        return (0..<n).map { i in
            let p = (0..<(3 + i % 3)).map { _ in Int32(rng.next() % 30) + 3 }
            let a = (0..<(2 + i % 2)).map { _ in Int32(rng.next() % 30) + 3 } + [2]
            return TrainingExample(line: i + 1, promptIds: p, answerIds: a)
        }
    }

    func hyper() -> FineTuneHyperparameters {
        var h = FineTuneHyperparameters()
        h.rank = 2; h.alpha = 4; h.batchSize = 2; h.epochs = 2; h.gradientAccumulation = 2
        h.learningRate = 5e-3; h.warmupSteps = 1; h.schedule = .cosine; h.seed = 9; h.weightDecay = 0.01
        return h
    }

    func testResumeFromCheckpointReproducesTheUninterruptedRun() throws {
        let base = try TrainingTinyModel.base()
        let train = TrainingDataset(file: "t", examples: examples(10, seed: 1))
        let held = TrainingDataset(file: "h", examples: examples(3, seed: 2))
        let straight = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
        XCTAssertEqual(straight.totalSteps, 5)  // 5 batches/epoch × 2 epochs / accumulation 2
        let before = try straight.evaluate()
        var losses: [Double] = []
        try straight.run(onStep: { losses.append($0.loss) })
        XCTAssertEqual(losses.count, 5)
        XCTAssertLessThan(try straight.evaluate(), before * 2, "training stays finite")

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edge-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let first = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
        var steps = 0
        try first.run(checkpointEvery: 2, checkpointPath: ckpt, shouldStop: { steps >= 3 }, onStep: { _ in steps += 1 })
        XCTAssertEqual(first.completedSteps, 3)

        let resumed = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
        try resumed.loadCheckpoint(from: ckpt)
        XCTAssertEqual(resumed.completedSteps, 2, "the last checkpoint was written after step 2")
        var tail: [Double] = []
        try resumed.run(onStep: { tail.append($0.loss) })
        XCTAssertEqual(tail.count, 3)
        for (a, b) in zip(tail, losses.suffix(3)) { XCTAssertEqual(a, b, accuracy: 1e-12) }
        XCTAssertEqual(resumed.lora.values.array, straight.lora.values.array)

        // A checkpoint of another job is refused with a reason.
        var other = hyper(); other.learningRate = 1e-2
        let foreign = try LoRAFineTuner(base: base, hyper: other, train: train, heldOut: held, padId: 0)
        XCTAssertThrowsError(try foreign.loadCheckpoint(from: ckpt)) { e in
            guard case TrainingError.checkpointInvalid = e else { return XCTFail("\(e)") }
        }
    }

    /// The preemption unit is a layer, not a step: `shouldStop` turning true in the middle of a
    /// step's forward or backward abandons that step (weights, moments and step count untouched),
    /// and a resume from the checkpoint written then ends bit-for-bit where the uninterrupted run does.
    func testInterruptionInsideAStepIsPromptAndResumesExactly() throws {
        let base = try TrainingTinyModel.base()
        let train = TrainingDataset(file: "t", examples: examples(10, seed: 1))
        let held = TrainingDataset(file: "h", examples: examples(3, seed: 2))
        let straight = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
        try straight.run()

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edge-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("checkpoint.safetensors").path
        let layers = base.shape.layers
        // Polls per step: 1 before the step, then per micro-batch `layers` forward + `layers`
        // backward (+ recomputation) + head chunks. Stop at several points inside steps 2 and 4.
        for stopAtPoll in [3, 2 + layers, 2 + 2 * layers + 1, 9 + 3 * layers] {
            let t = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
            var polls = 0, steps = 0, pollsAtLastStep = 0
            try t.run(shouldStop: {
                polls += 1
                return polls >= stopAtPoll
            }, onStep: { _ in steps += 1; pollsAtLastStep = polls })
            XCTAssertEqual(t.completedSteps, steps)
            XCTAssertEqual(polls, stopAtPoll, "run returns at the first true poll")
            XCTAssertGreaterThan(polls - pollsAtLastStep, 1, "stopped inside a step, not between steps (stop at poll \(stopAtPoll))")
            try t.saveCheckpoint(to: ckpt)
            let resumed = try LoRAFineTuner(base: base, hyper: hyper(), train: train, heldOut: held, padId: 0)
            try resumed.loadCheckpoint(from: ckpt)
            XCTAssertEqual(resumed.completedSteps, steps)
            try resumed.run()
            XCTAssertEqual(resumed.lora.values.array, straight.lora.values.array, "stop at poll \(stopAtPoll)")
            XCTAssertEqual(resumed.optimizer.m.array, straight.optimizer.m.array)
        }
    }

    func testPEFTDirectoryRoundTrips() throws {
        let base = try TrainingTinyModel.base()
        let lora = try LoRAParameters(shape: base.shape, rank: 2, alpha: 4, targets: [.q, .down])
        lora.initialise(seed: 4)
        lora.values[lora.entries[0].bOffset] = 0.5
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edge-peft-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try lora.savePEFT(to: dir, baseModelName: "tiny")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_config.json"))) as! [String: Any]
        XCTAssertEqual(config["r"] as? Int, 2)
        XCTAssertEqual(config["lora_alpha"] as? Int, 4)
        XCTAssertEqual(config["peft_type"] as? String, "LORA")
        XCTAssertEqual(config["target_modules"] as? [String], ["q_proj", "down_proj"])
        let back = try LoRAParameters(shape: base.shape, rank: 2, alpha: 4, targets: [.q, .down])
        try back.load(from: try SafetensorsFile(path: dir + "/adapter_model.safetensors"))
        XCTAssertEqual(back.values.array, lora.values.array)
    }

    func testInitialisationIsPEFTsKaimingUniformAndZeroB() throws {
        let lora = try LoRAParameters(shape: TrainingTinyModel.shape, rank: 4, alpha: 8, targets: LoRATarget.allCases)
        lora.initialise(seed: 1)
        for e in lora.entries {
            let bound = 1 / Float(e.inFeatures).squareRoot()
            let a = (0..<(4 * e.inFeatures)).map { lora.values[e.aOffset + $0] }
            XCTAssertTrue(a.allSatisfy { abs($0) <= bound })
            XCTAssertGreaterThan(a.map(abs).max()!, bound * 0.8)
            XCTAssertTrue((0..<(4 * e.outFeatures)).allSatisfy { lora.values[e.bOffset + $0] == 0 })
        }
        XCTAssertEqual(lora.scaling, 2)
    }
}
