/// What a generation stream yields (see `GenerationBackend.generate` for the order).
public enum GenerationEvent: Sendable {
    /// Completions `echo`: one entry per prompt token, in order; the first has `logprob == nil`
    /// (nothing predicts it).
    case promptLogprobs([PromptTokenLogprob])
    /// One generated token.
    case token(GeneratedToken)
    /// The last event: why the sequence ended and what it used.
    case finished(GenerationSummary)
}

public struct GeneratedToken: Sendable, Equatable {
    public var id: Int32
    /// The text this token completes, as valid UTF-8. Byte-level BPE tokens can end inside a
    /// multi-byte character: the engine holds such bytes back and releases them with the token that
    /// completes the character, so `text` may be "" for one token and two characters for the next.
    /// The concatenation of all `text`s is the detokenized output.
    public var text: String
    /// Natural-log probability of this token under the distribution it was sampled from *before*
    /// temperature/top-k/top-p (the model's log-softmax, with the adapters), as OpenAI reports it.
    /// Present when the request asked for logprobs.
    public var logprob: Float?
    /// The `topLogprobs` most likely tokens at this position, most likely first (empty unless asked).
    public var topLogprobs: [TokenLogprob]

    public init(id: Int32, text: String, logprob: Float? = nil, topLogprobs: [TokenLogprob] = []) {
        self.id = id
        self.text = text
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

public struct TokenLogprob: Sendable, Equatable {
    public var id: Int32
    public var logprob: Float

    public init(id: Int32, logprob: Float) {
        self.id = id
        self.logprob = logprob
    }
}

public struct PromptTokenLogprob: Sendable, Equatable {
    public var id: Int32
    /// nil for the first prompt token.
    public var logprob: Float?
    public var topLogprobs: [TokenLogprob]

    public init(id: Int32, logprob: Float?, topLogprobs: [TokenLogprob] = []) {
        self.id = id
        self.logprob = logprob
        self.topLogprobs = topLogprobs
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// A stop token (or, decided by the server, a stop string).
    case stop
    /// `maxTokens` or the context length was reached.
    case length
    /// The engine ended the sequence itself: its deadline passed, or the daemon is shutting down.
    case cancelled
}

public struct GenerationSummary: Sendable, Equatable {
    public var finishReason: FinishReason
    /// Prompt tokens processed for this request (== request.prompt.count).
    public var promptTokens: Int
    /// Of those, how many came from a prefix cache instead of being computed.
    public var cachedPromptTokens: Int
    /// Generated tokens, == the number of `.token` events (a stop token is not counted).
    public var completionTokens: Int
    /// Time spent waiting for admission to a running batch (for metrics).
    public var queueTime: Duration
    /// Time from admission to the end: the engine's own share of the request (the socket API
    /// reports it as `x-engine-time-ms`, so clients can tell transport from compute).
    public var engineTime: Duration

    public init(
        finishReason: FinishReason, promptTokens: Int, cachedPromptTokens: Int = 0,
        completionTokens: Int, queueTime: Duration = .zero, engineTime: Duration = .zero
    ) {
        self.finishReason = finishReason
        self.promptTokens = promptTokens
        self.cachedPromptTokens = cachedPromptTokens
        self.completionTokens = completionTokens
        self.queueTime = queueTime
        self.engineTime = engineTime
    }
}
