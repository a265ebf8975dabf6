import NIOConcurrencyHelpers

/// The daemon's Prometheus metrics. Request-side series (requests, tokens, latencies) are recorded
/// here as requests complete; engine and cache series are read from `BackendStatus` at scrape time.
///
/// Hand-rolled rather than swift-prometheus: the text format is ~100 lines, and one lock over a
/// few dictionaries keeps the hot path (one `observe` per generated token) allocation-free.
/// Concurrency contract: every method is safe from any thread (one lock; no awaits under it).
public final class ServingMetrics: Sendable {
    static let ttftBuckets: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
    static let itlBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1]
    static let durationBuckets: [Double] = [0.001, 0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

    struct Histogram {
        var buckets: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0

        init(_ buckets: [Double]) {
            self.buckets = buckets
            counts = Array(repeating: 0, count: buckets.count)
        }

        mutating func observe(_ v: Double) {
            for i in buckets.indices where v <= buckets[i] { counts[i] += 1 }
            sum += v
            count += 1
        }
    }

    struct State {
        var requests: [String: [Int: Int]] = [:]          // endpoint → status → count
        var promptTokens: [String: Int] = [:]             // adapter label → tokens
        var generatedTokens: [String: Int] = [:]
        var ttft: [String: Histogram] = [:]
        var itl: [String: Histogram] = [:]
        var duration: [String: Histogram] = [:]           // endpoint
        var inFlight = 0
        var disconnects = 0
        var authDenied: [String: Int] = [:]               // permission → count
        var finishReasons: [String: Int] = [:]
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    /// "base", one adapter's name, or names joined with "+" for a combination.
    public static func adapterLabel(_ adapters: [AdapterSelection]) -> String {
        adapters.isEmpty ? "base" : adapters.map(\.adapter.name.value).joined(separator: "+")
    }

    public func requestStarted() { state.withLockedValue { $0.inFlight += 1 } }

    public func requestFinished(endpoint: String, status: Int, seconds: Double) {
        state.withLockedValue {
            $0.inFlight -= 1
            $0.requests[endpoint, default: [:]][status, default: 0] += 1
            $0.duration[endpoint, default: Histogram(Self.durationBuckets)].observe(seconds)
        }
    }

    public func tokens(adapter: String, prompt: Int, generated: Int) {
        state.withLockedValue {
            $0.promptTokens[adapter, default: 0] += prompt
            $0.generatedTokens[adapter, default: 0] += generated
        }
    }

    public func timeToFirstToken(adapter: String, seconds: Double) {
        state.withLockedValue { $0.ttft[adapter, default: Histogram(Self.ttftBuckets)].observe(seconds) }
    }

    public func interTokenLatency(adapter: String, seconds: Double) {
        state.withLockedValue { $0.itl[adapter, default: Histogram(Self.itlBuckets)].observe(seconds) }
    }

    public func finished(reason: String) { state.withLockedValue { $0.finishReasons[reason, default: 0] += 1 } }
    public func clientDisconnected() { state.withLockedValue { $0.disconnects += 1 } }
    public func authDenied(permission: String) { state.withLockedValue { $0.authDenied[permission, default: 0] += 1 } }

    public var requestsInFlight: Int { state.withLockedValue { $0.inFlight } }

    /// Prometheus text exposition format 0.0.4.
    public func render(backend: BackendStatus, modelLoaded: Bool) -> String {
        let s = state.withLockedValue { $0 }
        var out = ""
        func header(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func line(_ name: String, _ labels: [(String, String)], _ value: Double) {
            out += name
            if !labels.isEmpty {
                out += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
            }
            out += " " + Self.format(value) + "\n"
        }
        func histogram(_ name: String, _ help: String, _ label: String, _ series: [String: Histogram]) {
            header(name, "histogram", help)
            for (key, h) in series.sorted(by: { $0.key < $1.key }) {
                for (i, b) in h.buckets.enumerated() { line(name + "_bucket", [(label, key), ("le", Self.format(b))], Double(h.counts[i])) }
                line(name + "_bucket", [(label, key), ("le", "+Inf")], Double(h.count))
                line(name + "_sum", [(label, key)], h.sum)
                line(name + "_count", [(label, key)], Double(h.count))
            }
        }

        header("edge_model_loaded", "gauge", "1 when a base model is loaded and inference is available.")
        line("edge_model_loaded", [], modelLoaded ? 1 : 0)
        header("edge_requests_total", "counter", "HTTP requests answered, by endpoint and status.")
        for (ep, byStatus) in s.requests.sorted(by: { $0.key < $1.key }) {
            for (st, n) in byStatus.sorted(by: { $0.key < $1.key }) { line("edge_requests_total", [("endpoint", ep), ("status", String(st))], Double(n)) }
        }
        header("edge_requests_in_flight", "gauge", "HTTP requests being handled now.")
        line("edge_requests_in_flight", [], Double(s.inFlight))
        histogram("edge_request_duration_seconds", "Time from request arrival to the last byte of the response.", "endpoint", s.duration)
        header("edge_prompt_tokens_total", "counter", "Prompt tokens of finished requests, by adapter.")
        for (a, n) in s.promptTokens.sorted(by: { $0.key < $1.key }) { line("edge_prompt_tokens_total", [("adapter", a)], Double(n)) }
        header("edge_generated_tokens_total", "counter", "Generated tokens of finished requests, by adapter.")
        for (a, n) in s.generatedTokens.sorted(by: { $0.key < $1.key }) { line("edge_generated_tokens_total", [("adapter", a)], Double(n)) }
        histogram("edge_time_to_first_token_seconds", "Time from request arrival to the first generated token.", "adapter", s.ttft)
        histogram("edge_inter_token_latency_seconds", "Time between consecutive generated tokens of one request.", "adapter", s.itl)
        header("edge_finished_total", "counter", "Generations by finish reason.")
        for (r, n) in s.finishReasons.sorted(by: { $0.key < $1.key }) { line("edge_finished_total", [("reason", r)], Double(n)) }
        header("edge_client_disconnects_total", "counter", "Generations cancelled because the client went away.")
        line("edge_client_disconnects_total", [], Double(s.disconnects))
        header("edge_auth_denied_total", "counter", "Requests refused by the uid/gid policy, by permission.")
        for (p, n) in s.authDenied.sorted(by: { $0.key < $1.key }) { line("edge_auth_denied_total", [("permission", p)], Double(n)) }

        header("edge_queue_depth", "gauge", "Sequences waiting for admission to the running batch.")
        line("edge_queue_depth", [], Double(backend.queued))
        header("edge_running_sequences", "gauge", "Sequences in the running batch.")
        line("edge_running_sequences", [], Double(backend.running))
        header("edge_kv_bytes", "gauge", "KV cache bytes held by running sequences (grown on demand).")
        line("edge_kv_bytes", [], Double(backend.kvBytesUsed))
        header("edge_kv_preemptions_total", "counter", "Sequences preempted (KV freed, requeued, recomputed) so an older one could grow.")
        line("edge_kv_preemptions_total", [], Double(backend.kvPreemptionsTotal))
        header("edge_kv_budget_bytes", "gauge", "KV cache byte budget (0 = unbounded).")
        line("edge_kv_budget_bytes", [], Double(backend.kvBytesBudget))
        header("edge_adapters_in_ram", "gauge", "Adapters decoded in RAM.")
        line("edge_adapters_in_ram", [], Double(backend.adaptersInRAM.count))
        header("edge_engine_prompt_tokens_total", "counter", "Prompt tokens computed by the engine.")
        line("edge_engine_prompt_tokens_total", [], Double(backend.promptTokensTotal))
        header("edge_engine_generated_tokens_total", "counter", "Tokens generated by the engine.")
        line("edge_engine_generated_tokens_total", [], Double(backend.generatedTokensTotal))
        header("edge_prefix_cache_hits_total", "counter", "Requests that started from a kept prompt prefix (same adapters, same leading tokens).")
        line("edge_prefix_cache_hits_total", [], Double(backend.prefixCache.hits))
        header("edge_prefix_cache_misses_total", "counter", "Requests that found no kept prompt prefix to reuse.")
        line("edge_prefix_cache_misses_total", [], Double(backend.prefixCache.misses))
        header("edge_prefix_cache_hit_tokens_total", "counter", "Prompt tokens taken from the prefix cache instead of computed.")
        line("edge_prefix_cache_hit_tokens_total", [], Double(backend.prefixCache.hitTokens))
        header("edge_prefix_cache_bytes", "gauge", "KV bytes held by the prefix cache.")
        line("edge_prefix_cache_bytes", [], Double(backend.prefixCache.bytes))
        header("edge_prefix_cache_entries", "gauge", "Prompt prefixes held by the prefix cache.")
        line("edge_prefix_cache_entries", [], Double(backend.prefixCache.entries))
        let tiers = backend.cacheTiers.sorted { $0.tier < $1.tier }
        header("edge_adapter_cache_hits_total", "counter", "Adapter cache hits by tier.")
        for t in tiers { line("edge_adapter_cache_hits_total", [("tier", t.tier)], Double(t.hits)) }
        header("edge_adapter_cache_misses_total", "counter", "Adapter cache misses by tier.")
        for t in tiers { line("edge_adapter_cache_misses_total", [("tier", t.tier)], Double(t.misses)) }
        header("edge_adapter_cache_bytes", "gauge", "Bytes held by each adapter cache tier.")
        for t in tiers { line("edge_adapter_cache_bytes", [("tier", t.tier)], Double(t.bytes)) }
        header("edge_adapter_cache_budget_bytes", "gauge", "Byte budget of each adapter cache tier.")
        for t in tiers { line("edge_adapter_cache_budget_bytes", [("tier", t.tier)], Double(t.budgetBytes)) }
        header("edge_adapter_cache_evictions_total", "counter", "Adapters evicted from each tier.")
        for t in tiers { line("edge_adapter_cache_evictions_total", [("tier", t.tier)], Double(t.evictions)) }
        header("edge_adapter_cache_adapter_hits_total", "counter", "Adapter cache hits by tier and adapter.")
        for t in tiers {
            for (a, n) in t.hitsByAdapter.sorted(by: { $0.key < $1.key }) { line("edge_adapter_cache_adapter_hits_total", [("tier", t.tier), ("adapter", a)], Double(n)) }
        }
        return out
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}

import Foundation
