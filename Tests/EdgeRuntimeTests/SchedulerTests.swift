import EdgeRuntime
import XCTest

/// Detokenizer stand-in: the scheduler tests compare ids, not text.
private struct IDText: IncrementalDetokenizer {
    mutating func feed(_ id: Int32) -> String { "<\(id)>" }
    mutating func flush() -> String { "" }
}

final class SchedulerTests: XCTestCase {
    private static let prompts: [[Int32]] = [
        [504, 3458, 282, 4649, 314], [1, 9690, 198, 2683, 359, 253, 5356], [28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39],
    ]

    private func makeScheduler(_ limits: SchedulerLimits = SchedulerLimits(), activations: LlamaModel.ActivationPrecision = .f32) throws -> InferenceScheduler {
        let model = LlamaModel(weights: try EngineTestModel.weights(), activations: activations)
        return InferenceScheduler(model: model, limits: limits, endOfGeneration: [], makeDetokenizer: { IDText() })
    }

    private static func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> (ids: [Int32], summary: GenerationSummary?, prompt: [PromptTokenLogprob]) {
        var ids: [Int32] = []
        var summary: GenerationSummary?
        var prompt: [PromptTokenLogprob] = []
        for try await event in stream {
            switch event {
            case .token(let t): ids.append(t.id)
            case .finished(let s): summary = s
            case .promptLogprobs(let p): prompt = p
            }
        }
        return (ids, summary, prompt)
    }

    /// A random rank-`rank` adapter over every projection (deterministic from `seed`).
    private func syntheticAdapter(seed: UInt64, rank: Int) throws -> LoRABinding {
        let hp = try EngineTestModel.weights().hyperparameters
        var rng = Xoshiro256(seed: seed)
        var pairs: [LoRABinding.Pair] = []
        for layer in 0..<hp.layerCount {
            for p in LlamaProjection.allCases {
                let (out, inp) = p.shape(hp)
                let a = (0..<(rank * inp)).map { _ in Float(rng.nextUnit() - 0.5) * 0.1 }
                let b = (0..<(out * rank)).map { _ in Float(rng.nextUnit() - 0.5) * 0.1 }
                pairs.append(.init(key: "layers.\(layer).\(p.moduleName)", layer: layer, projection: p, rank: rank, scale: 2, a: a, b: b))
            }
        }
        return try LoRABinding(name: "synthetic-\(seed)", pairs: pairs, hyperparameters: hp)
    }

    func testGreedyOutputIsIndependentOfBatchMates() async throws {
        try await checkGreedyOutputIsIndependentOfBatchMates(activations: .f32)
    }

    /// The fastest mode sends the sampled rows of a whole step through the int8 head in one pass.
    func testGreedyOutputIsIndependentOfBatchMatesInTheFastestMode() async throws {
        try await checkGreedyOutputIsIndependentOfBatchMates(activations: .int8)
    }

    private func checkGreedyOutputIsIndependentOfBatchMates(activations: LlamaModel.ActivationPrecision) async throws {
        let scheduler = try makeScheduler(SchedulerLimits(maxRunning: 16, maxQueued: 32, prefillChunk: 8), activations: activations)
        defer { scheduler.shutdown() }
        let adapterA = try EngineTestModel.adapterA()
        let others = [try syntheticAdapter(seed: 1, rank: 4), try syntheticAdapter(seed: 2, rank: 16)]
        let target = GenerationRequest(id: "target", prompt: Self.prompts[1], sampling: .greedy, maxTokens: 12)
        let targetMix = AdapterMix([(adapterA, 1)])
        let alone = try await Self.collect(try scheduler.submit(target, adapters: targetMix))
        XCTAssertEqual(alone.ids.count, 12)

        let results = try await withThrowingTaskGroup(of: (Int, [Int32]).self) { group in
            for i in 0..<16 {
                let request: GenerationRequest
                let mix: AdapterMix
                if i == 5 {
                    request = target
                    mix = targetMix
                } else {
                    request = GenerationRequest(id: "mate\(i)", prompt: Self.prompts[i % 3] + [Int32(100 + i)], sampling: .greedy, maxTokens: 4 + i)
                    switch i % 4 {
                    case 0: mix = .none
                    case 1: mix = AdapterMix([(others[0], 1)])
                    case 2: mix = AdapterMix([(adapterA, 0.5), (others[1], 1)])
                    default: mix = AdapterMix([(others[1], -1)])
                    }
                }
                let stream = try scheduler.submit(request, adapters: mix)
                group.addTask { (i, try await Self.collect(stream).ids) }
            }
            var out: [Int: [Int32]] = [:]
            for try await (i, ids) in group { out[i] = ids }
            return out
        }
        XCTAssertEqual(results[5], alone.ids, "the target's greedy output changed when batched with 15 other sequences")
    }

    func testAdmissionIsBoundedWithRetryAfter() async throws {
        let scheduler = try makeScheduler(SchedulerLimits(maxRunning: 1, maxQueued: 1))
        defer { scheduler.shutdown() }
        let long = GenerationRequest(id: "a", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 40)
        let s1 = try scheduler.submit(long)
        let s2 = try scheduler.submit(GenerationRequest(id: "b", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 2))
        var refused: EngineError?
        do { _ = try scheduler.submit(GenerationRequest(id: "c", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 2)) } catch { refused = error }
        guard case .atCapacity(_, let retry)? = refused else { return XCTFail("third request was admitted: \(String(describing: refused))") }
        XCTAssertGreaterThanOrEqual(retry, 1)
        _ = try await Self.collect(s1)
        _ = try await Self.collect(s2)
    }

    func testCancellingTheConsumerFreesTheSequence() async throws {
        let scheduler = try makeScheduler()
        defer { scheduler.shutdown() }
        let stream = try scheduler.submit(GenerationRequest(id: "x", prompt: Self.prompts[2], sampling: .greedy, maxTokens: 500))
        let task = Task {
            var n = 0
            for try await event in stream { if case .token = event { n += 1 } }
            return n
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        _ = try? await task.value
        var status = scheduler.status()
        for _ in 0..<100 where status.running > 0 || status.kvBytesUsed > 0 {
            try await Task.sleep(for: .milliseconds(20))
            status = scheduler.status()
        }
        XCTAssertEqual(status.running, 0)
        XCTAssertEqual(status.kvBytesUsed, 0)
        XCTAssertLessThan(status.generatedTokensTotal, 500)
    }

    func testExpiredDeadlineEndsCancelled() async throws {
        let scheduler = try makeScheduler()
        defer { scheduler.shutdown() }
        let r = GenerationRequest(id: "late", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 10_000,
                                  deadline: .now + .milliseconds(150))
        let result = try await Self.collect(try scheduler.submit(r))
        XCTAssertEqual(result.summary?.finishReason, .cancelled)
    }

    func testEchoLogprobsAndStopTokens() async throws {
        let scheduler = try makeScheduler(SchedulerLimits(prefillChunk: 4))
        defer { scheduler.shutdown() }
        let prompt = Self.prompts[2]
        let first = try await Self.collect(try scheduler.submit(GenerationRequest(
            id: "e", prompt: prompt, sampling: .greedy, maxTokens: 3, logprobs: true, topLogprobs: 2, echo: true)))
        XCTAssertEqual(first.prompt.count, prompt.count)
        XCTAssertNil(first.prompt[0].logprob)
        XCTAssertEqual(first.prompt.map(\.id), prompt)
        XCTAssert(first.prompt.dropFirst().allSatisfy { $0.logprob != nil && $0.topLogprobs.count == 2 })
        XCTAssertEqual(first.summary?.finishReason, .length)
        XCTAssertEqual(first.summary?.completionTokens, 3)
        // Stopping on the second generated token: it is not emitted.
        let stopped = try await Self.collect(try scheduler.submit(GenerationRequest(
            id: "s", prompt: prompt, sampling: .greedy, maxTokens: 3, stopTokenIDs: [first.ids[1]])))
        XCTAssertEqual(stopped.ids, [first.ids[0]])
        XCTAssertEqual(stopped.summary?.finishReason, .stop)
    }

    func testPromptLongerThanTheContextIsRefused() throws {
        let scheduler = try makeScheduler()
        defer { scheduler.shutdown() }
        let ctx = scheduler.model.hyperparameters.contextLength
        XCTAssertThrowsError(try scheduler.submit(GenerationRequest(id: "big", prompt: [Int32](repeating: 5, count: ctx), maxTokens: 1))) { error in
            guard case EngineError.contextOverflow = error else { return XCTFail("\(error)") }
        }
    }
}
