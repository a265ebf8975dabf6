import AdapterCache
import Foundation

/// Turns a GGUF file's `tokenizer.ggml.*` metadata into Hugging Face `tokenizer.json` and
/// `tokenizer_config.json`, structurally identical to what transformers' GGUF converter writes
/// (`AutoTokenizer.from_pretrained(dir, gguf_file=...).save_pretrained(...)`):
/// - `gpt2`: byte-level BPE (vocab respelled into the byte alphabet where needed, merges from the file),
///   a ByteLevel pre-tokenizer (or a Split regex + ByteLevel for the `tokenizer.ggml.pre` names
///   transformers knows), ByteLevel decoder;
/// - `llama`: SentencePiece BPE with byte fallback, merges from the file or rebuilt from the scores,
///   Metaspace pre-tokenizer, Replace/ByteFallback/Fuse/Strip decoder.
/// Control tokens (type 3) and the bos/eos/unk/pad tokens become special added tokens, user-defined
/// ones (type 4) plain added tokens.
public struct GGUFTokenizerConverter {
    /// Where the metadata came from, for error messages.
    public let path: String
    public let architecture: String
    public let model: String
    public let pre: String?
    public let tokens: [String]
    public let tokenTypes: [Int]
    public let scores: [Float]?
    public let merges: [String]?
    public let bosID: Int?, eosID: Int?, unkID: Int?, padID: Int?
    public let addBOS: Bool
    public let addEOS: Bool
    public let chatTemplate: String?

    static let controlType = 3
    static let userDefinedType = 4

    public init(gguf: GGUFFile) throws(ModelError) {
        try self.init(metadata: GGUFTokenizerMetadata(gguf: gguf), path: gguf.path)
    }

    /// Checks that the metadata describes a tokenizer this converter can write: a supported model
    /// kind, per-token arrays as long as the vocabulary, special-token ids inside it, merges or
    /// scores to build the merge list from.
    public init(metadata md: GGUFTokenizerMetadata, path: String) throws(ModelError) {
        self.path = path
        let model = md.model
        guard model == "gpt2" || model == "llama" else {
            throw .badTokenizer(path: path, reason: "tokenizer.ggml.model '\(model)' is not supported (gpt2 byte-level BPE or llama SentencePiece)")
        }
        if model == "llama", ["gemma", "gemma2", "gemma3", "gemma4"].contains(md.architecture) {
            throw .badTokenizer(path: path, reason: "the \(md.architecture) SentencePiece variant is not supported")
        }
        guard !md.tokens.isEmpty else {
            throw .badMetadata(path: path, key: "tokenizer.ggml.tokens", reason: "is empty")
        }
        let vocabSize = md.tokens.count
        if let types = md.tokenTypes, types.count != vocabSize {
            throw .badMetadata(path: path, key: "tokenizer.ggml.token_type", reason: "has \(types.count) entries for \(vocabSize) tokens")
        }
        if let s = md.scores, s.count != vocabSize {
            throw .badMetadata(path: path, key: "tokenizer.ggml.scores", reason: "has \(s.count) entries for \(vocabSize) tokens")
        }
        if model == "gpt2", md.merges == nil {
            throw .badMetadata(path: path, key: "tokenizer.ggml.merges", reason: "is missing; a gpt2 (byte-level BPE) tokenizer needs its merges")
        }
        if model == "gpt2", let bad = md.merges?.first(where: { $0.split(separator: " ", omittingEmptySubsequences: false).count != 2 }) {
            throw .badMetadata(path: path, key: "tokenizer.ggml.merges", reason: "merge \(bad.debugDescription) is not two tokens separated by one space")
        }
        if model == "llama", md.merges == nil, md.scores == nil {
            throw .badMetadata(path: path, key: "tokenizer.ggml.scores", reason: "is missing; a SentencePiece tokenizer without merges needs scores to rebuild them")
        }
        for (key, id) in [("bos", md.bosID), ("eos", md.eosID), ("unknown", md.unkID), ("padding", md.padID)] {
            if let id, !(0..<vocabSize).contains(id) {
                throw .badMetadata(path: path, key: "tokenizer.ggml.\(key)_token_id", reason: "\(id) is not a token id below the vocabulary size \(vocabSize)")
            }
        }
        architecture = md.architecture
        self.model = model
        pre = md.pre
        tokens = md.tokens
        tokenTypes = md.tokenTypes.map { $0.map(Int.init) } ?? [Int](repeating: 1, count: vocabSize)
        scores = md.scores
        merges = md.merges
        bosID = md.bosID; eosID = md.eosID; unkID = md.unkID; padID = md.padID
        // llama.cpp adds BOS to a SentencePiece vocabulary unless the file says otherwise.
        addBOS = md.addBOS ?? (model == "llama")
        addEOS = md.addEOS ?? false
        chatTemplate = md.chatTemplate
    }

    // MARK: - tokenizer.json

    public func tokenizerJSON() -> OrderedJSON {
        let byteLevel = model == "gpt2"
        let alphabet = Set(ByteLevelAlphabet.byteToScalar)
        func inAlphabet(_ t: String) -> Bool { t.unicodeScalars.allSatisfy { alphabet.contains($0) } }
        // Vocabulary in id order; byte-level tokens spelled outside the byte alphabet are respelled from their UTF-8.
        var vocab: [(String, OrderedJSON)] = []
        vocab.reserveCapacity(tokens.count)
        var vocabSet = Set<String>()
        for (i, t) in tokens.enumerated() {
            let spelled = byteLevel && !inAlphabet(t) ? String(String.UnicodeScalarView(ByteLevelAlphabet.encode(Array(t.unicodeScalars)))) : t
            // A duplicate spelling keeps its last id, as a Python dict built from the list does.
            if vocabSet.insert(spelled).inserted {
                vocab.append((spelled, .int(i)))
            } else if let j = vocab.firstIndex(where: { $0.0 == spelled }) {
                vocab[j] = (spelled, .int(i))
            }
        }

        let mergePairs = buildMerges()
        var added: [(Int, String, Bool)] = []
        var addedIDs = Set<Int>()
        for (i, t) in tokens.enumerated() where tokenTypes[i] == Self.controlType && (!byteLevel || inAlphabet(t)) {
            added.append((i, t, true)); addedIDs.insert(i)
        }
        for i in [unkID, bosID, eosID, padID].compactMap({ $0 }) where !addedIDs.contains(i) {
            added.append((i, tokens[i], true)); addedIDs.insert(i)
        }
        for (i, t) in tokens.enumerated() where tokenTypes[i] == Self.userDefinedType && !addedIDs.contains(i) && vocabSet.contains(t) {
            added.append((i, t, false)); addedIDs.insert(i)
        }
        added.sort { $0.0 < $1.0 }
        let addedJSON: [OrderedJSON] = added.map { id, content, special in
            .object([("id", .int(id)), ("content", .string(content)), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                     ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(special))])
        }

        var normalizer: OrderedJSON = .null
        let preTokenizer: OrderedJSON
        let decoder: OrderedJSON
        let modelJSON: OrderedJSON
        let merges: OrderedJSON = .array(mergePairs.map { .array([.string($0.0), .string($0.1)]) })
        if byteLevel {
            if let pre, let regex = Self.preTokenizerSplits[pre] {
                preTokenizer = .object([("type", .string("Sequence")), ("pretokenizers", .array([
                    .object([("type", .string("Split")), ("pattern", .object([("Regex", .string(regex))])), ("behavior", .string("Isolated")), ("invert", .bool(false))]),
                    .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)), ("trim_offsets", .bool(true)), ("use_regex", .bool(false))]),
                ]))])
            } else {
                preTokenizer = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(false)), ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
            }
            decoder = .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(true)), ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
            modelJSON = .object([("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .string("")),
                                 ("end_of_word_suffix", .string("")), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                                 ("ignore_merges", .bool(false)), ("vocab", .object(vocab)), ("merges", merges)])
        } else {
            if architecture == "phi3" {
                // Phi-3's SentencePiece prepends and replaces in the normalizer and has no pre-tokenizer.
                normalizer = .object([("type", .string("Sequence")), ("normalizers", .array([
                    .object([("type", .string("Prepend")), ("prepend", .string("\u{2581}"))]),
                    .object([("type", .string("Replace")), ("pattern", .object([("String", .string(" "))])), ("content", .string("\u{2581}"))]),
                ]))])
                preTokenizer = .null
            } else {
                preTokenizer = .object([("type", .string("Metaspace")), ("replacement", .string("\u{2581}")), ("prepend_scheme", .string("first")), ("split", .bool(false))])
            }
            decoder = .object([("type", .string("Sequence")), ("decoders", .array([
                .object([("type", .string("Replace")), ("pattern", .object([("String", .string("\u{2581}"))])), ("content", .string(" "))]),
                .object([("type", .string("ByteFallback"))]),
                .object([("type", .string("Fuse"))]),
                .object([("type", .string("Strip")), ("content", .string(" ")), ("start", .int(1)), ("stop", .int(0))]),
            ]))])
            modelJSON = .object([("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                                 ("end_of_word_suffix", .null), ("fuse_unk", .bool(true)), ("byte_fallback", .bool(true)),
                                 ("ignore_merges", .bool(false)), ("vocab", .object(vocab)), ("merges", merges)])
        }

        return .object([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null), ("added_tokens", .array(addedJSON)),
            ("normalizer", normalizer), ("pre_tokenizer", preTokenizer), ("post_processor", postProcessor()), ("decoder", decoder),
            ("model", modelJSON),
        ])
    }

    /// TemplateProcessing as transformers' `update_post_processor` builds it from add_bos/add_eos.
    func postProcessor() -> OrderedJSON {
        let bos = (addBOS ? bosID : nil).map { tokens[$0] }
        let eos = (addEOS ? eosID : nil).map { tokens[$0] }
        func special(_ s: String, _ typeID: Int) -> OrderedJSON { .object([("SpecialToken", .object([("id", .string(s)), ("type_id", .int(typeID))]))]) }
        func sequence(_ s: String, _ typeID: Int) -> OrderedJSON { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(typeID))]))]) }
        var single: [OrderedJSON] = []
        if let bos { single.append(special(bos, 0)) }
        single.append(sequence("A", 0))
        if let eos { single.append(special(eos, 0)) }
        var pair = single
        if let bos { pair.append(special(bos, 1)) }
        pair.append(sequence("B", 1))
        if let eos { pair.append(special(eos, 1)) }
        var specials: [(String, OrderedJSON)] = []
        for (token, id) in [(bos, bosID), (eos, eosID)] {
            guard let token, let id, !specials.contains(where: { $0.0 == token }) else { continue }
            specials.append((token, .object([("id", .string(token)), ("ids", .array([.int(id)])), ("tokens", .array([.string(token)]))])))
        }
        specials.sort { $0.0 < $1.0 }
        return .object([("type", .string("TemplateProcessing")), ("single", .array(single)), ("pair", .array(pair)), ("special_tokens", .object(specials))])
    }

    /// Merges from the file ("a b" → (a, b)), or for SentencePiece files without them, rebuilt from the
    /// scores exactly as transformers' `generate_merges` does: every split of every token into two
    /// tokens, ordered by (score, len(left), len(right)) descending, stable.
    func buildMerges() -> [(String, String)] {
        if let merges {
            return merges.map { m in
                let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
                return parts.count == 2 ? (String(parts[0]), String(parts[1])) : (m, "")
            }
        }
        guard let scores else { return [] }
        // Python dicts keep the last id of a duplicate token and the first position of its key.
        var vocabID: [String: Int] = [:]
        var scoreOf: [String: Float] = [:]
        var order: [String] = []
        for (i, t) in tokens.enumerated() {
            if vocabID[t] == nil { order.append(t) }
            vocabID[t] = i
            scoreOf[t] = scores[i]
        }
        struct Candidate { let left: String, right: String, score: Float, leftLen: Int, rightLen: Int, seq: Int }
        var all: [Candidate] = []
        for token in order {
            let scalars = Array(token.unicodeScalars)
            guard scalars.count > 1 else { continue }
            var local: [Candidate] = []
            for cut in 1..<scalars.count {
                var l = String.UnicodeScalarView(), r = String.UnicodeScalarView()
                l.append(contentsOf: scalars[..<cut]); r.append(contentsOf: scalars[cut...])
                let left = String(l), right = String(r)
                if vocabID[left] != nil, vocabID[right] != nil {
                    local.append(Candidate(left: left, right: right, score: scoreOf[token]!, leftLen: cut, rightLen: scalars.count - cut, seq: 0))
                }
            }
            local.sort { (vocabID[$0.left]!, vocabID[$0.right]!) < (vocabID[$1.left]!, vocabID[$1.right]!) }
            for c in local { all.append(Candidate(left: c.left, right: c.right, score: c.score, leftLen: c.leftLen, rightLen: c.rightLen, seq: all.count)) }
        }
        all.sort { a, b in
            if a.score != b.score { return a.score > b.score }
            if a.leftLen != b.leftLen { return a.leftLen > b.leftLen }
            if a.rightLen != b.rightLen { return a.rightLen > b.rightLen }
            return a.seq < b.seq
        }
        return all.map { ($0.left, $0.right) }
    }

    // MARK: - tokenizer_config.json

    public func tokenizerConfigJSON(modelMaxLength: Int) -> OrderedJSON {
        func token(_ id: Int?) -> OrderedJSON { id.map { .string(tokens[$0]) } ?? .null }
        var m: [(String, OrderedJSON)] = [
            ("add_bos_token", .bool(addBOS)),
            ("add_eos_token", .bool(addEOS)),
            ("bos_token", token(bosID)),
        ]
        if let chatTemplate { m.append(("chat_template", .string(chatTemplate))) }
        m += [
            ("clean_up_tokenization_spaces", .bool(false)),
            ("eos_token", token(eosID)),
            ("model_max_length", .int(modelMaxLength)),
            ("pad_token", token(padID)),
            ("tokenizer_class", .string("PreTrainedTokenizerFast")),
            ("unk_token", token(unkID)),
        ]
        return .object(m)
    }

    /// The split regexes transformers applies before ByteLevel for these `tokenizer.ggml.pre` names.
    static let preTokenizerSplits: [String: String] = {
        let llama3 = KnownSplitRegex.llama3Pattern
        let tekken = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let qwen2 = KnownSplitRegex.qwen2Pattern
        let qwen35 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let gpt4o = #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        var m: [String: String] = [:]
        for k in ["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "dbrx", "smaug-bpe"] { m[k] = llama3 }
        m["tekken"] = tekken
        for k in ["qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"] { m[k] = qwen2 }
        m["qwen35"] = qwen35
        for k in ["gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"] { m[k] = gpt4o }
        return m
    }()
}
