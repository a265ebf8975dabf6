import Foundation
import XCTest
@testable import EdgeRuntime

/// The tokenizer.json the importer writes from GGUF metadata equals what transformers' GGUF converter
/// writes (the fixtures were made by it), and so tokenizes identically.
final class TokenizerExportTests: XCTestCase {
    private struct Files { let tokenizerJSON: Data, tokenizerConfigJSON: Data }

    private func export(_ meta: GGUFTokenizerMetadata) throws -> Files {
        let converter = try GGUFTokenizerConverter(metadata: meta, path: "metadata")
        return Files(tokenizerJSON: Data(converter.tokenizerJSON().serialized(indent: nil).utf8),
                     tokenizerConfigJSON: Data(converter.tokenizerConfigJSON(modelMaxLength: 8192).serialized().utf8))
    }

    /// Compares two tokenizer.json files: vocab and merges natively, every other section as JSON values.
    private func assertSameTokenizer(_ a: Data, _ b: Data, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try TokenizerFile.decode(a, file: "ours"), y = try TokenizerFile.decode(b, file: "reference")
        XCTAssertEqual(x.model.vocab, y.model.vocab, "model.vocab differs", file: file, line: line)
        XCTAssertEqual(x.model.merges?.map(\.raw), y.model.merges?.map(\.raw), "model.merges differs", file: file, line: line)
        XCTAssertEqual(x.model.type, y.model.type, file: file, line: line)
        XCTAssertTrue(NSDictionary(dictionary: x.model.options).isEqual(NSDictionary(dictionary: y.model.options)), "model options differ", file: file, line: line)
        for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens"] {
            let p = NSDictionary(dictionary: ["v": x.sections[key] ?? NSNull()]), q = NSDictionary(dictionary: ["v": y.sections[key] ?? NSNull()])
            XCTAssertTrue(p.isEqual(q), "\(key) differs", file: file, line: line)
        }
    }

    func testByteLevelExportMatchesTransformersConversion() throws {
        let reference = try Data(contentsOf: TokenizerFixtures.url("smollm2/tokenizer.json"))
        let ref = try TokenizerFixtures.smolLM2File.get()
        let vocab = ref.model.vocab!
        var tokens = [String](repeating: "", count: vocab.count)
        for (t, i) in vocab { tokens[Int(i)] = t }
        let merges = ref.model.merges!.map(\.raw)
        let specials = Set((ref.sections["added_tokens"] as! [[String: Any]]).map { $0["id"] as! Int })
        let types = tokens.indices.map { specials.contains($0) ? Int32(3) : 1 }
        let template = try String(contentsOf: TokenizerFixtures.url("smollm2/chat_template.jinja"), encoding: .utf8)
        let meta = GGUFTokenizerMetadata(architecture: "llama", model: "gpt2", pre: "smollm", tokens: tokens, tokenTypes: types,
                                         merges: merges, bosID: 1, eosID: 2, unkID: 0, padID: 2, addBOS: false, chatTemplate: template)
        let files = try export(meta)
        try assertSameTokenizer(files.tokenizerJSON, reference)
        let tok = try Tokenizer(tokenizerJSON: files.tokenizerJSON, config: files.tokenizerConfigJSON)
        let cases = (try TokenizerFixtures.json("tokenizer_cases.json") as! [String: Any])["cases"] as! [[String: Any]]
        for c in cases { XCTAssertEqual(tok.encode(c["text"] as! String), [Int32](json: c["ids"])) }
        XCTAssertEqual(tok.bosID, 1)
        XCTAssertEqual(tok.eosID, 2)
        XCTAssertEqual(tok.config.chatTemplate, template)
    }

    func testSentencePieceExportMatchesTransformersConversion() throws {
        let raw = try TokenizerFixtures.json("sp_llama_gguf_metadata.json") as! [String: Any]
        let meta = GGUFTokenizerMetadata(
            architecture: raw["architecture"] as! String, model: raw["tokenizer_type"] as! String,
            tokens: raw["tokens"] as! [String], scores: (raw["scores"] as! [NSNumber]).map { $0.floatValue },
            tokenTypes: (raw["token_type"] as! [NSNumber]).map { $0.int32Value },
            bosID: raw["bos_token_id"] as? Int, eosID: raw["eos_token_id"] as? Int, unkID: raw["unk_token_id"] as? Int,
            addBOS: raw["add_bos_token"] as? Bool)
        let files = try export(meta)
        try assertSameTokenizer(files.tokenizerJSON, Data(contentsOf: TokenizerFixtures.url("sp_llama/tokenizer.json")))
        let tok = try Tokenizer(tokenizerJSON: files.tokenizerJSON, config: files.tokenizerConfigJSON)
        for c in try TokenizerFixtures.json("sp_cases.json") as! [[String: Any]] {
            XCTAssertEqual(tok.encode(c["text"] as! String, addSpecial: true), [Int32](json: c["ids_add_special"]))
        }
    }

    func testBadMetadataIsRefused() {
        XCTAssertThrowsError(try export(GGUFTokenizerMetadata(architecture: "llama", model: "rwkv", tokens: ["a"]))) { e in
            guard case .badTokenizer(_, let reason) = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertTrue(reason.contains("rwkv"), reason)
        }
        XCTAssertThrowsError(try export(GGUFTokenizerMetadata(architecture: "llama", model: "gpt2", tokens: ["a"], merges: [], eosID: 5))) { e in
            guard case .badMetadata(_, let key, _) = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "tokenizer.ggml.eos_token_id")
        }
        XCTAssertThrowsError(try export(GGUFTokenizerMetadata(architecture: "llama", model: "llama", tokens: ["a"]))) { e in
            guard case .badMetadata(_, let key, _) = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "tokenizer.ggml.scores")
        }
        XCTAssertThrowsError(try export(GGUFTokenizerMetadata(architecture: "llama", model: "gpt2", tokens: ["a", "b"], merges: ["ab"]))) { e in
            guard case .badMetadata(_, let key, _) = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(key, "tokenizer.ggml.merges")
        }
    }
}
