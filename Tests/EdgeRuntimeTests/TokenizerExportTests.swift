import Foundation
import XCTest
@testable import EdgeRuntime

/// The tokenizer.json the importer writes from GGUF metadata equals what transformers' GGUF converter
/// writes (the fixtures were made by it), and so tokenizes identically.
final class TokenizerExportTests: XCTestCase {
    private func sections(_ data: Data) throws -> [String: Any] {
        try JSONDecoder().decode(NativeJSON.self, from: data).value as! [String: Any]
    }

    private func assertSameJSON(_ a: Any?, _ b: Any?, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        if var m = a as? [String: Any], var n = b as? [String: Any], m["vocab"] != nil {
            // The big model section: compare vocab and merges natively (NSDictionary bridging is slow).
            XCTAssertEqual(m["vocab"] as? [String: Int], n["vocab"] as? [String: Int], "model.vocab differs", file: file, line: line)
            XCTAssertEqual(m["merges"] as? [[String]], n["merges"] as? [[String]], "model.merges differs", file: file, line: line)
            m["vocab"] = nil; m["merges"] = nil; n["vocab"] = nil; n["merges"] = nil
            return assertSameJSON(m, n, what, file: file, line: line)
        }
        let x = NSDictionary(dictionary: ["v": a ?? NSNull()]), y = NSDictionary(dictionary: ["v": b ?? NSNull()])
        XCTAssertTrue(x.isEqual(y), "\(what) differs", file: file, line: line)
    }

    func testByteLevelExportMatchesTransformersConversion() throws {
        let reference = try Data(contentsOf: TokenizerFixtures.url("smollm2/tokenizer.json"))
        let ref = try sections(reference)
        let model = ref["model"] as! [String: Any]
        let vocab = model["vocab"] as! [String: Int]
        var tokens = [String](repeating: "", count: vocab.count)
        for (t, i) in vocab { tokens[i] = t }
        let merges = (model["merges"] as! [[String]]).map { $0.joined(separator: " ") }
        let specials = Set((ref["added_tokens"] as! [[String: Any]]).map { $0["id"] as! Int })
        let types = tokens.indices.map { specials.contains($0) ? Int32(3) : 1 }
        let template = try String(contentsOf: TokenizerFixtures.url("smollm2/chat_template.jinja"), encoding: .utf8)
        let meta = GGUFTokenizerMetadata(architecture: "llama", model: "gpt2", pre: "smollm", tokens: tokens, tokenTypes: types,
                                         merges: merges, bosID: 1, eosID: 2, unkID: 0, padID: 2, addBOS: false, chatTemplate: template)
        let files = try GGUFTokenizerExport.files(from: meta)
        let out = try sections(files.tokenizerJSON)
        for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens", "model"] {
            assertSameJSON(out[key], ref[key], key)
        }
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
        let files = try GGUFTokenizerExport.files(from: meta)
        let out = try sections(files.tokenizerJSON)
        let ref = try sections(Data(contentsOf: TokenizerFixtures.url("sp_llama/tokenizer.json")))
        for key in ["normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens", "model"] {
            assertSameJSON(out[key], ref[key], key)
        }
        let tok = try Tokenizer(tokenizerJSON: files.tokenizerJSON, config: files.tokenizerConfigJSON)
        for c in try TokenizerFixtures.json("sp_cases.json") as! [[String: Any]] {
            XCTAssertEqual(tok.encode(c["text"] as! String, addSpecial: true), [Int32](json: c["ids_add_special"]))
        }
    }

    func testBadMetadataIsRefused() {
        XCTAssertThrowsError(try GGUFTokenizerExport.files(from: GGUFTokenizerMetadata(architecture: "llama", model: "rwkv", tokens: ["a"]))) { e in
            XCTAssertEqual(e as? GGUFTokenizerExport.ExportError, .unsupportedModel("rwkv"))
        }
        XCTAssertThrowsError(try GGUFTokenizerExport.files(from: GGUFTokenizerMetadata(architecture: "llama", model: "gpt2", tokens: ["a"], merges: [], eosID: 5)))
        XCTAssertThrowsError(try GGUFTokenizerExport.files(from: GGUFTokenizerMetadata(architecture: "llama", model: "llama", tokens: ["a"])))
    }
}
