import AdapterCache

/// One inference request, as the engine sees it: tokens in, sampling rules, adapters, limits.
///
/// Built by the HTTP layer from OpenAI-shaped JSON after validation, so every field is already in
/// range (see `SamplingParameters`); the engine may still refuse what it cannot do (e.g. a prompt
/// longer than the context) with an `HTTPStatusError`.
public struct GenerationRequest: Sendable {
    /// Unique per request (the `id` of the OpenAI response, e.g. `cmpl-…`); used in logs as
    /// `request.id`.
    public var id: String
    /// The prompt, already tokenized (chat rendered with the template first). Never empty.
    public var prompt: [Int32]
    /// The adapters to apply, with their weights; empty means the base model. Names are validated
    /// (`AdapterName`) and distinct. A sequence's output must not depend on the adapters of the
    /// other sequences in its batch.
    public var adapters: [AdapterSelection]
    public var sampling: SamplingParameters
    /// Upper bound on generated tokens (a stop token does not count; it ends the sequence). The
    /// server sets it to the request's `max_tokens`, or to `contextLength - prompt.count` when absent.
    public var maxTokens: Int
    /// Token ids that end the sequence (besides the model's end-of-generation tokens).
    public var stopTokenIDs: Set<Int32>
    /// Keep generating through the model's end-of-generation tokens (llama.cpp's `ignore_eos`).
    public var ignoreEOS: Bool
    /// When > 0 or `logprobs` is true, each `.token` carries its logprob; `topLogprobs` (0…20) is how
    /// many alternatives each position lists (most likely first).
    public var logprobs: Bool
    public var topLogprobs: Int
    /// Completions `echo`: emit `.promptLogprobs` for the prompt tokens (with `topLogprobs`
    /// alternatives) before the first generated token. Only valid with `logprobs`.
    public var echo: Bool
    /// When the server gives up on the request (its `request_timeout`). The engine should not admit
    /// a queued request after it and should end a running one with `.cancelled` once it passes.
    public var deadline: ContinuousClock.Instant?

    public init(
        id: String,
        prompt: [Int32],
        adapters: [AdapterSelection] = [],
        sampling: SamplingParameters = SamplingParameters(),
        maxTokens: Int,
        stopTokenIDs: Set<Int32> = [],
        ignoreEOS: Bool = false,
        logprobs: Bool = false,
        topLogprobs: Int = 0,
        echo: Bool = false,
        deadline: ContinuousClock.Instant? = nil
    ) {
        self.id = id
        self.prompt = prompt
        self.adapters = adapters
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stopTokenIDs = stopTokenIDs
        self.ignoreEOS = ignoreEOS
        self.logprobs = logprobs
        self.topLogprobs = topLogprobs
        self.echo = echo
        self.deadline = deadline
    }
}

/// Sampling rules, applied in llama.cpp's order: penalties → top-k → top-p → min-p → temperature.
/// `temperature == 0` means greedy (argmax; ties to the lowest id), whatever the other fields say.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 = greedy; otherwise 0 < t ≤ 2 (OpenAI's range).
    public var temperature: Float
    /// Nucleus mass in (0, 1]; 1 disables.
    public var topP: Float
    /// Keep the k most likely tokens; 0 disables.
    public var topK: Int
    /// Drop tokens whose probability is below `minP` × the top probability; 0 disables.
    public var minP: Float
    /// Divides positive logits / multiplies negative ones of tokens seen in the prompt and output
    /// (CTRL-style, as llama.cpp); 1 disables.
    public var repetitionPenalty: Float
    /// OpenAI's: subtract `presencePenalty` once if the token occurred in the output, and
    /// `frequencyPenalty` × its count; each in [-2, 2], 0 disables.
    public var presencePenalty: Float
    public var frequencyPenalty: Float
    /// Seed of this request's own RNG; nil = random. The same seed, prompt, adapters and
    /// parameters must give the same output whatever else is in the batch.
    public var seed: UInt64?

    public init(
        temperature: Float = 1, topP: Float = 1, topK: Int = 0, minP: Float = 0,
        repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
        seed: UInt64? = nil
    ) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.seed = seed
    }

    public static let greedy = SamplingParameters(temperature: 0)
}

/// One adapter of a request, with its weight (the LoRA delta is scaled by it on top of PEFT's own
/// `alpha / r` — or `alpha / sqrt(r)` with rsLoRA — scaling).
public struct AdapterSelection: Sendable, Hashable {
    public var adapter: AdapterReference
    public var weight: Float

    public init(_ adapter: AdapterReference, weight: Float = 1) {
        self.adapter = adapter
        self.weight = weight
    }
}
