import AdapterCache

/// An OpenAI completions or chat-completions request after field-by-field validation, before
/// tokenization. Every bad field gets a 400 naming it (`param`), never a crash or a silent default.
public struct InferenceRequest: Sendable {
    public enum Kind: Sendable { case completion, chat }
    public enum Prompt: Sendable, Equatable {
        case text(String)
        case tokens([Int32])
        case messages([ChatMessage])
    }

    public var kind: Kind
    /// As the client wrote it; echoed in the response's `model`.
    public var model: String
    public var adapters: [AdapterSelection]
    public var prompt: Prompt
    public var maxTokens: Int?
    public var sampling: SamplingParameters
    public var stop: [String]
    public var stopTokenIDs: Set<Int32>
    public var ignoreEOS: Bool
    public var stream: Bool
    public var includeUsage: Bool
    public var logprobs: Bool
    public var topLogprobs: Int
    public var echo: Bool

    public static let maxStopStrings = 16
    public static let maxStopBytes = 256
    public static let maxTopLogprobs = 20

    /// Parses `/v1/completions` (`kind == .completion`) or `/v1/chat/completions` JSON.
    public static func parse(_ json: JSONValue, kind: Kind) throws(APIError) -> InferenceRequest {
        guard case .object = json else { throw APIError.badRequest("the request body must be a JSON object") }
        let f = FieldReader(json: json)

        let model = try f.string("model") ?? "base"
        var adapters: [AdapterSelection] = []
        if !model.isEmpty && model != "base" {
            adapters.append(AdapterSelection(try AdapterReference(parsing: model), weight: 1))
        }
        if let list = try f.array("adapters") {
            for (i, entry) in list.enumerated() {
                guard case .object = entry, let name = entry["name"]?.stringValue else {
                    throw APIError.badRequest("adapters[\(i)] must be an object with a string \"name\" (and an optional number \"weight\")", param: "adapters")
                }
                var ref: AdapterReference
                do { ref = try AdapterReference(parsing: name) } catch {
                    throw APIError.badRequest(error.message, param: "adapters[\(i)].name", code: error.errorCode)
                }
                if let v = entry["version"], !v.isNull {
                    guard let vs = v.stringValue, ref.version == nil else {
                        throw APIError.badRequest("adapters[\(i)].version must be a string, and not given when name already has @VERSION", param: "adapters[\(i)].version")
                    }
                    ref = try AdapterReference(parsing: "\(ref.name.value)@\(vs)")
                }
                var weight: Float = 1
                if let w = entry["weight"], !w.isNull {
                    guard let d = w.doubleValue, d.isFinite, abs(d) <= 100 else {
                        throw APIError.badRequest("adapters[\(i)].weight must be a number between -100 and 100", param: "adapters[\(i)].weight")
                    }
                    weight = Float(d)
                }
                adapters.append(AdapterSelection(ref, weight: weight))
            }
        }
        var seen = Set<String>()
        for a in adapters where !seen.insert(a.adapter.name.value).inserted {
            throw APIError.badRequest("adapter '\(a.adapter.name)' is selected twice (in model and adapters, or twice in adapters)", param: "adapters")
        }

        let prompt: Prompt
        switch kind {
        case .completion:
            guard let p = json["prompt"], !p.isNull else {
                throw APIError.badRequest("'prompt' is required: a string or an array of token ids", param: "prompt")
            }
            prompt = try parsePrompt(p)
        case .chat:
            prompt = .messages(try parseMessages(json["messages"]))
        }

        for unsupported in ["tools", "functions", "tool_choice", "function_call"] {
            if let v = json[unsupported], !v.isNull, v != .array([]) {
                throw APIError.badRequest("'\(unsupported)' is not supported by this server", param: unsupported, code: "unsupported_parameter")
            }
        }
        if kind == .completion, let s = json["suffix"], !s.isNull, s != .string("") {
            throw APIError.badRequest("'suffix' (insertion) is not supported", param: "suffix", code: "unsupported_parameter")
        }
        if let rf = json["response_format"], !rf.isNull, rf["type"] != .string("text") {
            throw APIError.badRequest("response_format: only {\"type\": \"text\"} is supported", param: "response_format", code: "unsupported_parameter")
        }
        if let n = try f.int("n", min: 1, max: Int64.max), n != 1 {
            throw APIError.badRequest("'n' must be 1: this server returns one choice per request (send several requests instead)", param: "n")
        }
        if let b = try f.int("best_of", min: 1, max: Int64.max), b != 1 {
            throw APIError.badRequest("'best_of' must be 1", param: "best_of")
        }

        var maxTokens = try f.int("max_tokens", min: kind == .completion ? 0 : 1, max: 1 << 24).map(Int.init)
        if kind == .chat, let m = try f.int("max_completion_tokens", min: 1, max: 1 << 24) { maxTokens = Int(m) }

        var sampling = SamplingParameters()
        if let t = try f.number("temperature", min: 0, max: 2) { sampling.temperature = Float(t) }
        if let p = try f.number("top_p", min: 0, max: 1) {
            guard p > 0 else { throw APIError.badRequest("'top_p' must be greater than 0 and at most 1", param: "top_p") }
            sampling.topP = Float(p)
        }
        if let k = try f.int("top_k", min: -1, max: 1 << 20) { sampling.topK = k < 0 ? 0 : Int(k) }
        if let m = try f.number("min_p", min: 0, max: 1) { sampling.minP = Float(m) }
        if let r = try f.number("repetition_penalty", min: 0, max: 10) {
            guard r > 0 else { throw APIError.badRequest("'repetition_penalty' must be greater than 0", param: "repetition_penalty") }
            sampling.repetitionPenalty = Float(r)
        }
        if let p = try f.number("presence_penalty", min: -2, max: 2) { sampling.presencePenalty = Float(p) }
        if let p = try f.number("frequency_penalty", min: -2, max: 2) { sampling.frequencyPenalty = Float(p) }
        if let s = try f.int("seed", min: Int64.min, max: Int64.max) { sampling.seed = UInt64(bitPattern: s) }

        var stop: [String] = []
        if let s = json["stop"], !s.isNull {
            switch s {
            case .string(let one): stop = [one]
            case .array(let many):
                for (i, v) in many.enumerated() {
                    guard let str = v.stringValue else { throw APIError.badRequest("stop[\(i)] must be a string", param: "stop") }
                    stop.append(str)
                }
            default: throw APIError.badRequest("'stop' must be a string or an array of strings", param: "stop")
            }
            guard stop.count <= maxStopStrings else {
                throw APIError.badRequest("'stop' has \(stop.count) strings; at most \(maxStopStrings) are allowed", param: "stop")
            }
            for s in stop where s.utf8.count > maxStopBytes {
                throw APIError.badRequest("a stop string is longer than \(maxStopBytes) bytes", param: "stop")
            }
            stop.removeAll { $0.isEmpty }
        }
        var stopTokenIDs = Set<Int32>()
        if let ids = try f.array("stop_token_ids") {
            for (i, v) in ids.enumerated() {
                guard let id = v.intValue, id >= 0, id <= Int64(Int32.max) else {
                    throw APIError.badRequest("stop_token_ids[\(i)] must be a token id (a non-negative integer)", param: "stop_token_ids")
                }
                stopTokenIDs.insert(Int32(id))
            }
        }
        let ignoreEOS = try f.bool("ignore_eos") ?? false
        let stream = try f.bool("stream") ?? false
        var includeUsage = false
        if let so = json["stream_options"], !so.isNull {
            guard case .object = so else { throw APIError.badRequest("'stream_options' must be an object", param: "stream_options") }
            guard stream else { throw APIError.badRequest("'stream_options' is only allowed with \"stream\": true", param: "stream_options") }
            if let u = so["include_usage"], !u.isNull {
                guard let b = u.boolValue else { throw APIError.badRequest("stream_options.include_usage must be true or false", param: "stream_options") }
                includeUsage = b
            }
        }

        var logprobs = false, topLogprobs = 0, echo = false
        switch kind {
        case .completion:
            if let n = try f.int("logprobs", min: 0, max: Int64(maxTopLogprobs)) {
                logprobs = true
                topLogprobs = Int(n)
            }
            echo = try f.bool("echo") ?? false
            if echo && stream {
                throw APIError.badRequest("'echo' cannot be combined with \"stream\": true", param: "echo")
            }
        case .chat:
            logprobs = try f.bool("logprobs") ?? false
            if let n = try f.int("top_logprobs", min: 0, max: Int64(maxTopLogprobs)) {
                guard logprobs else { throw APIError.badRequest("'top_logprobs' needs \"logprobs\": true", param: "top_logprobs") }
                topLogprobs = Int(n)
            }
        }
        if kind == .completion, maxTokens == 0, !echo {
            throw APIError.badRequest("'max_tokens' must be at least 1 (0 is only allowed with \"echo\": true)", param: "max_tokens")
        }

        return InferenceRequest(
            kind: kind, model: model.isEmpty ? "base" : model, adapters: adapters, prompt: prompt,
            maxTokens: maxTokens, sampling: sampling, stop: stop, stopTokenIDs: stopTokenIDs,
            ignoreEOS: ignoreEOS, stream: stream, includeUsage: includeUsage, logprobs: logprobs,
            topLogprobs: topLogprobs, echo: echo)
    }

    static func parsePrompt(_ p: JSONValue) throws(APIError) -> Prompt {
        switch p {
        case .string(let s): return .text(s)
        case .array(let items):
            if items.count == 1, case .string(let s) = items[0] { return .text(s) }
            if items.count == 1, case .array(let inner) = items[0] { return try parsePrompt(.array(inner)) }
            guard !items.isEmpty else { throw APIError.badRequest("'prompt' is an empty array", param: "prompt") }
            var ids: [Int32] = []
            ids.reserveCapacity(items.count)
            for (i, v) in items.enumerated() {
                guard let id = v.intValue else {
                    if v.stringValue != nil || v.arrayValue != nil {
                        throw APIError.badRequest("'prompt' holds several prompts; this server takes one prompt per request", param: "prompt")
                    }
                    throw APIError.badRequest("prompt[\(i)] must be a token id", param: "prompt")
                }
                guard id >= 0 && id <= Int64(Int32.max) else {
                    throw APIError.badRequest("prompt[\(i)] = \(id) is not a valid token id", param: "prompt")
                }
                ids.append(Int32(id))
            }
            return .tokens(ids)
        default:
            throw APIError.badRequest("'prompt' must be a string or an array of token ids", param: "prompt")
        }
    }

    static func parseMessages(_ m: JSONValue?) throws(APIError) -> [ChatMessage] {
        guard let m, let list = m.arrayValue else {
            throw APIError.badRequest("'messages' is required: an array of {\"role\", \"content\"} objects", param: "messages")
        }
        guard !list.isEmpty else { throw APIError.badRequest("'messages' is empty", param: "messages") }
        var out: [ChatMessage] = []
        for (i, msg) in list.enumerated() {
            guard case .object = msg, let role = msg["role"]?.stringValue, !role.isEmpty else {
                throw APIError.badRequest("messages[\(i)] must be an object with a string \"role\"", param: "messages[\(i)].role")
            }
            let content: String
            switch msg["content"] ?? .null {
            case .string(let s): content = s
            case .null: content = ""
            case .array(let parts):
                var text = ""
                for (j, part) in parts.enumerated() {
                    guard part["type"]?.stringValue == "text", let t = part["text"]?.stringValue else {
                        throw APIError.badRequest("messages[\(i)].content[\(j)]: only {\"type\": \"text\", \"text\": ...} parts are supported", param: "messages[\(i)].content")
                    }
                    text += t
                }
                content = text
            default:
                throw APIError.badRequest("messages[\(i)].content must be a string or an array of text parts", param: "messages[\(i)].content")
            }
            out.append(ChatMessage(role: role, content: content))
        }
        return out
    }
}

/// Typed optional fields of a JSON object; `null` counts as absent (OpenAI clients send nulls).
struct FieldReader {
    let json: JSONValue

    func value(_ k: String) -> JSONValue? {
        guard let v = json[k], !v.isNull else { return nil }
        return v
    }

    func string(_ k: String) throws(APIError) -> String? {
        guard let v = value(k) else { return nil }
        guard let s = v.stringValue else { throw APIError.badRequest("'\(k)' must be a string", param: k) }
        return s
    }

    func bool(_ k: String) throws(APIError) -> Bool? {
        guard let v = value(k) else { return nil }
        guard let b = v.boolValue else { throw APIError.badRequest("'\(k)' must be true or false", param: k) }
        return b
    }

    func int(_ k: String, min: Int64, max: Int64) throws(APIError) -> Int64? {
        guard let v = value(k) else { return nil }
        guard let i = v.intValue else { throw APIError.badRequest("'\(k)' must be an integer", param: k) }
        guard i >= min && i <= max else {
            throw APIError.badRequest(max == Int64.max ? "'\(k)' must be at least \(min)" : "'\(k)' must be between \(min) and \(max)", param: k)
        }
        return i
    }

    func number(_ k: String, min: Double, max: Double) throws(APIError) -> Double? {
        guard let v = value(k) else { return nil }
        guard let d = v.doubleValue, d.isFinite else { throw APIError.badRequest("'\(k)' must be a number", param: k) }
        guard d >= min && d <= max else { throw APIError.badRequest("'\(k)' must be between \(min) and \(max)", param: k) }
        return d
    }

    func array(_ k: String) throws(APIError) -> [JSONValue]? {
        guard let v = value(k) else { return nil }
        guard let a = v.arrayValue else { throw APIError.badRequest("'\(k)' must be an array", param: k) }
        return a
    }
}
