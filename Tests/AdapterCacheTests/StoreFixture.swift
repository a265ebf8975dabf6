@testable import AdapterCache
import Crypto
import Foundation

/// A store directory with published test adapters, and caches pointed at it.
final class StoreFixture {
    let root: String
    let store: String
    var artifacts: [String: String] = [:]  // "name@version" → artifact path

    init() {
        root = TestSupport.tempDir("store")
        store = root + "/store"
    }

    /// Publishes a small Llama adapter (2 layers, f16, all projections, ≈ 12 KiB) as name@version.
    @discardableResult
    func publish(_ name: String, _ version: String, seed: Int = 0, base: String? = nil, key: Curve25519.Signing.PrivateKey? = nil,
                 layers: Int = 2, signIndexWith indexKey: Curve25519.Signing.PrivateKey? = nil) throws -> StoreIndex.Version {
        let peft = root + "/peft-\(name)-\(version)"
        try TestSupport.writePEFT(peft, modules: TestSupport.llamaModules(layers: layers, h: 64, i: 96, kv: 32, dtype: .f16), seed: seed)
        let art = root + "/\(name)-\(version).tar.zst"
        try TestSupport.pack(peft, to: art, name: name, version: version, base: base, key: key)
        artifacts["\(name)@\(version)"] = art
        var o = StorePublisher.Options()
        o.signingKey = indexKey
        return try StorePublisher.publish(artifact: art, to: store, options: o)
    }

    func cacheConfig(store url: String? = nil, _ edit: (inout AdapterCacheConfiguration) -> Void = { _ in }) throws -> AdapterCacheConfiguration {
        var c = AdapterCacheConfiguration(directory: TestSupport.tempDir("cache"))
        c.store = try StoreLocation(url ?? store)
        c.fetch.initialBackoff = 0.01
        c.fetch.maxBackoff = 0.05
        edit(&c)
        return c
    }

    func artifactPath(_ name: String, _ version: String) -> String { "\(store)/\(name)/\(version).tar.zst" }

    func blobs(_ c: AdapterCacheConfiguration) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: c.directory + "/blobs")) ?? [] }
    func temps(_ c: AdapterCacheConfiguration) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: c.directory + "/tmp")) ?? [] }
}
