/// Errors of chat-template parsing and rendering. `raised` carries a template's own
/// `raise_exception(...)` message (e.g. "Conversation roles must alternate user/assistant/...").
public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    /// The template text does not parse; `line` is 1-based.
    case syntax(line: Int, message: String)
    /// The template uses a Jinja feature this interpreter does not implement.
    case unsupported(line: Int, feature: String)
    /// An operation failed while rendering (wrong types, unknown filter, undefined access).
    case render(line: Int, message: String)
    /// The template called `raise_exception(message)`.
    case raised(String)
    /// The model has no chat template.
    case noTemplate

    public var description: String {
        switch self {
        case let .syntax(line, message): return "chat template line \(line): syntax error: \(message)"
        case let .unsupported(line, feature):
            return "chat template line \(line): \(feature) is not supported by edge-runtime's Jinja subset; render the prompt yourself and send it as a completion"
        case let .render(line, message): return "chat template line \(line): \(message)"
        case let .raised(message): return "chat template rejected the conversation: \(message)"
        case .noTemplate: return "the model has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja); send a plain completion instead"
        }
    }
}
