import EdgeRuntime
import Foundation
import Kernels
import Logging
import XCTest

/// KV caches grown on demand and preemption by recompute, on the real test model: requests whose
/// worst case (prompt + max_tokens) far exceeds the budget still run together while what they hold
/// fits; a sequence preempted for an older one's growth resumes with exactly the tokens (and
/// logprobs) an un-preempted run gives; a lone sequence the budget cannot hold ends with `length`.
final class KVGrowthTests: XCTestCase {
    private struct IDText: IncrementalDetokenizer {
        mutating func feed(_ id: Int32) -> String { "<\(id)>" }
        mutating func flush() -> String { "" }
    }

    private static let prompts: [[Int32]] = [
        [504, 3458, 282, 4649, 314], [1, 9690, 198, 2683, 359, 253, 5356], [28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39],
    ]

    private var bytesPerPosition: Int {
        get throws { SequenceCache.bytesPerPosition(hyperparameters: try EngineTestModel.weights().hyperparameters) }
    }

    private func makeScheduler(budgetPositions: Int, growth: Int = 16, maxQueued: Int = 16, prefixCache: Bool = false, chunk: Int = 4,
                               kv: SequenceCache.Precision = .f32) throws -> InferenceScheduler {
        let model = LlamaModel(weights: try EngineTestModel.weights(), activations: .int8, kvPrecision: kv)
        let perPosition = SequenceCache.bytesPerPosition(hyperparameters: model.hyperparameters, precision: kv)
        let limits = SchedulerLimits(maxRunning: 8, maxQueued: maxQueued, kvBudgetBytes: budgetPositions * perPosition,
                                     prefillChunk: chunk, prefixCacheBytes: prefixCache ? 16 << 20 : 0, kvGrowthPositions: growth)
        return InferenceScheduler(model: model, limits: limits, endOfGeneration: [], makeDetokenizer: { IDText() })
    }

    private struct Run: Equatable {
        var ids: [Int32] = []
        var logprobs: [Float?] = []
        var top: [[Int32]] = []
        var finish: FinishReason?
        var completionTokens = -1
    }

    private static func collect(_ stream: AsyncThrowingStream<GenerationEvent, Error>) async throws -> Run {
        var run = Run()
        for try await event in stream {
            switch event {
            case .token(let t):
                run.ids.append(t.id)
                run.logprobs.append(t.logprob)
                run.top.append(t.topLogprobs.map(\.id))
            case .finished(let s):
                run.finish = s.finishReason
                run.completionTokens = s.completionTokens
            case .promptLogprobs: break
            }
        }
        return run
    }

    private func waitForIdle(_ s: InferenceScheduler) async throws -> InferenceScheduler.Status {
        var status = s.status()
        for _ in 0..<200 where status.running > 0 || status.queued > 0 || status.kvBytesUsed > 0 {
            try await Task.sleep(for: .milliseconds(20))
            status = s.status()
        }
        return status
    }

    /// `[scheduler] kv_growth_positions` and `kv_precision` reach the daemon's engine: one running
    /// request holds its prompt rounded up to the configured step, at the configured bytes per position.
    func testSchedulerConfigKeysReachTheEngine() async throws {
        let model = try EngineTestModel.directory()
        let cacheDir = NSTemporaryDirectory() + "kv-config-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: cacheDir) }
        let hp = try EngineTestModel.weights().hyperparameters
        // "auto" (also the default) is f16 exactly where the attention kernel reads it no slower.
        let auto: SequenceCache.Precision = ek_kv_f16_native() != 0 ? .f16 : .f32
        XCTAssertEqual(DaemonConfiguration().scheduler.kvPrecision, "auto")
        for (name, precision, growth) in [("f16", SequenceCache.Precision.f16, 64), ("f32", .f32, 32), ("auto", auto, 48), (nil, auto, 40)] {
            let config = try DaemonConfiguration.parse("""
                [model]
                path = "\(model)"
                [scheduler]
                kv_growth_positions = \(growth)
                \(name.map { "kv_precision = \"\($0)\"" } ?? "")
                [adapters]
                cache_dir = "\(cacheDir)"
                """, path: "c.toml")
            let backend = try await EngineBackend(config, Logger(label: "test"))
            XCTAssertEqual(backend.scheduler.limits.kvGrowthPositions, growth)
            // Prompt 5 + max_tokens 20 is below one growth step, so the cache holds exactly 25
            // positions from admission to the end (no growth to race with) at the configured width.
            let stream = try backend.scheduler.submit(GenerationRequest(id: "r", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 20))
            var held = 0
            for try await event in stream {
                if case .token = event, held == 0 { held = backend.scheduler.status().kvBytesUsed }
            }
            XCTAssertEqual(held, 25 * SequenceCache.bytesPerPosition(hyperparameters: hp, precision: precision), "\(name ?? "default"): \(precision)")
            backend.scheduler.shutdown()
        }
        for (bad, key) in [("kv_precision = \"bf16\"", "kv_precision"), ("kv_growth_positions = 0", "kv_growth_positions")] {
            XCTAssertThrowsError(try DaemonConfiguration.parse("[scheduler]\n\(bad)\n", path: "c.toml")) { e in
                XCTAssertTrue("\(e)".contains("[scheduler] \(key)"), "\(e)")
            }
        }
    }

    func testRequestsWithLargeMaxTokensRunTogetherWhileTheirUseFits() async throws {
        // Room for 4 × 512 positions; each request may grow to 4000+ (a worst-case reservation
        // would be larger than the whole budget). No waiting line: each must start at once.
        let s = try makeScheduler(budgetPositions: 4 * 512, growth: 16, maxQueued: 0)
        defer { s.shutdown() }
        var streams: [AsyncThrowingStream<GenerationEvent, Error>] = []
        for i in 0..<4 {
            streams.append(try s.submit(GenerationRequest(id: "big\(i)", prompt: Self.prompts[i % 3] + [Int32(200 + i)],
                                                          sampling: .greedy, maxTokens: 4000, ignoreEOS: true)))
        }
        // Each yields 8 tokens; then every one is running at once and none was preempted.
        let firsts = try await withThrowingTaskGroup(of: Int.self) { group in
            for stream in streams {
                group.addTask {
                    var n = 0
                    for try await event in stream { if case .token = event { n += 1; if n == 8 { break } } }
                    return n
                }
            }
            var counts: [Int] = []
            for try await n in group { counts.append(n) }
            return counts
        }
        XCTAssertEqual(firsts, [8, 8, 8, 8])
        let status = s.status()
        XCTAssertEqual(status.running + status.queued, 4)
        XCTAssertEqual(status.queued, 0, "a request waited although what the running ones hold fits")
        XCTAssertEqual(status.preemptions, 0)
        XCTAssertGreaterThan(status.kvBytesUsed, 0)
        XCTAssertLessThanOrEqual(status.kvBytesUsed, status.kvBytesBudget)
        XCTAssertLessThan(status.kvBytesUsed, 4 * 4000 * (try bytesPerPosition) / 4, "caches hold what they use, not their worst case")
        streams.removeAll()
        let idle = try await waitForIdle(s)
        XCTAssertEqual(idle.running, 0)
        XCTAssertEqual(idle.kvBytesUsed, 0, "cancelled sequences freed their KV")
    }

    func testPreemptedSequencesResumeWithIdenticalGreedyAndSeededOutput() async throws {
        let adapter = try EngineTestModel.adapterA()
        let seeded = SamplingParameters(temperature: 0.9, topP: 0.95, seed: 1234)
        let requests: [(GenerationRequest, AdapterMix)] = [
            (GenerationRequest(id: "greedy", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 40, ignoreEOS: true,
                               logprobs: true, topLogprobs: 2), .none),
            (GenerationRequest(id: "seeded", prompt: Self.prompts[1], sampling: seeded, maxTokens: 40, ignoreEOS: true), AdapterMix([(adapter, 1)])),
            (GenerationRequest(id: "greedy-adapter", prompt: Self.prompts[2], sampling: .greedy, maxTokens: 30, ignoreEOS: true,
                               logprobs: true), AdapterMix([(adapter, 0.5)])),
        ]
        // 64 positions: the three start at 16 each, but only one can reach its 42–47 positions.
        // Recomputation runs in chunks of 4 or 16 decode rows; f32 and f16 KV.
        for (prefix, chunk, kv) in [(false, 4, SequenceCache.Precision.f32), (true, 16, .f16)] {
            // Solo references without a budget (the same prompt chunking and KV precision).
            let free = try makeScheduler(budgetPositions: 0, chunk: chunk, kv: kv)
            defer { free.shutdown() }
            var solo: [Run] = []
            for (r, mix) in requests { solo.append(try await Self.collect(try free.submit(r, adapters: mix))) }
            XCTAssertEqual(solo.map(\.ids.count), [40, 40, 30])

            let tight = try makeScheduler(budgetPositions: 64, growth: 16, prefixCache: prefix, chunk: chunk, kv: kv)
            defer { tight.shutdown() }
            let streams = try requests.map { try tight.submit($0.0, adapters: $0.1) }
            let runs = try await withThrowingTaskGroup(of: (Int, Run).self) { group in
                for (i, stream) in streams.enumerated() { group.addTask { (i, try await Self.collect(stream)) } }
                var out = [Run](repeating: Run(), count: streams.count)
                for try await (i, run) in group { out[i] = run }
                return out
            }
            for i in requests.indices {
                XCTAssertEqual(runs[i].ids, solo[i].ids, "\(requests[i].0.id) (prefix cache \(prefix)): tokens differ from its solo run")
                XCTAssertEqual(runs[i].logprobs, solo[i].logprobs, "\(requests[i].0.id): logprobs differ")
                XCTAssertEqual(runs[i].top, solo[i].top)
                XCTAssertEqual(runs[i].finish, .length)
                XCTAssertEqual(runs[i].completionTokens, solo[i].ids.count)
            }
            let status = try await waitForIdle(tight)
            XCTAssertGreaterThanOrEqual(status.preemptions, 2, "the budget forces preemptions")
            XCTAssertEqual(status.kvBytesUsed, 0)
            XCTAssertEqual(status.running, 0)
            XCTAssertLessThanOrEqual(status.generatedTokensTotal, 110, "recomputed tokens are not counted twice")
        }
    }

    func testALoneSequenceThatCannotGrowEndsWithLength() async throws {
        let reference = try makeScheduler(budgetPositions: 0)
        defer { reference.shutdown() }
        let request = GenerationRequest(id: "lone", prompt: Self.prompts[0], sampling: .greedy, maxTokens: 50, ignoreEOS: true)
        let full = try await Self.collect(try reference.submit(request))
        XCTAssertEqual(full.ids.count, 50)

        let s = try makeScheduler(budgetPositions: 40, growth: 16)
        defer { s.shutdown() }
        let cut = try await Self.collect(try s.submit(request))
        XCTAssertEqual(cut.finish, .length)
        // 32 positions fit (two growth steps; a third would pass 40): 27 tokens fed + 1 pending.
        XCTAssertEqual(cut.ids.count, 32 - Self.prompts[0].count + 1)
        XCTAssertEqual(cut.ids, Array(full.ids.prefix(cut.ids.count)))
        XCTAssertEqual(cut.completionTokens, cut.ids.count)
        let status = try await waitForIdle(s)
        XCTAssertEqual(status.kvBytesUsed, 0)

        // A prompt that does not fit the whole budget is refused up front.
        XCTAssertThrowsError(try s.submit(GenerationRequest(id: "huge", prompt: [Int32](repeating: 28, count: 40), maxTokens: 1))) { error in
            guard case EngineError.invalidRequest(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("budget"), message)
        }
    }

    func testCacheGrowthKeepsThePositionsHeld() throws {
        let hp = try EngineTestModel.weights().hyperparameters
        let prompt = Self.prompts[2]
        for kv in SequenceCache.Precision.allCases {
            let model = LlamaModel(weights: try EngineTestModel.weights(), activations: .f32, kvPrecision: kv)
            // The same prompt into a cache large from the start, and into caches grown mid-way:
            // within their reserved range (in place) and past it (copied).
            let large = model.makeCache(capacity: 20)
            XCTAssertEqual(large.precision, kv)
            _ = try model.forward([.init(cache: large, tokens: Array(prompt.prefix(8)), logits: .none)])
            let expected = try model.forward([.init(cache: large, tokens: Array(prompt.dropFirst(8)))])[0]
            for reserve in [8, 64] {
                let small = model.makeCache(capacity: 8, reserve: reserve)
                XCTAssertEqual(small.byteCount, SequenceCache.byteCount(hyperparameters: hp, capacity: 8, precision: kv), "charged for its capacity, not its reservation")
                _ = try model.forward([.init(cache: small, tokens: Array(prompt.prefix(8)), logits: .none)])
                XCTAssertThrowsError(try model.forward([.init(cache: small, tokens: [prompt[8]])]), "a full cache refuses a token until it grows")
                XCTAssertEqual(small.growsInPlace(to: 20), reserve >= 20)
                small.grow(to: 20)
                XCTAssertEqual(small.capacity, 20)
                // At least: a range a freed cache gave back may be larger (the model's KVStoragePool).
                XCTAssertGreaterThanOrEqual(small.reservedCapacity, max(reserve, 20))
                XCTAssertEqual(small.byteCount, model.kvBytes(positions: 20))
                let got = try model.forward([.init(cache: small, tokens: Array(prompt.dropFirst(8)))])[0]
                XCTAssertEqual(got, expected, "growing the \(kv) cache (reserve \(reserve)) changed what it holds")
                small.grow(to: 4)
                XCTAssertEqual(small.capacity, 20, "growing never shrinks")
                small.grow(to: hp.contextLength * 2)
                XCTAssertEqual(small.capacity, hp.contextLength, "growth stops at the context length")
            }
        }
        XCTAssertEqual(SequenceCache.bytesPerPosition(hyperparameters: hp, precision: .f16) * 2, SequenceCache.bytesPerPosition(hyperparameters: hp))
        // One attention call serves a batch: caches of both precisions cannot share it.
        let f32 = LlamaModel(weights: try EngineTestModel.weights(), kvPrecision: .f32)
        let f16 = LlamaModel(weights: try EngineTestModel.weights(), kvPrecision: .f16)
        XCTAssertThrowsError(try f32.forward([.init(cache: f32.makeCache(capacity: 4), tokens: [1]), .init(cache: f16.makeCache(capacity: 4), tokens: [1])]))
    }
}
