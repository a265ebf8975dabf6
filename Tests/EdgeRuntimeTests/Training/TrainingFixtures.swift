import AdapterCache
import Foundation
import XCTest
@testable import EdgeRuntime

/// Locates Tests/Fixtures/train and the real test model; decompresses the zstd-stored fixtures.
enum TrainingFixtures {
    static var repoRoot: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent() }
    static var directory: URL { repoRoot.appendingPathComponent("Tests/Fixtures/train") }

    static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The real test GGUF: EDGE_TEST_GGUF, else <repo>/.cache/models/…; fails (never skips) when absent.
    static func ggufPath() throws -> String {
        let p = ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"]
            ?? repoRoot.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: p) else {
            XCTFail("test model \(p) is missing: run scripts/fetch-test-model (or set EDGE_TEST_GGUF)")
            throw TrainingError.unreadableFile(path: p, reason: "missing")
        }
        return p
    }

    /// Imports the real test GGUF into an NF4 model directory under `dir` with the project's importer.
    static func importedModel(into dir: URL) throws -> String {
        let out = dir.appendingPathComponent("model").path
        try ModelImporter(source: try ggufPath(), output: out).run()
        return out
    }

    /// Opens `name.zst` decompressed into a temporary file (zstd CLI, as CI installs it).
    static func zstdSafetensors(_ name: String, into dir: URL) throws -> SafetensorsFile {
        let out = dir.appendingPathComponent(name).path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["zstd", "-d", "-q", "-f", path(name + ".zst"), "-o", out]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw TrainingError.io(path: path(name + ".zst"), reason: "zstd -d failed") }
        return try SafetensorsFile(path: out)
    }

    /// batch{i} of batches.safetensors as a TrainingBatch.
    static func batch(_ file: SafetensorsFile, _ prefix: String) throws -> TrainingBatch {
        try TrainingBatchFile.batch(file, prefix)
    }

    static func trainLog() throws -> [String: Any] {
        let data = try Data(contentsOf: directory.appendingPathComponent("train_log.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}
