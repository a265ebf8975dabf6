import AdapterCache
import Foundation
import XCTest
@testable import EdgeRuntime

/// The acceptance bar of on-device QLoRA: on the fixture's first batch, with the fixture's initial
/// LoRA weights, our f32 forward/backward over the NF4 base (imported from the real GGUF by the
/// project's importer) reproduces PyTorch + PEFT: loss within 1e-4 relative, and the gradient of
/// every LoRA tensor within 1e-3 relative (‖ours − ref‖ / ‖ref‖).
final class TrainingStep1ReferenceTests: XCTestCase {
    nonisolated(unsafe) static var tmp: URL?
    nonisolated(unsafe) static var modelDir: String?

    /// Imports the real model once for the tests of this class.
    func model() throws -> (dir: String, tmp: URL) {
        if let d = Self.modelDir, let t = Self.tmp { return (d, t) }
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("edge-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        Self.tmp = tmp
        Self.modelDir = try TrainingFixtures.importedModel(into: tmp)
        return (Self.modelDir!, tmp)
    }

    override class func tearDown() {
        if let t = tmp { try? FileManager.default.removeItem(at: t) }
        super.tearDown()
    }

    /// The data pipeline (chat template + tokenizer of the imported model, answer-only labels,
    /// right padding with the end-of-turn id) reproduces the reference's tokenized batches exactly.
    func testChatRowsTokenizeLikeTheReference() throws {
        let (modelDir, _) = try model()
        let formatter = try ChatTemplatePromptFormatter(tokenizer: try Tokenizer(directory: URL(fileURLWithPath: modelDir)))
        let data = try Data(contentsOf: URL(fileURLWithPath: TrainingFixtures.path("train.jsonl")))
        let ds = try TrainingDataset(data: data, file: "train.jsonl", formatter: formatter, maxLength: 512)
        XCTAssertEqual(ds.examples.count, 40)
        let ours = try ds.batches(batchSize: 4, padId: formatter.padId)
        let ref = try TrainingBatchFile.batches(try SafetensorsFile(path: TrainingFixtures.path("batches.safetensors")))
        XCTAssertEqual(ours.count, 10)
        XCTAssertEqual(ref.count, 10)
        for (i, (a, b)) in zip(ours, ref).enumerated() {
            XCTAssertEqual(a.seqLen, b.seqLen, "batch\(i) length")
            XCTAssertEqual(a.inputIds, b.inputIds, "batch\(i) input_ids")
            XCTAssertEqual(a.labels, b.labels, "batch\(i) labels")
            XCTAssertEqual(a.validLengths, b.validLengths, "batch\(i) attention_mask")
        }
    }

    func testStep1LossAndGradientsMatchPyTorch() throws {
        let (modelDir, tmp) = try model()
        let base = try TrainingModelLoader.load(directory: modelDir)

        let lora = try LoRAParameters(shape: base.shape, rank: 8, alpha: 16, targets: LoRATarget.allCases)
        XCTAssertEqual(lora.parameterCount, 2_442_240, "the fixture's trainable parameter count")
        try lora.load(from: try TrainingFixtures.zstdSafetensors("lora_init.safetensors", into: tmp))
        let batches = try SafetensorsFile(path: TrainingFixtures.path("batches.safetensors"))
        let batch = try TrainingFixtures.batch(batches, "batch0")

        let trainer = try LoRATrainer(base: base, lora: lora)
        lora.grads.zero()
        let count = batch.supervisedCount
        let sum = try trainer.accumulateGradients(batch, gradScale: 1 / Float(count))
        let loss = sum / Double(count)
        let refLoss = (try TrainingFixtures.trainLog()["train_loss_per_step"] as! [Double])[0]
        print("step-1 loss \(loss) reference \(refLoss) rel \(abs(loss - refLoss) / refLoss)")
        XCTAssertLessThan(abs(loss - refLoss) / refLoss, 1e-4)

        let ref = try TrainingFixtures.zstdSafetensors("grads_step1.safetensors", into: tmp)
        var worst = 0.0, worstName = ""
        var compared = 0
        for (name, _, ours) in lora.tensors(gradients: true) {
            let key = name.replacingOccurrences(of: ".weight", with: ".default.weight")
            let r: [Float] = try ref.floats(key)
            XCTAssertEqual(r.count, ours.count, key)
            var num = 0.0, den = 0.0
            for i in 0..<r.count {
                let d = Double(ours[i]) - Double(r[i])
                num += d * d; den += Double(r[i]) * Double(r[i])
            }
            compared += 1
            if den == 0 {
                // A's gradient is exactly 0 at step 1 (B = 0): ours must be 0 too.
                XCTAssertEqual(num, 0, "\(key) should have a zero gradient")
                continue
            }
            let rel = (num / den).squareRoot()
            if rel > worst { worst = rel; worstName = key }
            XCTAssertLessThan(rel, 1e-3, key)
        }
        XCTAssertEqual(compared, 420)
        print("step-1 gradients: worst relative error \(worst) (\(worstName))")
    }
}
