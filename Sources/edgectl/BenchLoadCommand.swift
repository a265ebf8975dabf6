import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl bench load`: many concurrent clients against a running daemon (or one it starts
/// with `--model`), reporting outcomes by kind, latency and TTFT percentiles, tokens/s and the
/// daemon's RSS over the run.
struct BenchLoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load-test the daemon: N concurrent clients mixing streamed/non-streamed completions and chat, adapters, cancels and slow readers.",
        discussion: """
            Unattended, edgectl bench load --model DIR starts edge-runtimed (next to edgectl) on a temporary socket with \
            two synthetic adapters in a temporary store, runs the load, and stops it.
            The daemon's RSS comes from /proc/PID/status, PID being the socket peer (SO_PEERCRED), so run on the same machine.
            Exit status 1 when any request failed with 5xx, a stream error, a connection error or a timeout, or when the daemon died.

            """ + helpExamples("edgectl bench load --socket PATH --connections 256 --duration 60s --adapters a,b",
                               "edgectl bench load --model ~/models/m --connections 64 --duration 10m --json"))

    @OptionGroup var socketOptions: SocketOptions

    @Option(name: .long, help: "Start a daemon on this imported model directory (temporary state) instead of using --socket.")
    var model: String?

    @Option(name: .long, help: "Concurrent client connections.")
    var connections: Int = 256

    @Option(name: .long, help: "How long to run: seconds, or with a unit (90s, 10m).")
    var duration: String = "60s"

    @Option(name: .long, help: "Adapters to mix in with the base model, comma-separated (default with --model: the generated ones).")
    var adapters: String?

    @Option(name: .long, help: "Adapters to generate with --model.")
    var generatedAdapters: Int = 2

    @Option(name: .long, help: "max_tokens range per request, MIN-MAX.")
    var maxTokens: String = "8-32"

    @Option(name: .long, help: "Seconds a client waits on one read or write before counting a timeout.")
    var timeout: Double = 120

    @Option(name: .long, help: "Fraction of streamed requests abandoned after a few events.")
    var cancelFraction: Double = 0.15

    @Option(name: .long, help: "Fraction of streamed requests read slowly.")
    var slowFraction: Double = 0.15

    @Option(name: .long, help: "Seconds a slow reader waits between events.")
    var slowDelay: Double = 0.25

    @Option(name: .long, help: "With --model: [scheduler] max_running for the daemon.")
    var maxRunning: Int?

    @Option(name: .long, help: "With --model: [scheduler] max_queue for the daemon.")
    var maxQueue: Int?

    @Option(name: .long, help: "With --model: the edge-runtimed binary (default: next to edgectl).")
    var daemon: String?

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    func run() throws {
        let seconds = try Self.parseDuration(duration)
        guard connections > 0, connections <= 4096 else { throw ValidationError("--connections must be between 1 and 4096") }
        let range = maxTokens.split(separator: "-").compactMap { Int($0) }
        guard range.count == 2, range[0] >= 1, range[0] <= range[1] else { throw ValidationError("--max-tokens '\(maxTokens)' is not MIN-MAX (e.g. 8-32)") }
        guard (0...1).contains(cancelFraction), (0...1).contains(slowFraction), cancelFraction + slowFraction <= 1 else {
            throw ValidationError("--cancel-fraction and --slow-fraction must be in 0…1 and sum to at most 1")
        }

        var spawned: LoadDaemon?
        let socketPath: String
        var adapterNames = adapters.map { $0.split(separator: ",").map(String.init).filter { !$0.isEmpty } } ?? []
        if let model {
            guard socketOptions.socket == nil else { throw ValidationError("give --model (start a daemon) or --socket (use a running one), not both") }
            let binary = daemon ?? URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("edge-runtimed").path
            guard FileManager.default.isExecutableFile(atPath: binary) else { throw ValidationError("no edge-runtimed at \(binary): build it or pass --daemon PATH") }
            note("starting \(binary) on \(model) with \(adapters == nil ? generatedAdapters : 0) generated adapter(s)…")
            let d = try LoadDaemon(binary: binary, model: model, adapterCount: adapters == nil ? generatedAdapters : 0, scheduler: (maxRunning, maxQueue))
            try d.waitUntilReady(timeout: 300)
            if adapters == nil { adapterNames = d.adapterNames }
            spawned = d
            socketPath = d.socketPath
        } else {
            socketPath = socketOptions.path
        }
        defer { spawned?.stop() }

        let probe = DaemonClient(socketPath: socketPath, timeout: 30)
        let pid: Int32
        do {
            guard try probe.request("GET", "/healthz").status == 200 else { throw ValidationError("the daemon at \(socketPath) is not healthy (GET /healthz)") }
            pid = try probe.peerProcessID()
        } catch let e as ClientError {
            throw DaemonExit.fail(e)
        }
        // Pull the adapters before the clock starts, so the run measures serving, not downloads.
        for name in adapterNames {
            let r = try? probe.request("POST", "/v1/completions", json: .object([("model", .string(name)), ("prompt", "Hi"), ("max_tokens", 1)]))
            if r?.status != 200 { note("warning: warming adapter \(name) answered \(r.map { "\($0.status): \($0.errorMessage)" } ?? "nothing")") }
        }

        let sampler = MemorySampler(pid: pid)
        let startRSS = sampler.sample()
        sampler.start(every: 1)
        note("\(connections) connections for \(Int(seconds)) s against \(socketPath) (pid \(pid)), models: \((["base"] + adapterNames).joined(separator: ", "))")
        let generator = LoadGenerator(socketPath: socketPath, settings: .init(
            connections: connections, duration: seconds, models: ["base"] + adapterNames, maxTokens: range[0]...range[1],
            timeout: timeout, cancelFraction: cancelFraction, slowFraction: slowFraction, slowDelay: slowDelay))
        let wall = generator.run()
        sampler.stop()
        // Let cancelled generations and closed connections settle before the final reading.
        Thread.sleep(forTimeInterval: 2)
        let endRSS = sampler.sample()
        let alive = kill(pid, 0) == 0
        let healthAfter = try? probe.request("GET", "/healthz")
        let metrics = (try? probe.request("GET", "/metrics")).map { String(decoding: $0.body, as: UTF8.self) } ?? ""

        let report = LoadReport(
            connections: connections, seconds: wall, models: ["base"] + adapterNames, snapshot: generator.tally.snapshot(),
            rssStart: startRSS?.rss, rssEnd: endRSS?.rss, rssMax: sampler.maxRSS, rssPeak: endRSS?.peak, rssTimeline: sampler.timeline(points: 11),
            daemonAlive: alive, healthyAfter: healthAfter?.status == 200, openFDsAfter: LoadReport.gauge(metrics, "process_open_fds"),
            kvBytesAfter: LoadReport.gauge(metrics, "edge_kv_bytes"),
            sequencesAfter: LoadReport.gauge(metrics, "edge_running_sequences").flatMap { r in LoadReport.gauge(metrics, "edge_queue_depth").map { r + $0 } })
        if json { print(report.json.serialized) } else { print(report.text) }
        if !report.passed { throw ExitCode(DaemonExit.requestFailed) }
    }

    func note(_ s: String) { FileHandle.standardError.write(Data("\(s)\n".utf8)) }

    static func parseDuration(_ text: String) throws -> Double {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        var scale = 1.0, number = Substring(t)
        if t.hasSuffix("ms") { scale = 0.001; number = t.dropLast(2) }
        else if t.hasSuffix("s") { number = t.dropLast() }
        else if t.hasSuffix("m") { scale = 60; number = t.dropLast() }
        else if t.hasSuffix("h") { scale = 3600; number = t.dropLast() }
        guard let v = Double(number), v.isFinite, v > 0 else { throw ValidationError("--duration '\(text)' is not a duration like 60s, 10m or 90") }
        return v * scale
    }
}

/// Reads a process's RSS from /proc/PID/status (VmRSS now, VmHWM the peak) once a second on a
/// background thread. Concurrency contract: the samples are guarded by `lock`.
final class MemorySampler: @unchecked Sendable {
    let pid: Int32
    private let lock = NSLock()
    private var maxSeen = 0
    private var series: [(seconds: Double, rss: Int)] = []
    private let origin = Date()
    private var running = false
    private var thread: Thread?

    init(pid: Int32) { self.pid = pid }

    struct Reading { var rss: Int; var peak: Int }

    func sample() -> Reading? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func kib(_ key: String) -> Int {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return (Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0) * 1024
        }
        let r = Reading(rss: kib("VmRSS"), peak: kib("VmHWM"))
        lock.lock(); maxSeen = max(maxSeen, r.rss); series.append((Date().timeIntervalSince(origin), r.rss)); lock.unlock()
        return r
    }

    var maxRSS: Int { lock.lock(); defer { lock.unlock() }; return maxSeen }

    /// At most `points` readings evenly spread over the run (RSS flat or growing at a glance).
    func timeline(points: Int) -> [(seconds: Double, rss: Int)] {
        lock.lock(); defer { lock.unlock() }
        guard series.count > points, points > 1 else { return series }
        return (0..<points).map { series[$0 * (series.count - 1) / (points - 1)] }
    }

    func start(every interval: Double) {
        lock.lock(); running = true; lock.unlock()
        let t = Thread { [self] in
            while true {
                lock.lock(); let go = running; lock.unlock()
                if !go { break }
                _ = sample()
                Thread.sleep(forTimeInterval: interval)
            }
        }
        thread = t
        t.start()
    }

    func stop() { lock.lock(); running = false; lock.unlock() }
}
