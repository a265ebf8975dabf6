/// Tokenizes training rows the way the reference QLoRA pipeline does (fixtures/train/README.md):
/// prompt = template(messages[:-1], add_generation_prompt) tokenized; answer = content + the
/// end-of-turn token (the tokenizer's eos, e.g. "<|im_end|>"); the template's trailing text after
/// the end-of-turn (often "\n") is not learned.
public struct ChatTemplatePromptFormatter: TrainingPromptFormatter {
    public let tokenizer: Tokenizer
    public let template: ChatTemplate
    public let endOfTurn: Int32
    public let padId: Int32

    public init(tokenizer: Tokenizer) throws {
        self.tokenizer = tokenizer
        template = try ChatTemplate(tokenizer: tokenizer)
        guard let eos = tokenizer.eosID else {
            throw TrainingError.modelUnsupported(reason: "the tokenizer has no eos token to end the learned answers with")
        }
        endOfTurn = eos
        padId = tokenizer.padID ?? eos
    }

    public func promptIds(_ messages: [TrainingMessage]) throws -> [Int32] {
        let text = try template.render(messages: messages.map { ChatMessage(role: $0.role, content: $0.content) }, addGenerationPrompt: true)
        return tokenizer.encode(text, addSpecial: false, parseSpecial: true)
    }

    public func answerIds(_ content: String) throws -> [Int32] {
        // Special-token text inside the answer is learned as plain text, never as control tokens.
        tokenizer.encode(content, addSpecial: false, parseSpecial: false) + [endOfTurn]
    }
}
