import EdgeRuntime
import XCTest

/// The scheduler's prompt-prefix cache on the real test model: hits for the same adapter set,
/// never across adapter sets (llama.cpp #26207), greedy output identical with and without it,
/// bounded by the KV budget.
final class PrefixCacheTests: XCTestCase {
    private struct IDText: IncrementalDetokenizer {
        mutating func feed(_ id: Int32) -> String { "<\(id)>" }
        mutating func flush() -> String { "" }
    }

    /// 21 tokens: with prefill chunks of 8 the cut points fall inside, at and after chunk edges.
    private static let system: [Int32] = [1, 9690, 198, 2683, 359, 253, 5356, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 504, 3458]

    private func makeScheduler(prefixCache: Bool, budget: Int = 0, maxQueued: Int = 32, maxRunning: Int = 16) throws -> InferenceScheduler {
        let model = LlamaModel(weights: try EngineTestModel.weights(), activations: .int8)
        let limits = SchedulerLimits(maxRunning: maxRunning, maxQueued: maxQueued, kvBudgetBytes: budget, prefillChunk: 8,
                                     prefixCacheBytes: prefixCache ? 64 << 20 : 0)
        return InferenceScheduler(model: model, limits: limits, endOfGeneration: [], makeDetokenizer: { IDText() })
    }

    private static func run(_ s: InferenceScheduler, _ prompt: [Int32], _ mix: AdapterMix = .none, tokens: Int = 6) async throws -> (ids: [Int32], cached: Int) {
        var ids: [Int32] = []
        var cached = -1
        for try await event in try s.submit(GenerationRequest(id: "p", prompt: prompt, sampling: .greedy, maxTokens: tokens, ignoreEOS: true), adapters: mix) {
            switch event {
            case .token(let t): ids.append(t.id)
            case .finished(let summary): cached = summary.cachedPromptTokens
            case .promptLogprobs: break
            }
        }
        return (ids, cached)
    }

    func testSamePromptAndAdapterHitsAndMatchesTheUncachedOutput() async throws {
        let adapter = try EngineTestModel.adapterA()
        let mix = AdapterMix([(adapter, 1)])
        let cached = try makeScheduler(prefixCache: true)
        defer { cached.shutdown() }
        let plain = try makeScheduler(prefixCache: false)
        defer { plain.shutdown() }

        // Prompts sharing the system prefix, ending at several positions relative to the chunk grid.
        let prompts: [[Int32]] = [Self.system, Self.system, Self.system + [2, 3], Array(Self.system.prefix(16)) + [7], Array(Self.system.prefix(17)), Self.system + Array(repeating: 44, count: 9)]
        var hits = 0
        for (i, prompt) in prompts.enumerated() {
            for m in [mix, AdapterMix.none] {
                let a = try await Self.run(cached, prompt, m)
                let b = try await Self.run(plain, prompt, m)
                XCTAssertEqual(a.ids, b.ids, "prompt \(i) (\(m.isEmpty ? "base" : "adapter")): output differs with the prefix cache")
                XCTAssertEqual(b.cached, 0)
                if i == 0 { XCTAssertEqual(a.cached, 0, "nothing kept yet for prompt 0") }
                if i == 1 { XCTAssertGreaterThanOrEqual(a.cached, Self.system.count - 2, "the same prompt again reuses all but its tail") }
                if a.cached > 0 { hits += 1 }
                XCTAssertLessThan(a.cached, prompt.count, "at least one prompt token is computed")
            }
        }
        let status = cached.status()
        XCTAssertEqual(status.prefixCache.hits, hits)
        XCTAssertGreaterThanOrEqual(hits, 8)
        XCTAssertEqual(status.prefixCache.hits + status.prefixCache.misses, prompts.count * 2)
        XCTAssertGreaterThan(status.prefixCache.bytes, 0)
        XCTAssertEqual(plain.status().prefixCache.hits, 0)
    }

    func testDifferentAdapterSetsNeverShareAPrefix() async throws {
        let adapter = try EngineTestModel.adapterA()
        let s = try makeScheduler(prefixCache: true)
        defer { s.shutdown() }
        let plain = try makeScheduler(prefixCache: false)
        defer { plain.shutdown() }
        _ = try await Self.run(s, Self.system, AdapterMix([(adapter, 1)]))
        // Same tokens: the base, the adapter at another weight, and under another name all miss.
        for mix in [AdapterMix.none, AdapterMix([(adapter, 0.5)]), AdapterMix([(adapter, 1)], cacheKey: "other@1#00*1")] {
            let r = try await Self.run(s, Self.system, mix)
            XCTAssertEqual(r.cached, 0, "a prefix computed under another adapter set was reused (\(mix.cacheKey))")
            let fresh = try await Self.run(plain, Self.system, mix)
            XCTAssertEqual(r.ids, fresh.ids)
        }
        let status = s.status()
        XCTAssertEqual(status.prefixCache.hits, 0)
        XCTAssertEqual(status.prefixCache.misses, 4)
        // The original set still hits.
        let again = try await Self.run(s, Self.system, AdapterMix([(adapter, 1)]))
        XCTAssertGreaterThan(again.cached, 0)
    }

    func testKeptPrefixesGiveWayToTheKVBudgetAndAFullBudgetSays429() async throws {
        let hp = try EngineTestModel.weights().hyperparameters
        let tokens = 6
        let perRequest = SequenceCache.byteCount(hyperparameters: hp, capacity: Self.system.count + tokens)
        // Room for one running sequence (plus a little), no waiting line.
        let s = try makeScheduler(prefixCache: true, budget: perRequest + perRequest / 2, maxQueued: 0)
        defer { s.shutdown() }
        // Three different prompts in turn: each finished one is kept, and each new admission must
        // evict kept prefixes to fit.
        for k in 0..<3 {
            _ = try await Self.run(s, [Int32(100 + k)] + Self.system, tokens: tokens)
            let status = s.status()
            XCTAssertLessThanOrEqual(status.kvBytesUsed + status.prefixCache.bytes, status.kvBytesBudget, "the budget covers kept prefixes too")
        }
        XCTAssertEqual(s.status().prefixCache.entries, 1)

        // A running sequence holds the budget: the next request is refused with a retry hint.
        let long = try s.submit(GenerationRequest(id: "long", prompt: Self.system, sampling: .greedy, maxTokens: tokens, ignoreEOS: true))
        var refused: EngineError?
        do { _ = try s.submit(GenerationRequest(id: "next", prompt: [5] + Self.system, sampling: .greedy, maxTokens: tokens)) } catch { refused = error }
        guard case .atCapacity(let reason, let retry)? = refused else { return XCTFail("admitted past the KV budget: \(String(describing: refused))") }
        XCTAssertGreaterThanOrEqual(retry, 1)
        XCTAssertTrue(reason.contains("KV"), reason)
        for try await _ in long {}
        // Once it has finished the budget is free again.
        let after = try await Self.run(s, [6] + Self.system, tokens: tokens)
        XCTAssertEqual(after.ids.count, tokens)
    }
}
