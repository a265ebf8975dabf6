import COpenBLAS
import EdgeRuntime
import XCTest

/// Properties of the forward pass that hold for any model: chunking, batching, limits, errors.
final class EngineTests: XCTestCase {
    private let prompt: [Int32] = [504, 3458, 282, 4649, 314, 253, 1345, 28, 9690, 198, 2683]

    private func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func testChunkedPrefillEqualsOneShotPrefill() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights())
        let whole = try SequenceRunner(model: model, prefillChunk: 64).feed(prompt, allLogits: true)
        let chunked = try SequenceRunner(model: model, prefillChunk: 3).feed(prompt, allLogits: true)
        XCTAssertEqual(whole.count, chunked.count)
        XCTAssertLessThan(maxAbsDiff(whole, chunked), 1e-3)
    }

    func testBatchedStepsMatchSeparateRuns() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights())
        let a = Array(prompt.prefix(7)), b = Array(prompt.suffix(4))
        let aliceAlone = try SequenceRunner(model: model).feed(a)
        let bobAlone = try SequenceRunner(model: model).feed(b)
        let ca = model.makeCache(capacity: 16), cb = model.makeCache(capacity: 16)
        let out = try model.forward([.init(cache: ca, tokens: a), .init(cache: cb, tokens: b)])
        XCTAssertEqual(out[0], aliceAlone, "prompt rows must not depend on batch-mates")
        XCTAssertEqual(out[1], bobAlone)
        // Decode rows mixed with a prompt chunk of another sequence.
        let decodeAlone = try { () throws -> [Float] in
            let r = SequenceRunner(model: model, capacity: 16)
            _ = try r.feed(a)
            return try r.feed([42])
        }()
        let cc = model.makeCache(capacity: 16)
        let mixed = try model.forward([.init(cache: cc, tokens: b), .init(cache: ca, tokens: [42])])
        XCTAssertEqual(mixed[1], decodeAlone, "a decode row must not depend on batch-mates")
        XCTAssertEqual(ca.length, 8)
    }

    /// OpenBLAS threads spin for ~0.1 s after a threaded call and take the cores the kernels' pool
    /// waits for; a forward pass that calls OpenBLAS (the f32 mode's dense output head) must run it
    /// single-threaded, whoever set it otherwise before. The fastest mode calls no OpenBLAS at all.
    func testForwardKeepsOpenBLASOnOneThread() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights(), activations: .f32)
        openblas_set_num_threads(2)
        defer { openblas_set_num_threads(1) }
        _ = try SequenceRunner(model: model).feed(prompt)
        XCTAssertEqual(openblas_get_num_threads(), 1)
    }

    func testContextOverflowIsAClearErrorAndLeavesTheCache() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights())
        let runner = SequenceRunner(model: model, capacity: 8)
        _ = try runner.feed(Array(prompt.prefix(6)))
        XCTAssertThrowsError(try runner.feed([1, 2, 3])) { error in
            guard case EngineError.contextOverflow(let needed, let capacity, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(needed, 9)
            XCTAssertEqual(capacity, 8)
            XCTAssert("\(error)".contains("9 positions"))
        }
        XCTAssertEqual(runner.position, 6)
        XCTAssertNoThrow(try runner.feed([1, 2]))
    }

    func testTokenOutsideTheVocabularyIsRefused() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights())
        let vocab = model.hyperparameters.vocabularySize
        XCTAssertThrowsError(try SequenceRunner(model: model).feed([1, Int32(vocab)])) { error in
            XCTAssertEqual(error as? EngineError, .invalidToken(id: Int32(vocab), vocabularySize: vocab))
        }
    }

    func testAdapterThatDoesNotFitNamesTheKey() throws {
        let hp = try EngineTestModel.weights().hyperparameters
        let (out, inp) = LlamaProjection.v.shape(hp)
        let badB = LoRABinding.Pair(key: "base_model.model.model.layers.2.self_attn.v_proj", layer: 2, projection: .v, rank: 2,
                                    scale: 1, a: [Float](repeating: 0, count: 2 * inp), b: [Float](repeating: 0, count: (out + 1) * 2))
        XCTAssertThrowsError(try LoRABinding(name: "bad", pairs: [badB], hyperparameters: hp)) { error in
            XCTAssert("\(error)".contains("layers.2.self_attn.v_proj.lora_B.weight"), "\(error)")
        }
        let badLayer = LoRABinding.Pair(key: "layers.99.mlp.up_proj", layer: 99, projection: .up, rank: 1, scale: 1, a: [], b: [])
        XCTAssertThrowsError(try LoRABinding(name: "bad", pairs: [badLayer], hyperparameters: hp)) { error in
            XCTAssert("\(error)".contains("layers.99.mlp.up_proj"), "\(error)")
        }
    }

    func testWeightedAdapterZeroEqualsBase() throws {
        let model = LlamaModel(weights: try EngineTestModel.weights())
        let base = try SequenceRunner(model: model).feed(prompt)
        let zero = try SequenceRunner(model: model, adapters: AdapterMix([(try EngineTestModel.adapterA(), 0)])).feed(prompt)
        XCTAssertLessThan(maxAbsDiff(base, zero), 1e-4)
        let full = try SequenceRunner(model: model, adapters: AdapterMix([(try EngineTestModel.adapterA(), 1)])).feed(prompt)
        XCTAssertGreaterThan(maxAbsDiff(base, full), 1e-2, "adapter a must change the logits")
    }

    func testRopeScalingFrequencies() {
        var hp = LlamaHyperparameters(hiddenSize: 64, intermediateSize: 128, layerCount: 1, headCount: 1, kvHeadCount: 1,
                                      vocabularySize: 10, rmsNormEps: 1e-5, ropeTheta: 500_000, contextLength: 64, tieWordEmbeddings: true)
        let plain = hp.ropeInverseFrequencies()
        XCTAssertEqual(plain.count, 32)
        XCTAssertEqual(plain[0], 1)
        XCTAssertEqual(Double(plain[1]), 1 / pow(500_000, 2.0 / 64), accuracy: 1e-7)
        hp.ropeScaling = .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192)
        let scaled = hp.ropeInverseFrequencies()
        XCTAssertEqual(scaled[0], plain[0], "high frequencies are kept")
        XCTAssertEqual(scaled[31], plain[31] / 8, accuracy: 1e-12, "low frequencies are divided by the factor")
        hp.ropeScaling = .linear(factor: 4)
        XCTAssertEqual(hp.ropeInverseFrequencies()[3], plain[3] / 4)
    }
}
