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
    // Read-only after first use; [String: Any] is not Sendable but is never mutated.
    nonisolated(unsafe) static let smolLM2Root: Result<[String: Any], Error> = Result { try json("smollm2/tokenizer.json") as! [String: Any] }

    static func smolLM2Patched(_ patch: [String: Any]) throws -> Tokenizer {
        var root = try smolLM2Root.get()
        for (k, v) in patch { root[k] = v }
        return try Tokenizer(root: JSONNode(value: root, file: "tokenizer.json", path: ""), config: nil)
    }
}

extension Array where Element == Int32 {
    init(json: Any?) { self = (json as? [Any] ?? []).map { Int32(($0 as! NSNumber).intValue) } }
}
