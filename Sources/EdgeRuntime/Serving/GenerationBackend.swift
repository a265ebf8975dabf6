import AdapterCache

/// The contract between the socket API and the inference engine.
///
/// The HTTP layer parses and validates OpenAI-shaped JSON, renders chat messages with
/// `renderChat`, tokenizes with `tokenize`, and hands the engine a `GenerationRequest` made of token
/// ids. The engine schedules it (continuous batching, adapters, KV) and streams `GenerationEvent`s.
/// Everything HTTP-specific (SSE framing, stop *strings*, usage JSON, status codes) stays on this
/// side; everything about tokens, logits and memory stays on the engine side.
///
/// Division of work, precisely:
/// - The backend stops a sequence at `GenerationRequest.maxTokens`, at any id in `stopTokenIDs`, at
///   the model's own end-of-generation tokens unless `ignoreEOS`, and at the context length; it then
///   yields `.finished` with `.length` or `.stop`. A stop token is *not* emitted as a `.token` event.
/// - Stop **strings** are matched by the server (`StopSequenceMatcher`) on the `text` deltas; on a
///   match the server stops consuming and cancels the stream, exactly as on a client disconnect.
///   The engine never sees stop strings.
/// - Errors carry their HTTP status through `HTTPStatusError` (`APIError` is a ready-made one).
///   Admission failures (no model 503, unknown adapter 404, prompt longer than the context 400,
///   queue or KV budget full 429 with `retryAfter`) are thrown by `generate` itself, before the
///   stream exists, so a streaming response can still answer with a proper status. Errors thrown
///   later by the stream become an SSE error event (streaming) or a 500 (non-streaming).
///
/// Concurrency contract: every method may be called from many tasks at once; implementations are
/// actors or otherwise internally synchronised. `tokenize`, `detokenize`, `tokenBytes` and
/// `renderChat` are synchronous and must not block on the scheduler (they only read the tokenizer).
/// If the backend needs a run loop (the scheduler), it also conforms to `ServiceLifecycle.Service`
/// and the daemon runs it in its `ServiceGroup`, after the HTTP server in shutdown order.
public protocol GenerationBackend: Sendable {
    /// What model is loaded; nil when the daemon runs without one (every inference request is then
    /// answered 503 with `noModelHint`).
    var model: ModelInfo? { get }

    /// Why there is no model, as one sentence an operator can act on (shown in 503s and STATUS=).
    var noModelHint: String { get }

    /// Admits a request and returns its event stream.
    ///
    /// Returns once the request is admitted: validated, its adapters resolved (an unknown but
    /// fetchable adapter is pulled first — only this request waits for it) and a queue slot taken.
    /// Throws `HTTPStatusError`s for admission failures (see the type comment) and
    /// `CancellationError` if the calling task is cancelled while waiting.
    ///
    /// The stream yields, in order: at most one `.promptLogprobs` (only when `request.echo`), then
    /// zero or more `.token`, then exactly one `.finished`, then ends. Cancelling the consuming task
    /// (or dropping the stream) must cancel the sequence and free its KV and its adapter pins —
    /// implement it with `continuation.onTermination`.
    func generate(_ request: GenerationRequest) async throws -> AsyncThrowingStream<GenerationEvent, Error>

    /// Text to token ids. `addSpecial`: add the model's BOS/EOS as its tokenizer config says;
    /// `parseSpecial`: special-token strings inside `text` (e.g. `<|im_start|>`) become their ids
    /// instead of being tokenized as plain text. Throws 503 without a model.
    func tokenize(_ text: String, addSpecial: Bool, parseSpecial: Bool) throws -> [Int32]

    /// Token ids to text (special tokens rendered as their strings). Throws 400 for an id outside
    /// the vocabulary, 503 without a model.
    func detokenize(_ tokens: [Int32]) throws -> String

    /// The raw bytes of one token (byte-level BPE pieces may be partial UTF-8): OpenAI's logprobs
    /// `bytes` field and the `token` string of a logprob entry are made from it. Throws like
    /// `detokenize`.
    func tokenBytes(_ token: Int32) throws -> [UInt8]

    /// Renders chat messages with the model's chat template (tokenizer_config.json), ending with the
    /// assistant prefix when `addGenerationPrompt`. The server tokenizes the result with
    /// `addSpecial: false, parseSpecial: true`, as `apply_chat_template(tokenize=True)` does.
    /// Throws 400 for messages the template rejects (e.g. an unknown role), 503 without a model.
    func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String

    /// A snapshot for /healthz, /metrics, STATUS= and `edgectl status`. Cheap: called every few
    /// seconds by the watchdog loop and on every /metrics scrape.
    func status() async -> BackendStatus

    /// Adapters known locally (RAM and disk tiers, pulled and trained on the device).
    func listAdapters() async throws -> [AdapterInfo]

    /// Fetches an adapter (by name: newest version in the store; or `NAME@VERSION`) into the disk
    /// cache and verifies it; progress events end with `.done`. A second concurrent pull of the same
    /// adapter shares the first one's fetch. Throws 404 when the store does not have it, 400 when it
    /// was made for another base model or fails verification.
    func pullAdapter(_ reference: AdapterReference) -> AsyncThrowingStream<AdapterPullProgress, Error>

    /// Removes an adapter from the RAM and disk caches (trained-on-device adapters are kept on disk
    /// and only leave RAM). NAME evicts every cached version, NAME@VERSION that one. Throws 404 for
    /// an unknown adapter, 409 while a request uses it. A pin guards against automatic (LRU)
    /// eviction only: an explicit evict is the operator's decision and drops the pin with the files.
    func evictAdapter(_ reference: AdapterReference) async throws

    /// Pins an adapter: never evicted from disk (pulled first if needed). Throws 404 when unknown.
    func pinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo

    /// Removes an explicit pin (NAME: its newest cached version; NAME@VERSION: that one). Throws 404
    /// when unknown.
    func unpinAdapter(_ reference: AdapterReference) async throws -> AdapterInfo
}
