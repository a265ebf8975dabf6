/// Turns the engine's token events into what the client is sent: applies stop strings, keeps each
/// token's logprobs together with the text it released, and works out the finish reason and usage.
/// Shared by the streaming and the non-streaming paths so both say exactly the same thing.
struct GenerationAccumulator {
    /// Text released by one event, with the tokens whose text it completes.
    struct Emission {
        var text: String
        var tokens: [GeneratedToken]
        /// Byte offset of `text` in the whole completion (for completions' `text_offset`).
        var offset: Int
    }

    private var matcher: StopSequenceMatcher
    private var pending: [(token: GeneratedToken, start: Int, end: Int)] = []
    private var totalBytes = 0
    private(set) var completionTokens = 0
    private(set) var promptLogprobs: [PromptTokenLogprob]?
    /// Set once the sequence is over (a stop string matched or `.finished` arrived).
    private(set) var finishReason: FinishReason?
    private(set) var summary: GenerationSummary?

    init(stop: [String]) {
        matcher = StopSequenceMatcher(stops: stop)
    }

    var stoppedByString: Bool { matcher.stopped }

    /// Returns what to send for this event (nil when nothing is ready).
    mutating func consume(_ event: GenerationEvent) -> Emission? {
        guard finishReason == nil else { return nil }
        switch event {
        case .promptLogprobs(let p):
            promptLogprobs = p
            return nil
        case .token(let t):
            completionTokens += 1
            let start = totalBytes
            totalBytes += t.text.utf8.count
            pending.append((t, start, totalBytes))
            let before = matcher.releasedBytes
            let step = matcher.append(t.text)
            let released = matcher.releasedBytes
            var flushed: [GeneratedToken] = []
            if step.stopped {
                finishReason = .stop
                flushed = pending.filter { $0.start < released }.map(\.token)
                pending.removeAll()
            } else {
                while let first = pending.first, first.end <= released {
                    flushed.append(first.token)
                    pending.removeFirst()
                }
            }
            if step.text.isEmpty && flushed.isEmpty { return nil }
            return Emission(text: step.text, tokens: flushed, offset: before)
        case .finished(let s):
            summary = s
            finishReason = s.finishReason
            let before = matcher.releasedBytes
            let rest = matcher.flush()
            let flushed = pending.map(\.token)
            pending.removeAll()
            if rest.isEmpty && flushed.isEmpty { return nil }
            return Emission(text: rest, tokens: flushed, offset: before)
        }
    }
}
