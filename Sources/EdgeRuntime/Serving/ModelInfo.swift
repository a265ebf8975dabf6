/// The loaded base model, as the API describes it.
public struct ModelInfo: Sendable, Equatable {
    /// A human name for logs and `edgectl status` (e.g. the model directory's name).
    public var name: String
    /// Directory the model was mapped from.
    public var path: String
    /// Maximum prompt + generated tokens per sequence.
    public var contextLength: Int
    public var vocabularySize: Int
    /// sha256 (hex) identifying the base weights; adapters record it and are refused when it differs.
    public var baseDigest: String
    /// Unix time (seconds) the model was loaded; OpenAI's `created` of the "base" model object.
    public var loadedAt: Int

    public init(name: String, path: String, contextLength: Int, vocabularySize: Int, baseDigest: String, loadedAt: Int) {
        self.name = name
        self.path = path
        self.contextLength = contextLength
        self.vocabularySize = vocabularySize
        self.baseDigest = baseDigest
        self.loadedAt = loadedAt
    }
}
