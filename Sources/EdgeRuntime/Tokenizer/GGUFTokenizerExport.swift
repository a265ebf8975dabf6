import Foundation

/// The `tokenizer.ggml.*` metadata of a GGUF file, as the model importer reads it.
public struct GGUFTokenizerMetadata: Sendable {
    /// `general.architecture` ("llama", "phi3", ...): picks the SentencePiece variant.
    public var architecture: String
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece BPE with byte fallback).
    public var model: String
    /// `tokenizer.ggml.pre` ("smollm", "llama-bpe", "qwen2", ...), nil when absent.
    public var pre: String?
    public var tokens: [String]
    public var scores: [Float]?
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    public var tokenTypes: [Int32]?
    /// `tokenizer.ggml.merges` ("a b" strings); nil for SentencePiece files, whose merges are derived.
    public var merges: [String]?
    public var bosID: Int?
    public var eosID: Int?
    public var unkID: Int?
    public var padID: Int?
    public var addBOS: Bool?
    public var addEOS: Bool?
    public var chatTemplate: String?

    public init(architecture: String, model: String, pre: String? = nil, tokens: [String], scores: [Float]? = nil,
                tokenTypes: [Int32]? = nil, merges: [String]? = nil, bosID: Int? = nil, eosID: Int? = nil,
                unkID: Int? = nil, padID: Int? = nil, addBOS: Bool? = nil, addEOS: Bool? = nil, chatTemplate: String? = nil) {
        self.architecture = architecture; self.model = model; self.pre = pre; self.tokens = tokens; self.scores = scores
        self.tokenTypes = tokenTypes; self.merges = merges; self.bosID = bosID; self.eosID = eosID; self.unkID = unkID
        self.padID = padID; self.addBOS = addBOS; self.addEOS = addEOS; self.chatTemplate = chatTemplate
    }
}

/// Writes `tokenizer.json` + `tokenizer_config.json` from GGUF metadata exactly as transformers'
/// GGUF converter (`transformers.integrations.gguf.gguf_tokenizer_mapping`, v5.23) builds them, so
/// that an imported model tokenizes identically here and in transformers:
///
/// - `gpt2`: BPE over the byte-level spelling, `ByteLevel` pre-tokenizer with the GPT-2 regex (or, for
///   a known `pre`, `Split(regex, Isolated)` + `ByteLevel(use_regex: false)`), `ByteLevel` decoder.
///   `pre = "smollm"` gets the plain GPT-2 regex, as transformers does (llama.cpp splits digits first;
///   the two differ only on some non-ASCII digits).
/// - `llama`: BPE with `byte_fallback` and `fuse_unk`, merges derived from the scores (transformers'
///   `generate_merges`), `Metaspace(prepend_scheme: first, split: false)` (Phi-3: `Prepend`+`Replace`
///   normalizer instead), decoder `Replace ▁→space, ByteFallback, Fuse, Strip(1 leading space)`.
/// - Both: control tokens (type 3) and the named special tokens become special added tokens,
///   user-defined tokens (type 4) plain added tokens; the post-processor adds BOS/EOS per
///   `add_bos_token`/`add_eos_token` (llama files default to adding BOS).
public enum GGUFTokenizerExport {
    public struct Files: Sendable {
        public let tokenizerJSON: Data
        public let tokenizerConfigJSON: Data
    }

    public enum ExportError: Error, CustomStringConvertible, Equatable {
        case unsupportedModel(String)
        case badMetadata(String)
        public var description: String {
            switch self {
            case let .unsupportedModel(m):
                return "GGUF tokenizer.ggml.model \"\(m)\" is not supported; supported are \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece BPE)"
            case let .badMetadata(m): return "GGUF tokenizer metadata: \(m)"
            }
        }
    }

    static let splitRegexes: [String: String] = {
        let llama3 = KnownSplitRegex.llama3Pattern
        let qwen2 = KnownSplitRegex.qwen2Pattern
        let qwen35 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let gpt4o = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        var m = [String: String]()
        for k in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"] { m[k] = llama3 }
        for k in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] { m[k] = qwen2 }
        m["qwen35"] = qwen35
        m["tekken"] = tekken
        for k in ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"] { m[k] = gpt4o }
        return m
    }()

    public static func files(from meta: GGUFTokenizerMetadata) throws -> Files {
        let n = meta.tokens.count
        guard n > 0 else { throw ExportError.badMetadata("tokenizer.ggml.tokens is empty") }
        if let t = meta.tokenTypes, t.count != n { throw ExportError.badMetadata("tokenizer.ggml.token_type has \(t.count) entries for \(n) tokens") }
        if let s = meta.scores, s.count != n { throw ExportError.badMetadata("tokenizer.ggml.scores has \(s.count) entries for \(n) tokens") }
        for (key, id) in [("bos", meta.bosID), ("eos", meta.eosID), ("unknown", meta.unkID), ("padding", meta.padID)] {
            if let id, !(0..<n).contains(id) { throw ExportError.badMetadata("tokenizer.ggml.\(key)_token_id \(id) is outside the \(n)-token vocabulary") }
        }
        let name: (Int?) -> String? = { $0.map { meta.tokens[$0] } }
        let bos = name(meta.bosID), eos = name(meta.eosID), unk = name(meta.unkID), pad = name(meta.padID)
        let types = meta.tokenTypes ?? []

        var root = JinjaObject()
        root["version"] = .string("1.0")
        root["truncation"] = JinjaValue.none
        root["padding"] = JinjaValue.none
        var model = JinjaObject()
        var vocabTokens: [String]
        let addBOS: Bool
        var added = [(Int, String, Bool)]()  // id, content, special

        switch meta.model {
        case "gpt2":
            let alphabet = Set(ByteLevelAlphabet.byteToScalar)
            vocabTokens = meta.tokens.map { t in
                t.unicodeScalars.allSatisfy { alphabet.contains($0) } ? t : String(String.UnicodeScalarView(ByteLevelAlphabet.encode(Array(t.unicodeScalars))))
            }
            guard let merges = meta.merges else { throw ExportError.badMetadata("a gpt2 tokenizer needs tokenizer.ggml.merges") }
            model["type"] = .string("BPE"); model["dropout"] = JinjaValue.none; model["unk_token"] = JinjaValue.none
            model["continuing_subword_prefix"] = .string(""); model["end_of_word_suffix"] = .string("")
            model["fuse_unk"] = .bool(false); model["byte_fallback"] = .bool(false); model["ignore_merges"] = .bool(false)
            model["vocab"] = .object(vocabObject(vocabTokens))
            model["merges"] = .array(try merges.map { m in
                let parts = m.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw ExportError.badMetadata("merge \(m.debugDescription) is not two tokens") }
                return .array([.string(String(parts[0])), .string(String(parts[1]))])
            })
            root["normalizer"] = JinjaValue.none
            if let pre = meta.pre, let regex = splitRegexes[pre] {
                root["pre_tokenizer"] = .object(obj(["type": .string("Sequence"), "pretokenizers": .array([
                    .object(obj(["type": .string("Split"), "pattern": .object(obj(["Regex": .string(regex)])),
                                 "behavior": .string("Isolated"), "invert": .bool(false)])),
                    .object(byteLevel(addPrefixSpace: false, useRegex: false)),
                ])]))
            } else {
                root["pre_tokenizer"] = .object(byteLevel(addPrefixSpace: false, useRegex: true))
            }
            root["decoder"] = .object(byteLevel(addPrefixSpace: true, useRegex: true))
            addBOS = meta.addBOS ?? false
            // Control tokens outside the byte alphabet are llama.cpp mislabels; transformers skips them.
            for (i, t) in meta.tokens.enumerated() where i < types.count && types[i] == 3 && t.unicodeScalars.allSatisfy({ alphabet.contains($0) }) {
                added.append((i, t, true))
            }
        case "llama":
            vocabTokens = meta.tokens
            guard let scores = meta.scores else { throw ExportError.badMetadata("a llama tokenizer needs tokenizer.ggml.scores") }
            let merges = meta.merges.map { $0.map { m -> (String, String) in
                let p = m.split(separator: " ", omittingEmptySubsequences: false); return (String(p.first ?? ""), String(p.dropFirst().joined(separator: " ")))
            } } ?? generateMerges(tokens: meta.tokens, scores: scores)
            model["type"] = .string("BPE"); model["dropout"] = JinjaValue.none; model["unk_token"] = JinjaValue.none
            model["continuing_subword_prefix"] = JinjaValue.none; model["end_of_word_suffix"] = JinjaValue.none
            model["fuse_unk"] = .bool(true); model["byte_fallback"] = .bool(true); model["ignore_merges"] = .bool(false)
            model["vocab"] = .object(vocabObject(vocabTokens))
            model["merges"] = .array(merges.map { .array([.string($0.0), .string($0.1)]) })
            if meta.architecture == "phi3" {
                root["normalizer"] = .object(obj(["type": .string("Sequence"), "normalizers": .array([
                    .object(obj(["type": .string("Prepend"), "prepend": .string("\u{2581}")])),
                    .object(obj(["type": .string("Replace"), "pattern": .object(obj(["String": .string(" ")])), "content": .string("\u{2581}")])),
                ])]))
                root["pre_tokenizer"] = JinjaValue.none
            } else if ["gemma", "gemma2", "gemma3", "gemma4"].contains(meta.architecture) {
                throw ExportError.unsupportedModel("llama (\(meta.architecture) SentencePiece variant)")
            } else {
                root["normalizer"] = JinjaValue.none
                root["pre_tokenizer"] = .object(obj(["type": .string("Metaspace"), "replacement": .string("\u{2581}"),
                                                     "prepend_scheme": .string("first"), "split": .bool(false)]))
            }
            root["decoder"] = .object(obj(["type": .string("Sequence"), "decoders": .array([
                .object(obj(["type": .string("Replace"), "pattern": .object(obj(["String": .string("\u{2581}")])), "content": .string(" ")])),
                .object(obj(["type": .string("ByteFallback")])),
                .object(obj(["type": .string("Fuse")])),
                .object(obj(["type": .string("Strip"), "content": .string(" "), "start": .int(1), "stop": .int(0)])),
            ])]))
            addBOS = meta.addBOS ?? true
            for (i, t) in meta.tokens.enumerated() where i < types.count && types[i] == 3 { added.append((i, t, true)) }
        default:
            throw ExportError.unsupportedModel(meta.model)
        }
        // The named special tokens are special added tokens too (transformers adds them from the config).
        for id in [meta.unkID, meta.bosID, meta.eosID, meta.padID].compactMap({ $0 }) where !added.contains(where: { $0.0 == id }) {
            added.append((id, vocabTokens[id], true))
        }
        for i in meta.tokens.indices where i < types.count && types[i] == 4 && !added.contains(where: { $0.0 == i }) {
            added.append((i, vocabTokens[i], false))
        }
        added.sort { $0.0 < $1.0 }
        root["added_tokens"] = .array(added.map { id, content, special in
            .object(obj(["id": .int(id), "content": .string(content), "single_word": .bool(false), "lstrip": .bool(false),
                         "rstrip": .bool(false), "normalized": .bool(false), "special": .bool(special)]))
        })
        let addEOS = meta.addEOS ?? false
        root["post_processor"] = .object(template(bos: addBOS ? bos.map { ($0, meta.bosID!) } : nil,
                                                  eos: addEOS ? eos.map { ($0, meta.eosID!) } : nil))
        root["model"] = .object(model)

        var config = JinjaObject()
        config["backend"] = .string("tokenizers")
        for (k, v) in [("bos_token", bos), ("eos_token", eos), ("unk_token", unk), ("pad_token", pad)] { if let v { config[k] = .string(v) } }
        if let t = meta.chatTemplate { config["chat_template"] = .string(t) }
        config["tokenizer_class"] = .string("TokenizersBackend")

        return Files(tokenizerJSON: Data(JinjaValue.object(root).json(sortKeys: false, indent: nil).utf8),
                     tokenizerConfigJSON: Data(JinjaValue.object(config).json(sortKeys: false, indent: 2).utf8))
    }

    private static func obj(_ pairs: KeyValuePairs<String, JinjaValue>) -> JinjaObject {
        var o = JinjaObject()
        for (k, v) in pairs { o[k] = v }
        return o
    }

    private static func byteLevel(addPrefixSpace: Bool, useRegex: Bool) -> JinjaObject {
        obj(["type": .string("ByteLevel"), "add_prefix_space": .bool(addPrefixSpace), "trim_offsets": .bool(true), "use_regex": .bool(useRegex)])
    }

    /// transformers builds `{token: index}` in id order: a duplicated spelling keeps its first position
    /// and its last id (JinjaObject updates in place the same way).
    private static func vocabObject(_ tokens: [String]) -> JinjaObject {
        var o = JinjaObject()
        for (i, t) in tokens.enumerated() { o[t] = .int(i) }
        return o
    }

    /// transformers' `update_post_processor`: `[bos:0] $A:0 [eos:0]`.
    private static func template(bos: (String, Int)?, eos: (String, Int)?) -> JinjaObject {
        func special(_ t: String, _ type: Int) -> JinjaValue { .object(obj(["SpecialToken": .object(obj(["id": .string(t), "type_id": .int(type)]))])) }
        func seq(_ s: String, _ type: Int) -> JinjaValue { .object(obj(["Sequence": .object(obj(["id": .string(s), "type_id": .int(type)]))])) }
        var single = [JinjaValue](), pair = [JinjaValue]()
        if let bos { single.append(special(bos.0, 0)) }
        single.append(seq("A", 0))
        if let eos { single.append(special(eos.0, 0)) }
        pair = single
        if let bos { pair.append(special(bos.0, 1)) }
        pair.append(seq("B", 1))
        if let eos { pair.append(special(eos.0, 1)) }
        var specials = JinjaObject()
        for (t, id) in [bos, eos].compactMap({ $0 }) {
            specials[t] = .object(obj(["id": .string(t), "ids": .array([.int(id)]), "tokens": .array([.string(t)])]))
        }
        return obj(["type": .string("TemplateProcessing"), "single": .array(single), "pair": .array(pair), "special_tokens": .object(specials)])
    }

    /// transformers' `generate_merges(vocab, vocab_scores)`: every split of every token into two
    /// vocabulary pieces, grouped per token (pieces ordered by their ids), then stably sorted by
    /// (score, left length, right length), best first.
    static func generateMerges(tokens: [String], scores: [Float]) -> [(String, String)] {
        var vocab = [String: Int]()
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        // Python's dict(zip(tokens, scores)): a duplicated spelling keeps its first position, last score.
        var order = [String](), score = [String: Float]()
        for (t, s) in zip(tokens, scores) {
            if score[t] == nil { order.append(t) }
            score[t] = s
        }
        var merges = [(l: String, r: String, score: Float, ll: Int, rl: Int)]()
        for t in order {
            // Python slices strings by code point.
            let chars = Array(t.unicodeScalars)
            guard chars.count > 1 else { continue }
            var local = [(String, String)]()
            for k in 1..<chars.count {
                let l = String(String.UnicodeScalarView(chars[..<k])), r = String(String.UnicodeScalarView(chars[k...]))
                if vocab[l] != nil && vocab[r] != nil { local.append((l, r)) }
            }
            local.sort { (vocab[$0.0]!, vocab[$0.1]!) < (vocab[$1.0]!, vocab[$1.1]!) }
            for (l, r) in local { merges.append((l, r, score[t]!, l.unicodeScalars.count, r.unicodeScalars.count)) }
        }
        // Python's sorted(reverse=True) is stable: equal keys keep their order.
        let indexed = merges.enumerated().sorted { a, b in
            let x = a.element, y = b.element
            if x.score != y.score { return x.score > y.score }
            if x.ll != y.ll { return x.ll > y.ll }
            if x.rl != y.rl { return x.rl > y.rl }
            return a.offset < b.offset
        }
        return indexed.map { ($0.element.l, $0.element.r) }
    }
}
