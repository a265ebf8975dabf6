/// Everything the inference engine (forward pass, KV cache, LoRA binding, sampling, scheduler) can
/// refuse. Each description names the file, key or limit at fault and what to do about it.
public enum EngineError: Error, Equatable, CustomStringConvertible {
    /// The model directory or one of its tensors does not describe a Llama model we can run.
    case badModel(path: String, reason: String)
    /// A sequence would grow past its KV capacity (the context length, or what was reserved for it).
    case contextOverflow(needed: Int, capacity: Int, contextLength: Int)
    /// A token id outside the vocabulary.
    case invalidToken(id: Int32, vocabularySize: Int)
    /// An adapter tensor that names a module the model lacks or whose shape does not fit.
    case adapterMismatch(adapter: String, key: String, reason: String)
    /// A kernel rejected its arguments (a bug or a corrupt weight descriptor).
    case kernel(operation: String, status: Int32, message: String)
    /// A request the engine cannot run as asked (empty prompt, bad option value…).
    case invalidRequest(String)
    /// Admission refused: too many running/queued sequences or the KV budget is exhausted.
    case atCapacity(reason: String, retryAfterSeconds: Int)
    /// The engine was shut down while the request was queued or running.
    case shutDown

    public var description: String {
        switch self {
        case .badModel(let path, let reason):
            return "model '\(path)' cannot be run: \(reason) (re-import it with `edgectl model import`)"
        case .contextOverflow(let needed, let capacity, let contextLength):
            return "the sequence needs \(needed) positions but only \(capacity) are available (context length \(contextLength)): shorten the prompt or lower max tokens"
        case .invalidToken(let id, let vocabularySize):
            return "token id \(id) is outside the vocabulary (0..<\(vocabularySize))"
        case .adapterMismatch(let adapter, let key, let reason):
            return "adapter '\(adapter)' does not fit this model: tensor '\(key)' \(reason)"
        case .kernel(let operation, let status, let message):
            return "kernel \(operation) failed with status \(status): \(message)"
        case .invalidRequest(let message):
            return message
        case .atCapacity(let reason, _):
            return "the engine is at capacity (\(reason)): retry later"
        case .shutDown:
            return "the engine is shutting down"
        }
    }
}
