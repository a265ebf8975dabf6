/// One chat message as the template sees it. OpenAI's content-part arrays are flattened to their
/// text parts by the HTTP layer (other part types are refused with 400).
public struct ChatMessage: Sendable, Equatable, Codable {
    /// "system", "user", "assistant" (others are passed to the template, which may refuse them).
    public var role: String
    public var content: String

    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}
