import Foundation

/// A Hugging Face `tokenizer.json` tokenizer (BPE model: byte-level GPT-2/Llama-3/Qwen/SmolLM style, or
/// SentencePiece style with byte fallback as Llama-2/Mistral/Gemma), equal to `tokenizers` on encode
/// and decode, plus the special-token facts of `tokenizer_config.json` / `generation_config.json`.
///
/// Pipeline of `encode`, as tokenizers runs it: added tokens matched in the raw text → normalizer on
/// the text between them → added tokens marked `normalized` matched → pre-tokenizer → BPE per word →
/// post-processor (only with `addSpecial`).
///
/// Concurrency: immutable after init (the BPE word cache is internally locked); share one instance.
public final class Tokenizer: Sendable {
    let model: BPEModel
    let added: AddedVocabulary
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor
    let decoder: TokenDecoder?
    private let addedByID: [Int32: AddedVocabulary.Entry]
    private let addedByContent: [String: Int32]
    private let specialIDs: Set<Int32>

    public let config: TokenizerConfig
    public var bosID: Int32? { config.bosID }
    public var eosID: Int32? { config.eosID }
    public var padID: Int32? { config.padID }
    public var unkID: Int32? { config.unkID }
    /// Ids that end generation: EOS, the generation_config eos list, and known end-of-turn tokens.
    public var stopTokenIDs: Set<Int32> { config.stopTokenIDs }

    /// Loads `tokenizer.json`, and `tokenizer_config.json`, `generation_config.json` and
    /// `chat_template.jinja` when present, from a model directory.
    public convenience init(directory: URL) throws {
        func read(_ name: String, required: Bool) throws -> Data? {
            let url = directory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: url.path) else {
                if required { throw TokenizerError.unreadable(path: url.path, reason: "no such file") }
                return nil
            }
            do { return try Data(contentsOf: url) } catch {
                throw TokenizerError.unreadable(path: url.path, reason: error.localizedDescription)
            }
        }
        let template = try read("chat_template.jinja", required: false).map { String(decoding: $0, as: UTF8.self) }
        try self.init(tokenizerJSON: read("tokenizer.json", required: true)!,
                      config: read("tokenizer_config.json", required: false),
                      generationConfig: read("generation_config.json", required: false),
                      chatTemplate: template)
    }

    /// - Parameters:
    ///   - chatTemplate: the text of a separate `chat_template.jinja` (transformers 5 writes the
    ///     template there instead of into tokenizer_config.json); it wins over the config's.
    public convenience init(tokenizerJSON: Data, config configData: Data?, generationConfig: Data? = nil, chatTemplate: String? = nil) throws {
        try self.init(file: TokenizerFile.decode(tokenizerJSON, file: "tokenizer.json"), config: configData,
                      generationConfig: generationConfig, chatTemplate: chatTemplate)
    }

    /// From an already decoded tokenizer.json.
    init(file: TokenizerFile, config configData: Data?, generationConfig: Data? = nil, chatTemplate: String? = nil) throws {
        let root = JSONNode(value: file.sections, file: "tokenizer.json", path: "")
        let modelType = file.model.type ?? (file.model.merges == nil ? "?" : "BPE")
        guard modelType == "BPE" else {
            throw TokenizerError.unsupported(file: "tokenizer.json", key: "model", type: modelType)
        }
        model = try BPEModel(file.model, file: "tokenizer.json")
        normalizer = root["normalizer"].isNull ? nil : try Normalizer(json: root["normalizer"])
        preTokenizer = root["pre_tokenizer"].isNull ? nil : try PreTokenizer(json: root["pre_tokenizer"])
        decoder = root["decoder"].isNull ? nil : try TokenDecoder(json: root["decoder"])
        added = try AddedVocabulary(json: root["added_tokens"], normalizer: normalizer, modelVocab: model.vocab)

        var byID = [Int32: AddedVocabulary.Entry](), byContent = [String: Int32](), special = Set<Int32>()
        for e in added.entries {
            byID[e.id] = e
            byContent[e.content] = e.id
            if e.special { special.insert(e.id) }
        }
        addedByID = byID
        addedByContent = byContent
        specialIDs = special

        let vocab = model.vocab
        let lookup: (String) -> Int32? = { byContent[$0] ?? vocab[$0] }
        let cfg = try TokenizerConfig(json: configData, generationConfig: generationConfig, chatTemplate: chatTemplate, idOf: lookup)
        config = cfg
        // transformers 5 replaces the post-processor with `bos $A eos` whenever the config states
        // add_bos_token/add_eos_token, or when tokenizer.json has none.
        if cfg.addBOS != nil || cfg.addEOS != nil || root["post_processor"].isNull {
            let bos = (cfg.addBOS ?? false) ? cfg.bosID.map { [$0] } ?? [] : []
            let eos = (cfg.addEOS ?? false) ? cfg.eosID.map { [$0] } ?? [] : []
            postProcessor = .surround(prefix: bos, suffix: eos)
        } else {
            postProcessor = try PostProcessor(json: root["post_processor"], idOf: lookup)
        }
    }

    /// Number of ids the model's embedding must cover: one past the largest id of the vocabulary or
    /// the added tokens.
    public var vocabSize: Int {
        max(model.vocabSize, Int(added.entries.map(\.id).max() ?? -1) + 1)
    }

    public func isSpecial(_ id: Int32) -> Bool { specialIDs.contains(id) }

    public func tokenString(_ id: Int32) -> String? {
        if let e = addedByID[id] { return e.content }
        guard id >= 0, Int(id) < model.tokens.count else { return nil }
        return model.tokens[Int(id)]
    }

    public func id(of token: String) -> Int32? { addedByContent[token] ?? model.vocab[token] }

    /// Text → ids.
    /// - Parameters:
    ///   - addSpecial: add what the post-processor adds (e.g. BOS for Llama), as `add_special_tokens=True`.
    ///   - parseSpecial: match special-token strings written in the text as those tokens; when false
    ///     they are tokenized as plain text (tokenizers' `encode_special_tokens`).
    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = true) -> [Int32] {
        var ids = [Int32]()
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        let whole = TextPiece(scalars: Array(text.unicodeScalars), atStart: true)
        for segment in added.split(whole, normalized: false, parseSpecial: parseSpecial) {
            switch segment {
            case let .token(id):
                ids.append(id)
            case var .text(piece):
                if let normalizer { piece.scalars = normalizer.apply(piece.scalars) }
                // tokenizers drops empty pieces before pre-tokenizing (no Metaspace "▁" for "").
                if piece.scalars.isEmpty { continue }
                for inner in added.split(piece, normalized: true, parseSpecial: parseSpecial) {
                    switch inner {
                    case let .token(id):
                        ids.append(id)
                    case let .text(p):
                        if p.scalars.isEmpty { continue }
                        let words = preTokenizer?.apply([p]) ?? [p]
                        for w in words { model.tokenize(w.scalars, into: &ids) }
                    }
                }
            }
        }
        return addSpecial ? postProcessor.apply(ids) : ids
    }

    /// Ids → text, as tokenizers' `decode`: unknown ids are dropped, special tokens too with `skipSpecial`.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var tokens = [String]()
        tokens.reserveCapacity(ids.count)
        for id in ids {
            if skipSpecial && specialIDs.contains(id) { continue }
            if let t = tokenString(id) { tokens.append(t) }
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}
