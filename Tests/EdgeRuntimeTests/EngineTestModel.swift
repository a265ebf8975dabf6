import AdapterCache
import EdgeRuntime
import Foundation
import PEFTFixtures
import XCTest

/// The real test model (SmolLM2-135M-Instruct, Q4_1 GGUF) imported once per test process into a
/// temp directory with the project's importer, then shared by every engine test.
enum EngineTestModel {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var cachedWeights: LlamaWeights?
    nonisolated(unsafe) private static var cachedDirectory: String?
    nonisolated(unsafe) private static var cachedAdapterA: LoRABinding?
    nonisolated(unsafe) private static var cachedAdapterAServing: [LoRAPrecision: LoRABinding] = [:]

    static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var ggufPath: String {
        if let p = ProcessInfo.processInfo.environment["EDGE_TEST_GGUF"], !p.isEmpty { return p }
        return repositoryRoot.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
    }

    /// The imported model directory (config.json, model.safetensors, tokenizer files).
    static func directory() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let d = cachedDirectory { return d }
        let gguf = ggufPath
        guard FileManager.default.fileExists(atPath: gguf) else {
            throw TestModelMissing("the test model \(gguf) is missing: run scripts/fetch-test-model (or set EDGE_TEST_GGUF)")
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("edge-engine-tests-\(getpid())").path
        try? FileManager.default.removeItem(atPath: out)
        try importModel(gguf: gguf, into: out)
        cachedDirectory = out
        return out
    }

    static func weights() throws -> LlamaWeights {
        let dir = try directory()
        lock.lock()
        defer { lock.unlock() }
        if let w = cachedWeights { return w }
        let w = try LlamaWeights.load(directory: dir)
        cachedWeights = w
        return w
    }

    /// Fixture adapter `a` (PEFT r=8, alpha 16, all seven projections), read straight from its
    /// safetensors file into the engine's binding.
    static func adapterA() throws -> LoRABinding {
        let hp = try weights().hyperparameters
        lock.lock()
        defer { lock.unlock() }
        if let a = cachedAdapterA { return a }
        let dir = URL(fileURLWithPath: try FixtureAdapterA.directory())
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        let r = (config["r"] as! NSNumber).intValue
        let alpha = (config["lora_alpha"] as! NSNumber).floatValue
        let st = try SafetensorsFile(path: dir.appendingPathComponent("adapter_model.safetensors").path)
        var pairs: [LoRABinding.Pair] = []
        for name in st.tensors.keys where name.hasSuffix(".lora_A.weight") {
            let module = String(name.dropLast(".lora_A.weight".count))
            let parts = module.split(separator: ".")
            guard let li = parts.firstIndex(of: "layers"), let layer = Int(parts[li + 1]),
                  let projection = LlamaProjection(moduleName: String(parts.last!)) else { continue }
            pairs.append(.init(key: module, layer: layer, projection: projection, rank: r, scale: alpha / Float(r),
                               a: try st.floats(name), b: try st.floats(module + ".lora_B.weight")))
        }
        let binding = try LoRABinding(name: "a", pairs: pairs, hyperparameters: hp)
        cachedAdapterA = binding
        return binding
    }

    /// Fixture adapter `a` the way serving holds it: decoded by the adapter cache's decoder, converted
    /// to a RAM form of the cache (f16: A and Bᵀ as halves; int8: rows with scales) and bound without
    /// a copy.
    static func adapterAServing(_ precision: LoRAPrecision = .f16) throws -> LoRABinding {
        let hp = try weights().hyperparameters
        lock.lock()
        defer { lock.unlock() }
        if let a = cachedAdapterAServing[precision] { return a }
        let dir = try FixtureAdapterA.directory()
        let adapter = try LoRAAdapterDecoder.load(directory: dir).converted(to: precision)
        let binding = try LoRABinding(adapter: adapter, name: "a", hyperparameters: hp)
        cachedAdapterAServing[precision] = binding
        return binding
    }
}

/// A missing test model: the tests fail with this message (they never skip).
struct TestModelMissing: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
