import Foundation
import XCTest

/// Paths the model tests share: fixtures beside the tests, the real test model, scratch directories.
enum ModelTestSupport {
    static var repoRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static func fixture(_ relative: String) -> String {
        repoRoot.appendingPathComponent("Tests/Fixtures").appendingPathComponent(relative).path
    }

    /// The SmolLM2 GGUF: $EDGE_TEST_GGUF, else `<repo>/.cache/models/...`; a missing model fails the test.
    static func testGGUF(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let env = ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"]
        let fallback = repoRoot.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        let path = (env?.isEmpty == false) ? env! : fallback
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("the test model is missing at \(path): run scripts/fetch-test-model (or set EDGE_TEST_GGUF)", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return path
    }

    /// A fresh empty directory, removed when the test ends.
    static func scratchDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("edge-model-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
