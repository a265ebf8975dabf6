@testable import AdapterCache
import PEFTFixtures
import Crypto
import Foundation
import XCTest

/// Paths, temporary directories and small PEFT directories for the adapter tests.
enum TestSupport {
    /// Fixture adapter `a`: real PEFT output (SmolLM2-135M, r=8, alpha 16, f32, 7 projections), its
    /// weights rebuilt by `FixtureAdapterA` in a temp dir (once per process).
    static var fixtureA: String {
        get throws { try FixtureAdapterA.directory() }
    }

    static func tempDir(_ label: String = "t") -> String {
        let path = NSTemporaryDirectory() + "adapter-tests-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    struct Module {
        var key: String
        var dtype: SafetensorsDType = .f32
        var shape: [Int]
        var values: [Float]? = nil
    }

    /// A small Llama-shaped PEFT adapter: `layers` layers, hidden `h`, intermediate `i`, kv dim `kv`.
    static func llamaModules(layers: Int = 2, h: Int = 16, i: Int = 24, kv: Int = 8, rank: Int = 4, dtype: SafetensorsDType = .f32,
                             projections: [LoRAProjection] = LoRAProjection.allCases, rankOf: (Int, LoRAProjection) -> Int = { _, _ in -1 }) -> [Module] {
        var out: [Module] = []
        for l in 0..<layers {
            for p in projections {
                let (o, inp): (Int, Int) = switch p {
                case .q, .o: (h, h)
                case .k, .v: (kv, h)
                case .gate, .up: (i, h)
                case .down: (h, i)
                }
                let r = rankOf(l, p) > 0 ? rankOf(l, p) : rank
                let prefix = "base_model.model.model.layers.\(l).\(p.parent).\(p.rawValue)"
                out.append(Module(key: "\(prefix).lora_A.weight", dtype: dtype, shape: [r, inp]))
                out.append(Module(key: "\(prefix).lora_B.weight", dtype: dtype, shape: [o, r]))
            }
        }
        return out
    }

    /// Writes a PEFT directory; values default to a deterministic ramp distinct per tensor.
    @discardableResult
    static func writePEFT(_ dir: String, modules: [Module], config: String = #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]}"#, seed: Int = 0) throws -> [String: [Float]] {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var writer = SafetensorsWriter()
        var written: [String: [Float]] = [:]
        for (t, m) in modules.enumerated() {
            let n = m.shape.reduce(1, *)
            let salt: Int = t * 11 + seed * 7919
            let values: [Float] = m.values ?? (0..<n).map { (k: Int) -> Float in Float((k * 37 + salt) % 101 - 50) / 256 }
            written[m.key] = values
            switch m.dtype {
            case .f32: writer.add(m.key, shape: m.shape, floats: values)
            case .f16:
                let bits: [UInt16] = values.map { Float16($0).bitPattern }
                writer.add(m.key, dtype: .f16, shape: m.shape, bytes: bits.withUnsafeBytes { Data($0) })
            case .bf16:
                let bits: [UInt16] = values.map { FloatConversion.bfloat16Bits($0) }
                writer.add(m.key, dtype: .bf16, shape: m.shape, bytes: bits.withUnsafeBytes { Data($0) })
            default: writer.add(m.key, dtype: m.dtype, shape: m.shape, bytes: Data(count: n * m.dtype.byteSize))
            }
        }
        try writer.write(to: dir + "/adapter_model.safetensors")
        try config.write(toFile: dir + "/adapter_config.json", atomically: true, encoding: .utf8)
        return written
    }

    /// Packs `dir` into `{out}` and returns the manifest.
    @discardableResult
    static func pack(_ dir: String, to out: String, name: String, version: String, base: String? = nil, key: Curve25519Key? = nil) throws -> ArtifactManifest {
        var o = AdapterArtifact.PackOptions(name: try AdapterName(name), version: try AdapterName(version), baseModel: base)
        o.signingKey = key
        o.level = 3
        let (data, manifest) = try AdapterArtifact.pack(directory: dir, options: o)
        try data.write(to: URL(fileURLWithPath: out))
        return manifest
    }

    /// Runs a command, failing the test on a non-zero exit.
    static func run(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "command failed: \(args.joined(separator: " "))")
    }

    static let digestA = String(repeating: "a", count: 64)
    static let digestB = String(repeating: "b", count: 64)
}

typealias Curve25519Key = Curve25519.Signing.PrivateKey

/// Asserts that `body` throws the expected AdapterError case (compared by `matches`).
func XCTAssertAdapterError<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line, _ matches: (AdapterError) -> Bool) {
    do {
        _ = try body()
        XCTFail("expected an AdapterError", file: file, line: line)
    } catch let e as AdapterError {
        XCTAssertTrue(matches(e), "unexpected error: \(e)", file: file, line: line)
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
}

func XCTAssertAdapterErrorAsync<T>(_ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line, _ matches: (AdapterError) -> Bool) async {
    do {
        _ = try await body()
        XCTFail("expected an AdapterError", file: file, line: line)
    } catch let e as AdapterError {
        XCTAssertTrue(matches(e), "unexpected error: \(e)", file: file, line: line)
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
}
