import EdgeRuntime
import Foundation

/// The result of `bench load`, as text or one JSON object.
struct LoadReport {
    let connections: Int
    let seconds: Double
    let models: [String]
    let snapshot: LoadTally.Snapshot
    let rssStart: Int?
    let rssEnd: Int?
    let rssMax: Int
    /// VmHWM: the daemon's peak RSS over its whole life.
    let rssPeak: Int?
    let rssTimeline: [(seconds: Double, rss: Int)]
    let daemonAlive: Bool
    let healthyAfter: Bool
    let openFDsAfter: Double?
    /// KV bytes still reserved and sequences still running or queued after the run settled:
    /// all 0 when cancelled and finished sequences were freed.
    let kvBytesAfter: Double?
    let sequencesAfter: Double?

    var total: Int { snapshot.counts.values.reduce(0, +) }
    func count(_ o: LoadTally.Outcome) -> Int { snapshot.counts[o] ?? 0 }

    /// Failures that should never happen under load (429s and 4xx are the daemon saying no).
    var failures: Int { count(.serverError) + count(.streamError) + count(.connectionError) + count(.timeout) }
    var passed: Bool { failures == 0 && daemonAlive && healthyAfter }

    static func percentile(_ values: [Double], _ p: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((p * Double(sorted.count - 1)).rounded()))]
    }

    /// A gauge's value from Prometheus text.
    static func gauge(_ metrics: String, _ name: String) -> Double? {
        for line in metrics.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    var tokensPerSecond: Double { seconds > 0 ? Double(snapshot.tokens) / seconds : 0 }

    var text: String {
        func ms(_ v: Double?) -> String { v.map { String(format: "%.0f ms", $0 * 1000) } ?? "-" }
        func mib(_ v: Int?) -> String { v.map { String(format: "%.1f MiB", Double($0) / 1048576) } ?? "-" }
        var out = "bench load: \(connections) connections, \(String(format: "%.1f", seconds)) s, models \(models.joined(separator: ","))\n"
        out += "requests:   \(total) (\(String(format: "%.1f", Double(total) / max(seconds, 1e-9)))/s)\n"
        for o in LoadTally.Outcome.allCases {
            out += "  \(o.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0))\(count(o))\n"
        }
        out += "by kind:    " + snapshot.byBehaviour.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
        out += "latency:    p50 \(ms(Self.percentile(snapshot.latencies, 0.5))), p99 \(ms(Self.percentile(snapshot.latencies, 0.99))) (completed requests)\n"
        out += "TTFT:       p50 \(ms(Self.percentile(snapshot.ttfts, 0.5))), p99 \(ms(Self.percentile(snapshot.ttfts, 0.99))) (streams)\n"
        out += "tokens:     \(snapshot.tokens) generated, \(String(format: "%.1f", tokensPerSecond)) tokens/s\n"
        out += "daemon RSS: start \(mib(rssStart)), end \(mib(rssEnd)), max sampled \(mib(rssMax)), peak (VmHWM) \(mib(rssPeak))\n"
        if !rssTimeline.isEmpty {
            out += "RSS over time: " + rssTimeline.map { String(format: "%.0fs %.0f", $0.seconds, Double($0.rss) / 1048576) }.joined(separator: ", ") + " (MiB)\n"
        }
        out += "daemon after: \(daemonAlive ? "alive" : "DEAD"), /healthz \(healthyAfter ? "200" : "FAILED")\(openFDsAfter.map { ", open fds \(Int($0))" } ?? "")"
        out += "\(kvBytesAfter.map { ", KV bytes \(Int($0))" } ?? "")\(sequencesAfter.map { ", sequences running+queued \(Int($0))" } ?? "")\n"
        for (o, texts) in snapshot.samples.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            for t in texts { out += "  e.g. \(o.rawValue): \(t)\n" }
        }
        out += passed ? "PASS: no 5xx, stream errors, connection errors or timeouts" : "FAIL: \(failures) request(s) failed, daemon \(daemonAlive ? "alive" : "dead")"
        return out
    }

    var json: JSONValue {
        func opt(_ v: Double?) -> JSONValue { v.map { .double(($0 * 1000).rounded() / 1000) } ?? .null }
        func optInt(_ v: Int?) -> JSONValue { v.map { .int(Int64($0)) } ?? .null }
        return .object([
            ("connections", .int(Int64(connections))),
            ("seconds", .double((seconds * 10).rounded() / 10)),
            ("models", .array(models.map { .string($0) })),
            ("requests", .int(Int64(total))),
            ("outcomes", .object(LoadTally.Outcome.allCases.map { ($0.rawValue, .int(Int64(count($0)))) })),
            ("by_kind", .object(snapshot.byBehaviour.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
            ("latency_p50_s", opt(Self.percentile(snapshot.latencies, 0.5))),
            ("latency_p99_s", opt(Self.percentile(snapshot.latencies, 0.99))),
            ("ttft_p50_s", opt(Self.percentile(snapshot.ttfts, 0.5))),
            ("ttft_p99_s", opt(Self.percentile(snapshot.ttfts, 0.99))),
            ("tokens", .int(Int64(snapshot.tokens))),
            ("tokens_per_s", .double((tokensPerSecond * 10).rounded() / 10)),
            ("rss_start_bytes", optInt(rssStart)),
            ("rss_end_bytes", optInt(rssEnd)),
            ("rss_max_sampled_bytes", .int(Int64(rssMax))),
            ("rss_peak_bytes", optInt(rssPeak)),
            ("rss_timeline", .array(rssTimeline.map { .array([.double($0.seconds.rounded()), .int(Int64($0.rss))]) })),
            ("daemon_alive", .bool(daemonAlive)),
            ("healthy_after", .bool(healthyAfter)),
            ("open_fds_after", opt(openFDsAfter)),
            ("kv_bytes_after", opt(kvBytesAfter)),
            ("sequences_after", opt(sequencesAfter)),
            ("passed", .bool(passed)),
        ])
    }
}
