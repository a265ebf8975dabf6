import Foundation
import XCTest
@testable import EdgeRuntime

final class TokenizerTests: XCTestCase {
    /// Every case of the shared reference fixture (HF tokenizers over the GGUF-converted tokenizer.json).
    func testSmolLM2MatchesReferenceCases() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        let root = try TokenizerFixtures.json("tokenizer_cases.json") as! [String: Any]
        let cases = root["cases"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let text = c["text"] as! String
            let expected = [Int32](json: c["ids"])
            let alternative = [Int32](json: c["ids_llamacpp_smollm_pretokenizer"])
            let ids = tok.encode(text)
            XCTAssert(ids == expected || ids == alternative, "encode \(text.debugDescription): \(ids) != \(expected)")
            XCTAssertEqual(ids, expected, "encode \(text.debugDescription)")
            XCTAssertEqual(tok.decode(expected), c["decoded"] as? String, "decode \(text.debugDescription)")
            XCTAssertEqual(tok.decode(expected, skipSpecial: true), c["decoded_skip_special"] as? String, "decode skip \(text.debugDescription)")
            let tokens = (c["tokens"] as! [String])
            XCTAssertEqual(expected.map { tok.tokenString($0) ?? "?" }, tokens, "tokens of \(text.debugDescription)")
        }
        for chat in root["chat"] as! [[String: Any]] {
            XCTAssertEqual(tok.encode(chat["text"] as! String), [Int32](json: chat["ids"]))
        }
    }

    func testSmolLM2SpecialTokenFacts() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        let info = (try TokenizerFixtures.json("tokenizer_cases.json") as! [String: Any])["info"] as! [String: Any]
        XCTAssertEqual(tok.vocabSize, info["vocab_size"] as? Int)
        XCTAssertEqual(tok.bosID, Int32(info["bos_token_id"] as! Int))
        XCTAssertEqual(tok.eosID, Int32(info["eos_token_id"] as! Int))
        XCTAssertEqual(tok.padID, Int32(info["pad_token_id"] as! Int))
        XCTAssertEqual(tok.unkID, Int32(info["unk_token_id"] as! Int))
        for (i, s) in (info["special_tokens_0_16"] as! [String]).enumerated() {
            XCTAssertEqual(tok.id(of: s), Int32(i))
            XCTAssertTrue(tok.isSpecial(Int32(i)))
        }
        XCTAssertFalse(tok.isSpecial(tok.id(of: "Ġthe")!))
        XCTAssertEqual(tok.stopTokenIDs, [0, 2])  // <|im_end|> (EOS) and <|endoftext|>
        XCTAssertEqual(tok.config.chatTemplate, info["chat_template"] as? String)
        XCTAssertNil(tok.tokenString(99_999))
        // add_bos is false for SmolLM2: addSpecial changes nothing.
        XCTAssertEqual(tok.encode("Hi", addSpecial: true), tok.encode("Hi"))
    }

    func testParseSpecialOffTreatsSpecialStringsAsText() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        let plain = tok.encode("<|im_start|>user", parseSpecial: false)
        XCTAssertFalse(plain.contains(1))
        XCTAssertEqual(tok.decode(plain), "<|im_start|>user")
        XCTAssertEqual(tok.encode("<|im_start|>user", parseSpecial: true).first, 1)
    }

    /// The SmolLM2 vocabulary under other pre-tokenizers and normalizers (expected ids from HF tokenizers).
    func testPreTokenizerVariantsMatchReference() throws {
        let variants = try TokenizerFixtures.json("variants.json") as! [[String: Any]]
        XCTAssertGreaterThanOrEqual(variants.count, 8)
        for v in variants {
            var patch = [String: Any]()
            for key in ["pre_tokenizer", "normalizer"] { if let p = v[key] { patch[key] = p } }
            let tok = try TokenizerFixtures.smolLM2Patched(patch)
            for c in v["cases"] as! [[String: Any]] {
                let text = c["text"] as! String
                XCTAssertEqual(tok.encode(text), [Int32](json: c["ids"]), "\(v["name"]!): \(text.debugDescription)")
            }
        }
    }

    /// SentencePiece BPE with byte fallback, converted the way transformers converts a llama GGUF.
    func testSentencePieceByteFallbackMatchesReference() throws {
        let tok = try TokenizerFixtures.spLlama.get()
        let cases = try TokenizerFixtures.json("sp_cases.json") as! [[String: Any]]
        for c in cases {
            let text = c["text"] as! String
            let ids = [Int32](json: c["ids"])
            XCTAssertEqual(tok.encode(text), ids, "encode \(text.debugDescription)")
            XCTAssertEqual(tok.encode(text, addSpecial: true), [Int32](json: c["ids_add_special"]), "encode+special \(text.debugDescription)")
            XCTAssertEqual(tok.decode(ids), c["decoded"] as? String, "decode \(text.debugDescription)")
            XCTAssertEqual(tok.decode(ids, skipSpecial: true), c["decoded_skip_special"] as? String, "decode skip \(text.debugDescription)")
        }
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertTrue(tok.stopTokenIDs.contains(2))
    }

    /// The hand-written matchers for the GPT-2 / Llama-3 / Qwen2 regexes agree with ICU on text
    /// built from every character class they distinguish.
    func testKnownRegexesAgreeWithICU() throws {
        let alphabet: [String] = ["a", "Z", "é", "中", "ſ", "'", "s", "t", "l", "e", "R", "E", "1", "²", "٣", " ", "  ",
                                  "\t", "\n", "\r", "\u{00A0}", "\u{3000}", "!", "?", "-", "😀", "\u{0301}", ".", "_"]
        var rng = SystemRandomNumberGenerator()
        var samples = [String]()
        for _ in 0..<400 {
            let n = Int.random(in: 1...14, using: &rng)
            samples.append((0..<n).map { _ in alphabet.randomElement(using: &rng)! }.joined())
        }
        samples += ["I'm fine", "it'S", "x'Ll", "\n \n  x", "  \r\n\n", "a  ", "  !!", " 1234567", "''s"]
        for (known, pattern) in [(KnownSplitRegex.Family.gpt2, KnownSplitRegex.gpt2Pattern),
                                 (.llama3, KnownSplitRegex.llama3Pattern), (.qwen2, KnownSplitRegex.qwen2Pattern)] {
            let icu = try ICURegex(pattern, file: "test")
            let fast = KnownSplitRegex(family: known)
            for s in samples {
                let t = Array(s.unicodeScalars)
                XCTAssertEqual(fast.matches(in: t), icu.matches(in: t), "\(known) on \(s.debugDescription)")
            }
        }
    }

    func testStringFormMergesAndUnknownHandling() throws {
        // A tiny SentencePiece-style vocabulary with "a b" merges, an unk token and fuse_unk.
        let json = """
        {"added_tokens": [{"id": 0, "content": "<unk>", "special": true, "normalized": false},
                          {"id": 1, "content": "<s>", "special": true, "normalized": false}],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
         "pre_tokenizer": null,
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                            {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                     {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": false,
                   "vocab": {"<unk>": 0, "<s>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6, "▁ab": 7},
                   "merges": ["▁ a", "a b", "▁a b"]}}
        """
        let tok = try Tokenizer(tokenizerJSON: Data(json.utf8), config: nil)
        // "ab ab" → ▁ab▁ab; "a" + "b" merged first as "▁a" (rank 0) then "▁a b" (rank 2).
        XCTAssertEqual(tok.encode("ab ab"), [7, 7])
        // Unknown x, y fuse into one <unk>.
        XCTAssertEqual(tok.encode("axyb"), [5, 0, 4])
        XCTAssertEqual(tok.encode("ab", addSpecial: true), [1, 7])
        XCTAssertEqual(tok.decode([1, 7, 7]), "<s> ab ab")
        XCTAssertEqual(tok.decode([1, 7, 7], skipSpecial: true), "ab ab")
    }

    /// Llama-3's shape: `ignore_merges` (a word already in the vocabulary is one token, whatever the
    /// merges would make), a Sequence post-processor (ByteLevel + TemplateProcessing adding BOS).
    func testIgnoreMergesAndSequencePostProcessor() throws {
        func make(ignoreMerges: Bool) throws -> Tokenizer {
            let json = """
            {"added_tokens": [{"id": 8, "content": "<|begin_of_text|>", "special": true, "normalized": false}],
             "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\(KnownSplitRegex.llama3Pattern.replacingOccurrences(of: "\\", with: "\\\\"))"}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
             "post_processor": {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
                {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [8], "tokens": ["<|begin_of_text|>"]}}}]},
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "ignore_merges": \(ignoreMerges), "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "Ġ": 6, "Ġabc": 7},
                       "merges": [["b", "c"], ["a", "b"]]}}
            """
            return try Tokenizer(tokenizerJSON: Data(json.utf8), config: nil)
        }
        let plain = try make(ignoreMerges: false), ignoring = try make(ignoreMerges: true)
        XCTAssertEqual(plain.encode("abc"), [0, 4])           // b+c first (rank 0); "a bc" has no merge
        XCTAssertEqual(ignoring.encode("abc"), [5])           // whole word in the vocabulary
        XCTAssertEqual(ignoring.encode(" abc", addSpecial: true), [8, 7])
        XCTAssertEqual(ignoring.decode([8, 7]), "<|begin_of_text|> abc")
        XCTAssertEqual(ignoring.decode([8, 7], skipSpecial: true), " abc")
    }

    /// tokenizers ignores an added token's `id` when it does not fit: a content already in the
    /// vocabulary keeps the vocabulary id, a new one gets the next id past it (checked with tokenizers 0.23.3).
    func testAddedTokenIDsAssignedAsTokenizersDoes() throws {
        for fileID in [9, 8, 3] {
            let json = """
            {"added_tokens": [{"id": \(fileID), "content": "<|x|>", "special": true, "normalized": false}],
             "decoder": {"type": "ByteLevel"},
             "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5, "Ġ": 6, "Ġabc": 7}, "merges": []}}
            """
            let tok = try Tokenizer(tokenizerJSON: Data(json.utf8), config: nil)
            XCTAssertEqual(tok.encode("<|x|>a"), [8, 0])
            XCTAssertEqual(tok.decode([Int32(fileID), 0]), ["a", "<|x|>a", "aba"][[9, 8, 3].firstIndex(of: fileID)!])
        }
    }

    func testBadFilesGiveTypedErrors() {
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data("[1]".utf8), config: nil)) { e in
            XCTAssertEqual(e as? TokenizerError, .invalidJSON(file: "tokenizer.json", reason: "top level is not an object"))
        }
        let unigram = #"{"model": {"type": "Unigram", "vocab": []}}"#
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(unigram.utf8), config: nil)) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(file: "tokenizer.json", key: "model", type: "Unigram"))
            XCTAssertTrue("\(e)".contains("Unigram"))
        }
        let badMerge = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(badMerge.utf8), config: nil)) { e in
            XCTAssertEqual(e as? TokenizerError, .badMerge(file: "tokenizer.json", index: 0, merge: "a b"))
        }
        // An id far past the vocabulary's size: refused, not a table of gigabytes (a fuzzer finding).
        let sparse = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1555555571}, "merges": []}}"#
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(sparse.utf8), config: nil)) { e in
            XCTAssertTrue("\(e)".contains("model.vocab[\"b\"]"), "\(e)")
        }
        let gap = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1000}, "merges": []}}"#
        XCTAssertEqual(try Tokenizer(tokenizerJSON: Data(gap.utf8), config: nil).tokenString(1000), "b", "a modest gap is fine")
        let badPre = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Nope"}}"#
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(badPre.utf8), config: nil)) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(file: "tokenizer.json", key: "pre_tokenizer", type: "Nope"))
        }
        let config = Data(#"{"eos_token": "<missing>"}"#.utf8)
        let ok = #"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}"#
        XCTAssertThrowsError(try Tokenizer(tokenizerJSON: Data(ok.utf8), config: config)) { e in
            XCTAssertEqual(e as? TokenizerError, .unknownToken(file: "tokenizer_config.json", key: "eos_token", token: "<missing>"))
        }
        XCTAssertThrowsError(try Tokenizer(directory: URL(fileURLWithPath: "/nonexistent-model-dir"))) { e in
            XCTAssertTrue("\(e)".contains("/nonexistent-model-dir/tokenizer.json"))
        }
    }

    /// Expected ids checked with tokenizers 0.23.3.
    func testAddedTokenFlags() throws {
        let json = """
        {"added_tokens": [{"id": 4, "content": "<mask>", "special": true, "lstrip": true, "rstrip": false, "normalized": false},
                          {"id": 5, "content": "ab", "special": false, "single_word": true, "normalized": true},
                          {"id": 6, "content": "<r>", "special": true, "rstrip": true, "normalized": false}],
         "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, " ": 2, "x": 3}, "merges": []}}
        """
        let tok = try Tokenizer(tokenizerJSON: Data(json.utf8), config: nil)
        XCTAssertEqual(tok.encode("a  <mask>b"), [0, 4, 1])       // lstrip eats the spaces before
        XCTAssertEqual(tok.encode("<r>  a"), [6, 0])              // rstrip eats the spaces after
        XCTAssertEqual(tok.encode("ab x"), [5, 2, 3])             // whole word: matched
        XCTAssertEqual(tok.encode("xab"), [3, 0, 1])              // inside a word: not matched
        XCTAssertEqual(tok.encode("<mask>", parseSpecial: false), [0]) // only "a" is in the vocabulary; no unk_token: the rest is dropped
    }
}

/// 250 seeded random strings over a mixed alphabet (scripts, marks, digits of several kinds, odd
/// whitespace, NUL/DEL, special-token strings, byte-token look-alikes) against HF tokenizers.
final class TokenizerRandomTextTests: XCTestCase {
    func testRandomTextsMatchReference() throws {
        let root = try TokenizerFixtures.json("random_cases.json") as! [String: Any]
        let texts = root["texts"] as! [String]
        XCTAssertEqual(texts.count, 250)
        var llama3Patch = [String: Any]()
        let variants = try TokenizerFixtures.json("variants.json") as! [[String: Any]]
        llama3Patch["pre_tokenizer"] = variants.first { $0["name"] as? String == "llama3_split" }!["pre_tokenizer"]
        let tokenizers: [(String, Tokenizer)] = [
            ("smollm2", try TokenizerFixtures.smolLM2.get()),
            ("smollm2_llama3_split", try TokenizerFixtures.smolLM2Patched(llama3Patch)),
            ("sp_llama", try TokenizerFixtures.spLlama.get()),
        ]
        for (name, tok) in tokenizers {
            let expected = root[name] as! [Any]
            let decoded = root[name + "_decoded"] as! [String]
            for (i, text) in texts.enumerated() {
                let ids = [Int32](json: expected[i])
                XCTAssertEqual(tok.encode(text), ids, "\(name): \(text.debugDescription)")
                XCTAssertEqual(tok.decode(ids), decoded[i], "\(name) decode: \(text.debugDescription)")
            }
        }
    }
}
