import Foundation
import XCTest
@testable import EdgeRuntime

/// Locates Tests/Fixtures/tokenizer relative to this file, and loads its tokenizers once per process.
enum TokenizerFixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: JSONNode.escapingByteOrderMarks(Data(contentsOf: url(name))))
    }

    static let smolLM2: Result<Tokenizer, Error> = Result { try Tokenizer(directory: url("smollm2")) }
    static let spLlama: Result<Tokenizer, Error> = Result { try Tokenizer(directory: url("sp_llama")) }

    /// The SmolLM2 tokenizer.json with some top-level keys replaced (pre-tokenizer variants).
    // Read-only after first use; its [String: Any] sections are not Sendable but are never mutated.
    nonisolated(unsafe) static let smolLM2File: Result<TokenizerFile, Error> = Result {
        try TokenizerFile.decode(Data(contentsOf: url("smollm2/tokenizer.json")), file: "tokenizer.json")
    }

    static func smolLM2Patched(_ patch: [String: Any]) throws -> Tokenizer {
        var file = try smolLM2File.get()
        for (k, v) in patch { file.sections[k] = v }
        return try Tokenizer(file: file, config: nil)
    }
}

extension Array where Element == Int32 {
    init(json: Any?) { self = (json as? [Any] ?? []).map { Int32(($0 as! NSNumber).intValue) } }
}
