/// One message of a conversation, as OpenAI's chat API and transformers' `apply_chat_template` take it.
public struct ChatMessage: Codable, Sendable, Equatable {
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}
