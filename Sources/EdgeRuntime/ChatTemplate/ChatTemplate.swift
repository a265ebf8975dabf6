import Foundation

/// A model's chat template (`tokenizer_config.json` `chat_template` or `chat_template.jinja`), rendered
/// the way transformers' `apply_chat_template` renders it: Jinja with `trim_blocks` and
/// `lstrip_blocks`, `messages`, `add_generation_prompt`, the special tokens (`bos_token`,
/// `eos_token`, ...) and the globals `raise_exception`, `namespace`, `range`, `strftime_now`.
///
/// It is parsed once at init (syntax errors and unsupported tags surface there) and is immutable:
/// `render` may be called from any thread.
public struct ChatTemplate: Sendable {
    public let source: String
    public let bosToken: String?
    public let eosToken: String?
    private let extraTokens: [String: String]
    private nonisolated(unsafe) let nodes: [JinjaNode]  // immutable parse tree

    public init(source: String, bosToken: String?, eosToken: String?, otherTokens: [String: String] = [:]) throws {
        self.source = source
        self.bosToken = bosToken
        self.eosToken = eosToken
        extraTokens = otherTokens
        var parser = try JinjaParser(source: source)
        nodes = try parser.parseTemplate()
    }

    /// The tokenizer's default template with its special tokens.
    public init(tokenizer: Tokenizer) throws {
        guard let source = tokenizer.config.chatTemplate else { throw ChatTemplateError.noTemplate }
        var other = [String: String]()
        if let p = tokenizer.config.padToken { other["pad_token"] = p }
        if let u = tokenizer.config.unkToken { other["unk_token"] = u }
        try self.init(source: source, bosToken: tokenizer.config.bosToken, eosToken: tokenizer.config.eosToken, otherTokens: other)
    }

    /// The prompt ids for a conversation, as `apply_chat_template(..., tokenize=True)`: the rendered
    /// text encoded without added special tokens (the template writes BOS itself where it wants one),
    /// special-token strings in it parsed as special tokens.
    public func encode(messages: [ChatMessage], addGenerationPrompt: Bool, with tokenizer: Tokenizer) throws -> [Int32] {
        tokenizer.encode(try render(messages: messages, addGenerationPrompt: addGenerationPrompt), addSpecial: false, parseSpecial: true)
    }

    public func render(messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        let list: [Any] = messages.map { ["role": $0.role, "content": $0.content] as [String: Any] }
        return try render(context: ["messages": list, "add_generation_prompt": addGenerationPrompt])
    }

    /// Renders with variables given as one JSON object, e.g. an OpenAI request's
    /// `{"messages": [...], "tools": [...], "add_generation_prompt": true}`. Key order is kept, so
    /// `tojson` prints tool schemas as the client wrote them (as transformers does).
    public func render(contextJSON: Data) throws -> String {
        let value: JinjaValue
        do { value = try TemplateJSON.parse(contextJSON) } catch {
            throw ChatTemplateError.render(line: 0, message: "the template variables are not valid JSON (\(error))")
        }
        guard case let .object(o) = value else { throw ChatTemplateError.render(line: 0, message: "the template variables must be a JSON object") }
        var vars = [String: JinjaValue]()
        for k in o.keys { vars[k] = o[k] }
        return try render(values: vars)
    }

    /// Renders with JSON-like Swift variables (`JSONSerialization` output; dictionary keys are sorted,
    /// so prefer `render(contextJSON:)` when a template prints objects).
    public func render(context: [String: Any]) throws -> String {
        try render(values: context.mapValues { JinjaValue(any: $0) })
    }

    func render(values: [String: JinjaValue]) throws -> String {
        var globals = [String: JinjaValue]()
        for (k, v) in extraTokens { globals[k] = .string(v) }
        if let bosToken { globals["bos_token"] = .string(bosToken) }
        if let eosToken { globals["eos_token"] = .string(eosToken) }
        globals["raise_exception"] = .function(JinjaFunction(name: "raise_exception") { args, _ in
            throw ChatTemplateError.raised(args.first?.pythonString ?? "")
        })
        // Namespaces are reference types, so `{% set ns.me = ns %}` (or a namespace holding a macro
        // that sees it) is a cycle ARC never frees: the fuzzer found a template leaking on every
        // render. Every namespace made during this render is emptied when it ends.
        let made = JinjaNamespace.Registry()
        defer { made.breakCycles() }
        globals["namespace"] = .function(JinjaFunction(name: "namespace") { args, kwargs in
            let ns = JinjaNamespace()
            made.add(ns)
            if case let .object(o)? = args.first { for k in o.keys { ns.values[k] = o[k] } }
            for (k, v) in kwargs { ns.values[k] = v }
            return .namespace(ns)
        })
        globals["range"] = .function(JinjaFunction(name: "range") { args, _ in
            let ints = args.compactMap { if case let .int(i) = $0 { return i }; return nil }
            guard ints.count == args.count, (1...3).contains(ints.count) else {
                throw ChatTemplateError.render(line: 0, message: "range() takes 1 to 3 integers")
            }
            let (lo, hi, step) = ints.count == 1 ? (0, ints[0], 1) : (ints[0], ints[1], ints.count == 3 ? ints[2] : 1)
            guard step != 0 else { throw ChatTemplateError.render(line: 0, message: "range() step cannot be zero") }
            let count = (hi.subtractingReportingOverflow(lo).partialValue) / step
            guard count <= 1 << 20 else { throw ChatTemplateError.render(line: 0, message: "range() of more than 2^20 items") }
            return .array(stride(from: lo, to: hi, by: step).map { .int($0) })
        })
        globals["strftime_now"] = .function(JinjaFunction(name: "strftime_now") { args, _ in
            let format = args.first?.pythonString ?? "%Y-%m-%d"
            var t = time(nil)
            var parts = tm()
            localtime_r(&t, &parts)
            var buffer = [Int8](repeating: 0, count: 256)
            let n = strftime(&buffer, buffer.count, format, &parts)
            return .string(String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        })
        globals["dict"] = .function(JinjaFunction(name: "dict") { args, kwargs in
            var o = JinjaObject()
            if case let .object(base)? = args.first { for k in base.keys { o[k] = base[k] } }
            for (k, v) in kwargs { o[k] = v }
            return .object(o)
        })
        // transformers always passes these two, as None when the caller has none.
        globals["tools"] = JinjaValue.none
        globals["documents"] = JinjaValue.none
        for (k, v) in values { globals[k] = v }
        return try JinjaInterpreter(globals: globals).render(nodes)
    }
}
