import Foundation

/// A model directory opened for local use (no daemon): the NF4 weights, the tokenizer, and the
/// model's end-of-generation tokens. What `edgectl run`, `eval` and `bench` work on, and what the
/// engine backend wraps. Immutable; share freely.
public final class LocalModel: @unchecked Sendable {
    public let directory: String
    public let weights: LlamaWeights
    public let tokenizer: Tokenizer

    public init(directory: String, contextLength: Int = 0) throws {
        self.directory = directory
        weights = try LlamaWeights.load(directory: directory, contextLength: contextLength)
        tokenizer = try Tokenizer(directory: URL(fileURLWithPath: directory))
    }

    /// Already-loaded parts (the daemon maps the weights first and loads the tokenizer after READY).
    public init(directory: String, weights: LlamaWeights, tokenizer: Tokenizer) {
        self.directory = directory
        self.weights = weights
        self.tokenizer = tokenizer
    }

    public var hyperparameters: LlamaHyperparameters { weights.hyperparameters }

    /// Tokens that end generation (tokenizer EOS, generation_config eos ids, end-of-turn tokens).
    public var endOfGeneration: Set<Int32> {
        var s = tokenizer.stopTokenIDs
        if let e = tokenizer.eosID { s.insert(e) }
        return s
    }

    /// Whether the tokenizer adds BOS to a text (llama.cpp's `add_bos`).
    public var addsBOS: Bool {
        guard let bos = tokenizer.bosID else { return false }
        return tokenizer.encode("a", addSpecial: true, parseSpecial: false).first == bos
    }

    /// Renders chat messages with the model's template (tokenizer_config.json / chat_template.jinja).
    public func renderChat(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try ChatTemplate(tokenizer: tokenizer).render(messages: messages, addGenerationPrompt: addGenerationPrompt)
    }
}

extension StreamingDetokenizer: IncrementalDetokenizer {}
