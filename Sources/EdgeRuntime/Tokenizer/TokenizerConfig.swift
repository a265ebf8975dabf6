import Foundation

/// What `tokenizer_config.json` and `generation_config.json` say around the vocabulary: the named
/// special tokens, whether BOS/EOS are added, the chat template(s), and the ids that stop generation.
public struct TokenizerConfig: Sendable {
    public let bosToken: String?
    public let eosToken: String?
    public let padToken: String?
    public let unkToken: String?
    public let bosID: Int32?
    public let eosID: Int32?
    public let padID: Int32?
    public let unkID: Int32?
    /// `add_bos_token` / `add_eos_token` when the config states them.
    public let addBOS: Bool?
    public let addEOS: Bool?
    /// The default chat template (`chat_template` string, the entry named "default" of a list, or
    /// `chat_template.jinja`), if any.
    public let chatTemplate: String?
    /// Every named template of a list-form `chat_template` (e.g. "tool_use").
    public let namedChatTemplates: [String: String]
    public let stopTokenIDs: Set<Int32>

    /// End-of-turn spellings that stop generation when the vocabulary has them, as llama.cpp's EOG set.
    static let endOfTurnTokens = ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>",
                                  "<|endoftext|>", "<|end_of_text|>", "</s>", "<EOT>", "<|END_OF_TURN_TOKEN|>",
                                  "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>"]

    init(json: Data?, generationConfig: Data?, chatTemplate: String?, idOf: (String) -> Int32?) throws {
        let file = "tokenizer_config.json"
        let root = try json.map { try JSONNode.parse($0, file: file) }

        func token(_ key: String) throws -> String? {
            guard let node = root?[key], !node.isNull else { return nil }
            if let s = node.string { return s }
            if let s = node["content"].string { return s }
            throw node.fail("a token string or {\"content\": ...}")
        }
        func resolve(_ key: String, _ t: String?) throws -> Int32? {
            guard let t else { return nil }
            guard let id = idOf(t) else { throw TokenizerError.unknownToken(file: file, key: key, token: t) }
            return id
        }
        bosToken = try token("bos_token")
        eosToken = try token("eos_token")
        padToken = try token("pad_token")
        unkToken = try token("unk_token")
        var bos = try resolve("bos_token", bosToken)
        var eos = try resolve("eos_token", eosToken)
        padID = try resolve("pad_token", padToken)
        unkID = try resolve("unk_token", unkToken)
        addBOS = try root.flatMap { $0["add_bos_token"].isNull ? nil : try $0["add_bos_token"].bool(default: false) }
        addEOS = try root.flatMap { $0["add_eos_token"].isNull ? nil : try $0["add_eos_token"].bool(default: false) }

        var named = [String: String]()
        var template: String?
        if let node = root?["chat_template"], !node.isNull {
            if let s = node.string {
                template = s
            } else if let list = node.array {
                for item in list {
                    named[try item["name"].requireString()] = try item["template"].requireString()
                }
                template = named["default"]
            } else {
                throw node.fail("a template string or a list of {\"name\", \"template\"}")
            }
        }
        if let chatTemplate { template = chatTemplate }
        self.chatTemplate = template
        namedChatTemplates = named

        var stops = Set<Int32>()
        if let generationConfig {
            let gen = try JSONNode.parse(generationConfig, file: "generation_config.json")
            let eosNode = gen["eos_token_id"]
            if let one = eosNode.int { stops.insert(Int32(one)); if eos == nil { eos = Int32(one) } }
            else if let list = eosNode.array {
                for item in list {
                    guard let i = item.int else { throw item.fail("a token id") }
                    stops.insert(Int32(i))
                }
                if eos == nil, let first = list.first?.int { eos = Int32(first) }
            }
            if bos == nil, let b = gen["bos_token_id"].int { bos = Int32(b) }
        }
        bosID = bos
        eosID = eos
        if let eos { stops.insert(eos) }
        for t in Self.endOfTurnTokens { if let id = idOf(t) { stops.insert(id) } }
        stopTokenIDs = stops
    }
}
