import AdapterCache
import ArgumentParser
import EdgeRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// `edgectl bench serve`: the daemon's serving numbers in one run, through the real socket.
///
/// Starts `edge-runtimed` (the binary next to this edgectl, or `--daemon`) on a temporary socket
/// with a temporary adapter cache, registers `--streams` random rank-`--rank` PEFT adapters on all
/// seven projections (or `--targets`) as local adapters, and measures:
/// - start → READY=1 (a fake NOTIFY_SOCKET; median of `--starts` cold starts of the process),
/// - aggregate decode tokens/s of N concurrent streams each with its own adapter, of N concurrent
///   streams on the base, and of one stream alone (greedy, `ignore_eos`, `--tokens` each),
/// - socket overhead: round trip of a 1-token completion minus the engine time the daemon reports
///   for it (`x-engine-time-ms`), median of `--probes`,
/// - with `--while-training N`: the same 1-token round trip at N random moments while a fine-tuning
///   job trains in the daemon, against the idle median — how long a request waits for the trainer
///   to yield (the fine-tuning issue's target: within 250 ms of its normal latency).
/// Build with `-c release`; debug numbers mean nothing.
struct BenchServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Measure the daemon: concurrent adapter streams vs base vs one stream, socket overhead, start-to-READY.",
        discussion: helpExamples("edgectl bench serve --model ~/models/m",
                                 "edgectl bench serve --model ~/models/m --streams 8 --rank 16 --tokens 64 --json"))

    @Option(name: .long, help: "Model directory (config.json + model.safetensors + tokenizer).") var model: String
    @Option(name: .long, help: "Concurrent streams (and distinct adapters).") var streams = 8
    @Option(name: .long, help: "LoRA rank of the generated adapters.") var rank = 16
    @Option(name: .long, help: "Comma-separated projections the generated adapters target, e.g. q_proj,v_proj (PEFT's default for Llama models). Default: all seven.")
    var targets: String?
    @Option(name: .long, help: "Tokens generated per stream.") var tokens = 64
    @Option(name: .long, help: "Compute threads of the daemon (0 = all cores).") var threads = 0
    @Option(name: .long, help: "Rounds of the three throughput runs (adapters, base, one stream), interleaved; each ratio is the median of its per-round ratios, so a noisy neighbour slows both sides of a ratio.") var rounds = 3
    @Option(name: .long, help: "Cold starts timed for start-to-READY (the median is reported).") var starts = 3
    @Option(name: .long, help: "1-token completions timed for the socket overhead (the median is reported).") var probes = 30
    @Option(name: .long, help: "The edge-runtimed binary (default: the one next to edgectl, else $PATH).") var daemon: String?
    @Option(name: .customLong("while-training"), help: "Also time this many 1-token completions at random moments while a fine-tuning job trains in the daemon (0: skip).") var whileTraining = 0
    @Flag(name: .long, help: "Print JSON.") var json = false

    struct Throughput: Encodable {
        var streams: Int
        var tokensPerStream: Int
        var completionTokens: Int
        var seconds: Double
        var decodeTokensPerSecond: Double
    }

    struct Result: Encodable {
        var model: String
        var streams: Int
        var rank: Int
        /// The projections the adapters adapt.
        var projections: [String]
        var threads: Int
        var rounds: Int
        var adapters: Throughput
        var base: Throughput
        var single: Throughput
        /// Per-round ratios, in run order (the reported ones are their medians).
        var roundRatios: [[String: Double]]
        var adaptersOverBase: Double
        var adaptersOverSingle: Double
        var roundTripMs: Double
        /// nil when the daemon does not report `x-engine-time-ms` (an older edge-runtimed).
        var engineMs: Double?
        var socketOverheadMs: Double?
        var startToReadyMs: Double
        var startToReadyRunsMs: [Double]
        /// nil unless --while-training.
        var whileTraining: TrainingProbes?
        var targets: [String: Bool]
    }

    struct TrainingProbes: Encodable {
        var probes: Int
        var idleMedianMs: Double
        var medianMs: Double
        var maxMs: Double
        /// The worst probe's round trip above the idle median: the wait for the trainer to yield.
        var worstExtraMs: Double
        var trainingSteps: Int
        /// The daemon's VmHWM after serving all of the above and training (nil if /proc is not readable).
        var daemonPeakRSSBytes: Int?
    }

    enum Failure: Error, CustomStringConvertible {
        case daemonMissing(String)
        case daemonFailed(String)
        case request(String)
        case model(String)

        var description: String {
            switch self {
            case .daemonMissing(let s): return "edge-runtimed not found (\(s)): build it (`swift build -c release`) or pass --daemon PATH"
            case .daemonFailed(let s): return "edge-runtimed did not become ready: \(s)"
            case .request(let s): return "a benchmark request failed: \(s)"
            case .model(let s): return "the model directory cannot be benchmarked: \(s)"
            }
        }
    }

    /// `--targets` as projections; nil for a name that is none of the seven.
    var targetList: [LlamaProjection]? {
        guard let targets else { return LlamaProjection.allCases }
        let names = targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let ps = names.compactMap(LlamaProjection.init(moduleName:))
        return ps.count == names.count && !ps.isEmpty ? ps : nil
    }

    func validate() throws {
        guard streams >= 1, streams <= 256 else { throw ValidationError("--streams must be 1…256") }
        guard rank >= 1, rank <= 256 else { throw ValidationError("--rank must be 1…256") }
        guard targetList != nil else {
            let all = LlamaProjection.allCases.map(\.moduleName).joined(separator: ",")
            throw ValidationError("--targets takes projections among \(all), not '\(targets ?? "")'")
        }
        guard tokens >= 2 else { throw ValidationError("--tokens must be at least 2 (decode rate needs two tokens)") }
        guard starts >= 1, probes >= 1, rounds >= 1 else { throw ValidationError("--starts, --probes and --rounds must be at least 1") }
        guard whileTraining >= 0, whileTraining <= 1000 else { throw ValidationError("--while-training must be 0…1000") }
    }

    func run() async throws {
        do {
            let result = try await measure()
            if json { printJSON(result) } else { print(Self.table(result)) }
        } catch let f as Failure {
            printError(f.description)
            throw ExitCode.failure
        } catch let e as AdapterError {
            printError(e.description)
            throw ExitCode.failure
        } catch let e as ClientError {
            printError(e.description)
            throw ExitCode.failure
        }
    }

    // MARK: - Setup

    func daemonBinary() throws -> String {
        if let daemon {
            guard FileManager.default.isExecutableFile(atPath: daemon) else { throw Failure.daemonMissing("\(daemon) is not an executable") }
            return daemon
        }
        let own = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("edge-runtimed").path
        if FileManager.default.isExecutableFile(atPath: own) { return own }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let p = "\(dir)/edge-runtimed"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw Failure.daemonMissing("not next to edgectl (\(own)) nor on $PATH")
    }

    /// Writes, packs and imports `streams` adapters named bench-0…; returns their names.
    func registerAdapters(work: String, cacheDir: String, hp: LlamaHyperparameters, digest: String) async throws -> [String] {
        var cacheConfig = AdapterCacheConfiguration(directory: cacheDir)
        cacheConfig.baseModelDigest = digest
        let cache = try AdapterCache(configuration: cacheConfig)
        var names: [String] = []
        for i in 0..<streams {
            let name = "bench-\(i)"
            let peft = "\(work)/peft-\(i)"
            try SyntheticAdapter.write(to: peft, layers: hp.layerCount, hidden: hp.hiddenSize, intermediate: hp.intermediateSize,
                                       kvDim: hp.kvDim, rank: rank, seed: UInt64(1000 + i), qDim: hp.qDim, projections: targetList ?? LlamaProjection.allCases)
            var options = AdapterArtifact.PackOptions(name: try AdapterName(name), version: try AdapterName("1"), baseModel: digest)
            options.level = 3
            let (artifact, _) = try AdapterArtifact.pack(directory: peft, options: options)
            let file = "\(work)/\(name).tar.zst"
            try AtomicFile.write(artifact, to: file)
            try await cache.importArtifact(path: file, local: true)
            try? FileManager.default.removeItem(atPath: peft)
            names.append(name)
        }
        return names
    }

    func measure() async throws -> Result {
        let binary = try daemonBinary()
        let modelDir = URL(fileURLWithPath: model).standardizedFileURL.path
        guard let configData = FileManager.default.contents(atPath: modelDir + "/config.json") else {
            throw Failure.model("\(modelDir)/config.json is missing")
        }
        let hp: LlamaHyperparameters
        do { hp = try LlamaHyperparameters(configJSON: configData, path: modelDir) } catch { throw Failure.model("\(error)") }
        let digest = try digestOfBaseModel(path: modelDir)

        let work = NSTemporaryDirectory() + "edge-bench-serve-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let cacheDir = work + "/cache", socket = work + "/edge.sock"
        let names = try await registerAdapters(work: work, cacheDir: cacheDir, hp: hp, digest: digest)
        let config = work + "/config.toml"
        try """
            [server]
            socket_group = ""
            shutdown_grace = 2
            request_timeout = 600
            [model]
            path = "\(modelDir)"
            threads = \(threads)
            [scheduler]
            max_running = \(max(16, streams))
            max_queue = \(max(64, streams * 2))
            [adapters]
            cache_dir = "\(cacheDir)"
            [finetune]
            idle_after = 0
            max_load = 1000
            [logging]
            level = "warning"
            """.write(toFile: config, atomically: true, encoding: .utf8)

        // Cold starts: the last one stays up for the rest.
        var readyMs: [Double] = []
        var process: Process?
        for i in 0..<starts {
            let (p, ms) = try startDaemon(binary, config: config, socket: socket, work: work, run: i)
            readyMs.append(ms)
            if i < starts - 1 { stop(p) } else { process = p }
        }
        guard let daemonProcess = process else { throw Failure.daemonFailed("no start") }
        defer { stop(daemonProcess) }
        let client = DaemonClient(socketPath: socket)

        // Warm every adapter into RAM (and the kernels' thread pool) before timing.
        _ = try concurrent(client, models: names, tokens: 2)
        _ = try concurrent(client, models: ["base"], tokens: 2)

        var runs: [(adapters: Throughput, base: Throughput, single: Throughput)] = []
        for _ in 0..<rounds {
            runs.append((try concurrent(client, models: names, tokens: tokens),
                         try concurrent(client, models: Array(repeating: "base", count: streams), tokens: tokens),
                         try concurrent(client, models: ["base"], tokens: tokens)))
        }
        // The reported runs are the median ones of each kind; the ratios are per-round medians.
        func medianRun(_ pick: ((adapters: Throughput, base: Throughput, single: Throughput)) -> Throughput) -> Throughput {
            let sorted = runs.map(pick).sorted { $0.decodeTokensPerSecond < $1.decodeTokensPerSecond }
            return sorted[sorted.count / 2]
        }
        let adapters = medianRun(\.adapters), base = medianRun(\.base), single = medianRun(\.single)

        var roundTrips: [Double] = [], engine: [Double] = [], overhead: [Double] = []
        for _ in 0..<probes {
            let t = Clock.now()
            let r = try client.request("POST", "/v1/completions", json: [
                "model": "base", "prompt": "Hello", "max_tokens": 1, "temperature": 0, "ignore_eos": true,
            ])
            let rt = Clock.since(t) * 1000
            guard r.status == 200 else { throw Failure.request("1-token completion: HTTP \(r.status): \(r.errorMessage)") }
            roundTrips.append(rt)
            if let e = r.headers["x-engine-time-ms"].flatMap(Double.init) {
                engine.append(e)
                overhead.append(rt - e)
            }
        }

        let idleRoundTrip = median(roundTrips)
        let training = whileTraining > 0 ? try probeWhileTraining(client, idleMedianMs: idleRoundTrip) : nil

        let startMs = median(readyMs)
        let overheadMs: Double? = overhead.isEmpty ? nil : median(overhead)
        let aOverB = median(runs.map { $0.adapters.decodeTokensPerSecond / max(1e-9, $0.base.decodeTokensPerSecond) })
        let aOverS = median(runs.map { $0.adapters.decodeTokensPerSecond / max(1e-9, $0.single.decodeTokensPerSecond) })
        return Result(
            model: modelDir, streams: streams, rank: rank, projections: (targetList ?? LlamaProjection.allCases).map(\.moduleName), threads: threads, rounds: rounds, adapters: adapters, base: base, single: single,
            roundRatios: runs.map { ["adapters_over_base": $0.adapters.decodeTokensPerSecond / max(1e-9, $0.base.decodeTokensPerSecond),
                                     "adapters_over_single": $0.adapters.decodeTokensPerSecond / max(1e-9, $0.single.decodeTokensPerSecond)] },
            adaptersOverBase: aOverB, adaptersOverSingle: aOverS,
            roundTripMs: median(roundTrips), engineMs: engine.isEmpty ? nil : median(engine), socketOverheadMs: overheadMs,
            startToReadyMs: startMs, startToReadyRunsMs: readyMs, whileTraining: training,
            targets: ["adapters_ge_0.9x_base": aOverB >= 0.9, "adapters_ge_3x_single": aOverS >= 3,
                      "socket_overhead_lt_2ms": (overheadMs ?? .infinity) < 2, "start_to_ready_lt_150ms": startMs < 150]
                .merging(training.map { ["training_yield_lt_250ms": $0.worstExtraMs < 250] } ?? [:]) { a, _ in a }
                .merging(training?.daemonPeakRSSBytes.map { ["daemon_peak_rss_le_1gb": $0 <= 1_000_000_000] } ?? [:]) { a, _ in a })
    }

    // MARK: - Requests while training

    /// Queues a long fine-tuning job on a small synthetic chat dataset, starts it now (run_pending),
    /// and times 1-token completions sent at random moments inside its steps: between probes the
    /// daemon is left alone long enough for the trainer to be back in a step.
    func probeWhileTraining(_ client: DaemonClient, idleMedianMs: Double) throws -> TrainingProbes {
        var rows: [String] = []
        for i in 0..<48 {
            let row: JSONValue = ["messages": .array([
                ["role": "user", "content": .string("Which shelf holds box \(i)?")],
                ["role": "assistant", "content": .string("Box \(i) is on shelf \((i * 7) % 12 + 1).")],
            ])]
            rows.append(row.serialized)
        }
        let job = try client.request("POST", "/v1/fine_tuning/jobs", json: [
            "model": "base", "suffix": "bench-while-training", "training_data": .string(rows.joined(separator: "\n")),
            "hyperparameters": ["steps": 100_000, "batch_size": 4], "seed": 1,
        ])
        guard job.status == 200 || job.status == 201, let id = job.json?["id"]?.stringValue else {
            throw Failure.request("queue a fine-tuning job: HTTP \(job.status): \(job.errorMessage)")
        }
        defer { _ = try? client.request("POST", "/v1/fine_tuning/jobs/\(id)/cancel") }
        let started = try client.request("POST", "/v1/fine_tuning/run_pending")
        guard started.status == 200 else { throw Failure.request("run_pending: HTTP \(started.status): \(started.errorMessage)") }

        func steps() throws -> (status: String, steps: Int) {
            let r = try client.request("GET", "/v1/fine_tuning/jobs/\(id)")
            guard r.status == 200, let j = r.json else { throw Failure.request("job status: HTTP \(r.status): \(r.errorMessage)") }
            let status = j["status"]?.stringValue ?? "?"
            if ["failed", "cancelled", "succeeded"].contains(status) {
                throw Failure.request("the fine-tuning job ended (\(status)) before the probes: \(String(decoding: r.body, as: UTF8.self).prefix(400))")
            }
            // Progress is in the job's metrics events ({"data": {"step": …}}).
            let e = try client.request("GET", "/v1/fine_tuning/jobs/\(id)/events?limit=100")
            let done = e.json?["data"]?.arrayValue?.compactMap { $0["data"]?["step"]?.doubleValue }.max() ?? 0
            return (status, Int(done))
        }
        // Wait for the first optimiser steps (validation, tokenizing and the first step come first).
        let deadline = Clock.now() + 300_000_000_000
        while try steps().steps < 1 {
            guard Clock.now() < deadline else { throw Failure.request("the fine-tuning job did not finish a step within 300 s") }
            usleep(200_000)
        }
        var rng = SystemRandomNumberGenerator()
        var times: [Double] = []
        for _ in 0..<whileTraining {
            // Back in a step: training resumes as soon as the engine is idle (idle_after = 0).
            usleep(UInt32.random(in: 600_000...1_600_000, using: &rng))
            let t = Clock.now()
            let r = try client.request("POST", "/v1/completions", json: [
                "model": "base", "prompt": "Hello", "max_tokens": 1, "temperature": 0, "ignore_eos": true,
            ])
            guard r.status == 200 else { throw Failure.request("1-token completion while training: HTTP \(r.status): \(r.errorMessage)") }
            times.append(Clock.since(t) * 1000)
        }
        let trained = try steps().steps
        let peak = (try? client.peerProcessID()).flatMap { pid -> Int? in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }
            return line.flatMap { $0.split(separator: " ").compactMap { Int($0) }.first }.map { $0 * 1024 }
        }
        return TrainingProbes(probes: times.count, idleMedianMs: idleMedianMs, medianMs: median(times), maxMs: times.max() ?? 0,
                              worstExtraMs: (times.max() ?? 0) - idleMedianMs, trainingSteps: trained, daemonPeakRSSBytes: peak)
    }

    // MARK: - Daemon process

    func startDaemon(_ binary: String, config: String, socket: String, work: String, run: Int) throws -> (Process, Double) {
        let notifyPath = "\(work)/notify-\(run)"
        let notify = try NotifyListener(path: notifyPath)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["--config", config, "--socket", socket]
        var env = ProcessInfo.processInfo.environment
        for k in ["LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "EDGE_SOCKET"] { env[k] = nil }
        env["NOTIFY_SOCKET"] = notifyPath
        // Fine-tuning jobs and trained adapters of this throwaway daemon stay in the temp dir.
        env["EDGE_STATE_DIR"] = "\(work)/state"
        p.environment = env
        let logPath = "\(work)/daemon-\(run).log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logPath)
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        let t = Clock.now()
        try p.run()
        guard notify.wait(for: "READY=1", timeout: 60) != nil else {
            stop(p)
            let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw Failure.daemonFailed("no READY=1 within 60 s; its log: \(log.suffix(2000))")
        }
        let ms = Clock.since(t) * 1000
        let health = try DaemonClient(socketPath: socket).request("GET", "/healthz")
        guard health.status == 200, health.json?["status"]?.stringValue != "no_model" else {
            stop(p)
            throw Failure.daemonFailed("it started without the model: \(String(decoding: health.body, as: UTF8.self))")
        }
        return (p, ms)
    }

    func stop(_ p: Process) {
        guard p.isRunning else { return }
        kill(p.processIdentifier, SIGTERM)
        let end = Clock.now() + 10_000_000_000
        while p.isRunning && Clock.now() < end { usleep(5_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
    }

    // MARK: - Streams

    /// One streaming completion per entry of `models`, all at once. Decode rate: every stream's
    /// tokens after its first, over the span from the earliest first token to the latest last one.
    func concurrent(_ client: DaemonClient, models: [String], tokens: Int) throws -> Throughput {
        final class Record: @unchecked Sendable {
            var first: UInt64 = 0, last: UInt64 = 0, completion = 0, chunks = 0
            var error: String?
        }
        let records = models.map { _ in Record() }
        let group = DispatchGroup()
        for (i, name) in models.enumerated() {
            let record = records[i]
            let body: JSONValue = [
                "model": .string(name), "prompt": .string("Write a short story about a lighthouse keeper, part \(i + 1):"),
                "max_tokens": .int(Int64(tokens)), "temperature": 0, "ignore_eos": true, "stream": true,
                "stream_options": ["include_usage": true],
            ]
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                do {
                    let r = try client.stream("POST", "/v1/completions", json: body) { line in
                        guard line.hasPrefix("data: "), !line.hasPrefix("data: [DONE]") else { return }
                        let payload = try JSONValue.parse(Array(line.utf8.dropFirst(6)))
                        let now = Clock.now()
                        if let usage = payload["usage"], let n = usage["completion_tokens"]?.intValue { record.completion = Int(n) }
                        if let choice = payload["choices"]?.arrayValue?.first, choice["text"]?.stringValue != nil {
                            if record.first == 0 { record.first = now }
                            record.last = now
                            record.chunks += 1
                        }
                    }
                    if r.status != 200 { record.error = "HTTP \(r.status): \(r.errorMessage)" }
                } catch {
                    record.error = "\(error)"
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        if let e = records.compactMap(\.error).first { throw Failure.request("\(models.count) concurrent streams: \(e)") }
        let start = records.map(\.first).min() ?? 0, end = records.map(\.last).max() ?? 0
        let total = records.map(\.completion).reduce(0, +)
        let decoded = records.map { max(0, $0.completion - 1) }.reduce(0, +)
        let seconds = Double(end &- start) / 1e9
        return Throughput(streams: models.count, tokensPerStream: tokens, completionTokens: total, seconds: seconds,
                          decodeTokensPerSecond: seconds > 0 ? Double(decoded) / seconds : 0)
    }

    // MARK: - Output

    static func table(_ r: Result) -> String {
        func f(_ x: Double, _ d: Int = 1) -> String { String(format: "%.\(d)f", x) }
        func mark(_ ok: Bool?) -> String { ok == true ? "ok" : "MISSED" }
        var rows: [[String]] = [["measure", "value", "target", ""]]
        let on = r.projections.count == LlamaProjection.allCases.count ? "" : ", on \(r.projections.joined(separator: ","))"
        rows.append(["\(r.streams) streams, \(r.streams) adapters (rank \(r.rank)\(on))", f(r.adapters.decodeTokensPerSecond) + " tok/s", "", ""])
        rows.append(["\(r.streams) streams, base", f(r.base.decodeTokensPerSecond) + " tok/s", "", ""])
        rows.append(["1 stream, base", f(r.single.decodeTokensPerSecond) + " tok/s", "", ""])
        rows.append(["adapters / base", f(r.adaptersOverBase, 2) + "×", "≥ 0.9×", mark(r.targets["adapters_ge_0.9x_base"])])
        rows.append(["adapters / single", f(r.adaptersOverSingle, 2) + "×", "≥ 3×", mark(r.targets["adapters_ge_3x_single"])])
        rows.append(["1-token round trip", f(r.roundTripMs, 2) + " ms", "", ""])
        rows.append(["  engine time", r.engineMs.map { f($0, 2) + " ms" } ?? "not reported", "", ""])
        rows.append(["  socket overhead", r.socketOverheadMs.map { f($0, 2) + " ms" } ?? "n/a", "< 2 ms", mark(r.targets["socket_overhead_lt_2ms"])])
        rows.append(["start → READY=1", f(r.startToReadyMs) + " ms", "< 150 ms", mark(r.targets["start_to_ready_lt_150ms"])])
        if let t = r.whileTraining {
            rows.append(["1-token round trip while training (\(t.probes) probes, \(t.trainingSteps) steps)", "median " + f(t.medianMs, 1) + " ms, max " + f(t.maxMs, 1) + " ms", "", ""])
            rows.append(["  worst wait for the trainer to yield", f(t.worstExtraMs, 1) + " ms", "< 250 ms", mark(r.targets["training_yield_lt_250ms"])])
            if let peak = t.daemonPeakRSSBytes {
                rows.append(["  daemon peak RSS (serving + training)", f(Double(peak) / 1_048_576, 0) + " MiB", "≤ 1 GB", mark(r.targets["daemon_peak_rss_le_1gb"])])
            }
        }
        let widths = (0..<4).map { c in rows.map { $0[c].count }.max() ?? 0 }
        let lines = rows.map { row in
            row.enumerated().map { c, s in s + String(repeating: " ", count: widths[c] - s.count) }.joined(separator: "  ")
        }
        return ([lines[0], String(repeating: "-", count: lines[0].count)] + lines.dropFirst()).joined(separator: "\n")
            + "\n(\(r.tokensSummary); start-to-READY runs: \(r.startToReadyRunsMs.map { f($0) }.joined(separator: ", ")) ms)"
    }
}

extension BenchServeCommand.Result {
    var tokensSummary: String {
        "\(adapters.tokensPerStream) tokens per stream, greedy; threads \(threads == 0 ? "all" : String(threads)); medians of \(rounds) round\(rounds == 1 ? "" : "s")"
    }
}

/// A bound Unix datagram socket standing in for systemd's NOTIFY_SOCKET; closed in deinit.
final class NotifyListener {
    let fd: Int32

    init(path: String) throws {
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            close(fd)
            throw BenchServeCommand.Failure.daemonFailed("notify socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw BenchServeCommand.Failure.daemonFailed("cannot bind a notify socket at \(path): \(e)")
        }
    }

    deinit { close(fd) }

    /// The first datagram containing `needle` within `timeout` seconds.
    func wait(for needle: String, timeout: Double) -> String? {
        let end = Clock.now() + UInt64(timeout * 1e9)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Clock.now() < end {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let left = Int32(max(1, (Double(end &- Clock.now()) / 1e6)))
            guard poll(&p, 1, left) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { continue }
            let message = String(decoding: buffer[0..<n], as: UTF8.self)
            if message.contains(needle) { return message }
        }
        return nil
    }
}
