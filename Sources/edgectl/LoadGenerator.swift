import EdgeRuntime
import Foundation

/// Drives `connections` concurrent clients against the daemon's socket until a deadline, each a
/// thread doing one blocking `DaemonClient` request at a time (one connection each), so the
/// daemon sees exactly that many connections at once. The request mix: completions and chat,
/// streamed and not, base and each adapter; some streams are abandoned after a few events
/// (closing the connection cancels the generation) and some are read slowly.
///
/// Concurrency contract: worker threads only touch their own state and `LoadTally` (locked).
final class LoadGenerator: Sendable {
    struct Settings: Sendable {
        var connections: Int
        var duration: Double
        /// "base" plus adapter names.
        var models: [String]
        var maxTokens: ClosedRange<Int>
        /// Per-read/write timeout of a client (a request stuck longer counts as a timeout).
        var timeout: Double
        /// Fractions of streamed requests that are cancelled mid-stream or read slowly.
        var cancelFraction: Double
        var slowFraction: Double
        /// Seconds a slow reader sleeps per SSE event.
        var slowDelay: Double
    }

    let settings: Settings
    let client: DaemonClient
    let tally = LoadTally()

    init(socketPath: String, settings: Settings) {
        self.settings = settings
        self.client = DaemonClient(socketPath: socketPath, timeout: settings.timeout)
    }

    /// Prompts of different lengths, so prefill and decode mix in the batches.
    static let prompts = [
        "Write one sentence about the sea.",
        "List three colours.",
        "Explain in two sentences why the sky is blue, for a child who asked on a rainy afternoon while looking out of the window.",
        "Translate 'good morning' into French.",
        "What is 17 times 3?",
        "Describe a small town market on a Saturday morning: the stalls, the smells, the people and the sounds, in a short paragraph.",
    ]

    /// Runs every client until the deadline; returns the wall time in seconds.
    func run() -> Double {
        let start = Date()
        let deadline = start.addingTimeInterval(settings.duration)
        let group = DispatchGroup()
        for index in 0..<settings.connections {
            group.enter()
            let thread = Thread { [self] in
                var rng = SystemRandomNumberGenerator()
                // Stagger the starts over the first second so the connect burst is not one instant.
                Thread.sleep(forTimeInterval: Double(index % 100) / 100)
                while Date() < deadline {
                    let outcome = runOne(&rng)
                    if outcome == .rateLimited {
                        // Back off like a client honouring 429, with jitter (shorter than
                        // Retry-After so the queue stays under pressure).
                        Thread.sleep(forTimeInterval: Double.random(in: 0.1...0.5, using: &rng))
                    }
                }
                group.leave()
            }
            thread.stackSize = 512 << 10
            thread.start()
        }
        group.wait()
        return Date().timeIntervalSince(start)
    }

    enum Behaviour: String, CaseIterable, Sendable { case normal, cancel, slow }

    /// One request of a random shape; records it in the tally.
    func runOne(_ rng: inout SystemRandomNumberGenerator) -> LoadTally.Outcome {
        let chat = Bool.random(using: &rng)
        let stream = Bool.random(using: &rng)
        let model = settings.models.randomElement(using: &rng) ?? "base"
        let prompt = Self.prompts.randomElement(using: &rng)!
        let maxTokens = Int.random(in: settings.maxTokens, using: &rng)
        var behaviour = Behaviour.normal
        if stream {
            let r = Double.random(in: 0..<1, using: &rng)
            if r < settings.cancelFraction { behaviour = .cancel } else if r < settings.cancelFraction + settings.slowFraction { behaviour = .slow }
        }
        var fields: [(String, JSONValue)] = [("model", .string(model)), ("max_tokens", .int(Int64(maxTokens))), ("temperature", .double(0.7))]
        if chat {
            fields.append(("messages", .array([.object([("role", "user"), ("content", .string(prompt))])])))
        } else {
            fields.append(("prompt", .string(prompt)))
        }
        if stream {
            fields.append(("stream", true))
            fields.append(("stream_options", .object([("include_usage", true)])))
        }
        let path = chat ? "/v1/chat/completions" : "/v1/completions"
        let started = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }

        do {
            if !stream {
                let response = try client.request("POST", path, json: .object(fields))
                let outcome = LoadTally.Outcome(status: response.status)
                let tokens = response.json?["usage"]?["completion_tokens"]?.intValue ?? 0
                tally.record(outcome, latency: elapsed(), ttft: nil, tokens: Int(tokens), behaviour: behaviour)
                return outcome
            }
            var ttft: Double?
            var events = 0, tokens = 0
            var streamError = false
            let cancelAfter = Int.random(in: 1...4, using: &rng)
            let response = try client.stream("POST", path, json: .object(fields)) { line in
                guard line.hasPrefix("data: ") else { return }
                let payload = line.dropFirst(6)
                if payload == "[DONE]" { return }
                guard let json = try? JSONValue.parse(Array(payload.utf8)) else { return }
                if json["error"] != nil { streamError = true; return }
                if let usage = json["usage"], !usage.isNull { tokens = Int(usage["completion_tokens"]?.intValue ?? 0) }
                guard let choice = json["choices"]?.arrayValue?.first else { return }
                let text = choice["text"]?.stringValue ?? choice["delta"]?["content"]?.stringValue
                if text != nil || choice["finish_reason"].map({ !$0.isNull }) == true {
                    if ttft == nil { ttft = elapsed() }
                    events += 1
                }
                switch behaviour {
                case .cancel where events >= cancelAfter: throw LoadCancel()
                case .slow: Thread.sleep(forTimeInterval: settings.slowDelay)
                default: break
                }
            }
            let outcome: LoadTally.Outcome = streamError ? .streamError : LoadTally.Outcome(status: response.status)
            tally.record(outcome, latency: elapsed(), ttft: outcome == .ok ? ttft : nil, tokens: tokens, behaviour: behaviour)
            return outcome
        } catch is LoadCancel {
            tally.record(.cancelled, latency: elapsed(), ttft: nil, tokens: 0, behaviour: behaviour)
            return .cancelled
        } catch let e as ClientError {
            let outcome: LoadTally.Outcome
            if case .timedOut = e { outcome = .timeout } else { outcome = .connectionError }
            tally.record(outcome, latency: elapsed(), ttft: nil, tokens: 0, behaviour: behaviour, detail: e.description)
            return outcome
        } catch {
            tally.record(.connectionError, latency: elapsed(), ttft: nil, tokens: 0, behaviour: behaviour, detail: "\(error)")
            return .connectionError
        }
    }
}

/// Thrown from a stream callback to abandon the stream (the connection closes).
struct LoadCancel: Error {}

/// What the clients saw. Concurrency contract: every member is guarded by `lock`.
final class LoadTally: @unchecked Sendable {
    enum Outcome: String, CaseIterable, Sendable {
        case ok, cancelled
        case rateLimited = "429"
        case otherClientError = "other_4xx"
        case serverError = "5xx"
        /// 200 whose stream carried an error event.
        case streamError = "stream_error"
        case connectionError = "connection_error"
        case timeout

        init(status: Int) {
            switch status {
            case 200..<300: self = .ok
            case 429: self = .rateLimited
            case 400..<500: self = .otherClientError
            default: self = .serverError
            }
        }
    }

    private let lock = NSLock()
    private var counts: [Outcome: Int] = [:]
    private var byBehaviour: [String: Int] = [:]
    private var latencies: [Double] = []
    private var ttfts: [Double] = []
    private var tokens = 0
    /// First few error texts per outcome, for the report.
    private var samples: [Outcome: [String]] = [:]

    func record(_ outcome: Outcome, latency: Double, ttft: Double?, tokens: Int, behaviour: LoadGenerator.Behaviour, detail: String? = nil) {
        lock.lock()
        defer { lock.unlock() }
        counts[outcome, default: 0] += 1
        byBehaviour[behaviour.rawValue, default: 0] += 1
        if outcome == .ok { latencies.append(latency) }
        if let ttft { ttfts.append(ttft) }
        self.tokens += tokens
        if let detail, samples[outcome, default: []].count < 3 { samples[outcome, default: []].append(detail) }
    }

    struct Snapshot: Sendable {
        var counts: [Outcome: Int]
        var byBehaviour: [String: Int]
        var latencies: [Double]
        var ttfts: [Double]
        var tokens: Int
        var samples: [Outcome: [String]]
    }

    func snapshot() -> Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return Snapshot(counts: counts, byBehaviour: byBehaviour, latencies: latencies, ttfts: ttfts, tokens: tokens, samples: samples)
    }
}
