import Foundation

/// The `tokenizer.ggml.*` metadata of a GGUF file, read without judging it: `GGUFTokenizerConverter`
/// validates it and writes the Hugging Face tokenizer files from it.
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

extension GGUFTokenizerMetadata {
    /// Reads the tokenizer keys of `gguf`; wrong value types are errors naming the key.
    public init(gguf: GGUFFile) throws(ModelError) {
        let md = gguf.metadata, path = gguf.path
        func strings(_ key: String) throws(ModelError) -> [String]? {
            guard let raw = md[key]?.array else { return nil }
            var out: [String] = []
            out.reserveCapacity(raw.count)
            for v in raw {
                guard let s = v.string else { throw .badMetadata(path: path, key: key, reason: "holds a \(v.typeName), not strings") }
                out.append(s)
            }
            return out
        }
        func id(_ key: String) throws(ModelError) -> Int? {
            guard let v = md[key] else { return nil }
            guard let i = v.integer, i >= 0, i <= Int64(Int32.max) else {
                throw .badMetadata(path: path, key: key, reason: "is not a token id")
            }
            return Int(i)
        }
        guard let model = md["tokenizer.ggml.model"]?.string else {
            throw .badMetadata(path: path, key: "tokenizer.ggml.model", reason: "is missing; the file carries no tokenizer")
        }
        guard let tokens = try strings("tokenizer.ggml.tokens") else {
            throw .badMetadata(path: path, key: "tokenizer.ggml.tokens", reason: "is missing or not an array")
        }
        var types: [Int32]?
        if let raw = md["tokenizer.ggml.token_type"]?.array {
            var out: [Int32] = []
            out.reserveCapacity(raw.count)
            for v in raw {
                guard let i = v.integer, let t = Int32(exactly: i) else {
                    throw .badMetadata(path: path, key: "tokenizer.ggml.token_type", reason: "holds a \(v.typeName), not 32-bit integers")
                }
                out.append(t)
            }
            types = out
        }
        var scores: [Float]?
        if let raw = md["tokenizer.ggml.scores"]?.array {
            var out: [Float] = []
            out.reserveCapacity(raw.count)
            for v in raw {
                guard let d = v.number else { throw .badMetadata(path: path, key: "tokenizer.ggml.scores", reason: "holds a \(v.typeName), not numbers") }
                out.append(Float(d))
            }
            scores = out
        }
        self.init(architecture: gguf.architecture ?? "", model: model, pre: md["tokenizer.ggml.pre"]?.string, tokens: tokens,
                  scores: scores, tokenTypes: types, merges: try strings("tokenizer.ggml.merges"),
                  bosID: try id("tokenizer.ggml.bos_token_id"), eosID: try id("tokenizer.ggml.eos_token_id"),
                  unkID: try id("tokenizer.ggml.unknown_token_id"), padID: try id("tokenizer.ggml.padding_token_id"),
                  addBOS: md["tokenizer.ggml.add_bos_token"]?.bool, addEOS: md["tokenizer.ggml.add_eos_token"]?.bool,
                  chatTemplate: md["tokenizer.chat_template"]?.string)
    }
}
