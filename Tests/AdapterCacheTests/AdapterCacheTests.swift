@testable import AdapterCache
import Crypto
import Foundation
import XCTest

final class AdapterCacheTests: XCTestCase {
    func testMissThenHitThroughBothTiersWithMetrics() async throws {
        let f = StoreFixture()
        try f.publish("a", "1")
        let config = try f.cacheConfig()
        let cache = try AdapterCache(configuration: config)
        let lease = try await cache.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.version, "1")
        XCTAssertEqual(lease.adapter.modules.count, 14)
        var m = await cache.metrics()
        XCTAssertEqual([m.ramMisses, m.diskMisses, m.ramHits, m.diskHits], [1, 1, 0, 0])
        XCTAssertEqual(m.diskEntries, 1)
        XCTAssertEqual(m.ramBytes, Int64(lease.adapter.byteCount))
        XCTAssertEqual(m.fetch.count, 1)
        XCTAssertEqual(m.activeLeases, 1)

        let again = try await cache.acquire(AdapterReference("a@1"))
        XCTAssertTrue(again.adapter === lease.adapter)
        m = await cache.metrics()
        XCTAssertEqual(m.ramHits, 1)
        let listed = await cache.list()
        XCTAssertEqual(listed.map(\.tier), ["ram"])
        XCTAssertEqual(listed.first?.leases, 2)
        await cache.release(lease)
        await cache.release(lease)  // idempotent
        await cache.release(again)
        let info = await cache.info(try AdapterReference("a"))
        XCTAssertEqual(info?.leases, 0)
        XCTAssertEqual(f.blobs(config), ["\(info!.sha256).tar.zst"])
    }

    func testNameResolvesToLatestAndVersionsAreKept() async throws {
        let f = StoreFixture()
        try f.publish("a", "1", seed: 1)
        try f.publish("a", "2", seed: 2)
        let index = try StoreIndex.decode(Data(contentsOf: URL(fileURLWithPath: f.store + "/a/index.json")), url: "index", expectedName: AdapterName("a"))
        XCTAssertEqual(index.versions.map(\.version), ["1", "2"])
        XCTAssertEqual(index.latest, "2")
        let cache = try AdapterCache(configuration: try f.cacheConfig())
        let pulled = try await cache.pull(AdapterReference("a"))
        XCTAssertEqual(pulled.version, "2")
        let old = try await cache.acquire(AdapterReference("a@1"))
        XCTAssertEqual(old.version, "1")
        let newest = try await cache.acquire(AdapterReference("a"))
        XCTAssertEqual(newest.version, "2")
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a@9")) }) {
            if case .unknownVersion(let n, let v, let avail) = $0 { return n == "a" && v == "9" && avail == ["1", "2"] }
            return false
        }
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("nope")) }) {
            if case .notFound = $0 { return true }
            return false
        }
        XCTAssertThrowsError(try AdapterReference("../etc@1"))
        XCTAssertThrowsError(try AdapterReference("a@"))
    }

    func testDiskEvictionIsLRUAndRespectsPinsAndLocalAdapters() async throws {
        let f = StoreFixture()
        var sizes: [String: Int64] = [:]
        for (i, n) in ["x", "y", "z", "w"].enumerated() { sizes[n] = try f.publish(n, "1", seed: 10 + i).size }
        let budget = sizes.values.max()! * 2 + sizes.values.min()! / 2  // room for two
        let config = try f.cacheConfig { $0.diskBudgetBytes = budget }
        let cache = try AdapterCache(configuration: config)
        try await cache.pull(AdapterReference("x"))
        try await cache.pull(AdapterReference("y"))
        try await cache.pull(AdapterReference("x@1"))  // touch x: y is now least recent
        try await cache.pull(AdapterReference("z"))
        var names = await cache.list().map(\.name).sorted()
        XCTAssertEqual(names, ["x", "z"])
        var m = await cache.metrics()
        XCTAssertEqual(m.diskEvictions, 1)
        XCTAssertLessThanOrEqual(m.diskBytes, budget)

        try await cache.pin(AdapterReference("x"))
        try await cache.pull(AdapterReference("x@1"))
        try await cache.pull(AdapterReference("z@1"))  // z most recent, x pinned → z still goes, x stays
        try await cache.pull(AdapterReference("y"))
        names = await cache.list().map(\.name).sorted()
        XCTAssertEqual(names, ["x", "y"])

        // A device-trained adapter: imported as local, never evicted.
        try await cache.importArtifact(path: f.artifacts["w@1"]!, local: true)
        names = await cache.list().map(\.name).sorted()
        XCTAssertEqual(names, ["w", "x"])
        await XCTAssertAdapterErrorAsync({ try await cache.pull(AdapterReference("z")) }) {
            if case .diskBudgetExhausted(let a, _, _, _) = $0 { return a == "z@1" }
            return false
        }
        await XCTAssertAdapterErrorAsync({ try await cache.evict(AdapterReference("w")) }) {
            if case .local = $0 { return true }
            return false
        }
        try await cache.unpin(AdapterReference("x"))
        try await cache.pull(AdapterReference("z"))
        names = await cache.list().map(\.name).sorted()
        XCTAssertEqual(names, ["w", "z"])
        try await cache.evict(AdapterReference("w"), force: true)
        m = await cache.metrics()
        XCTAssertEqual(m.diskEntries, 1)
        XCTAssertEqual(f.blobs(config).count, 1)
    }

    /// ramPrecision .f16: both ways into RAM (fetched from the store, decoded from a disk blob) hold
    /// the half form, and the RAM budget counts its true (halved) size: a budget of one f32 adapter
    /// holds two.
    func testHalfPrecisionRAMTierCountsHalfTheBytes() async throws {
        let f = StoreFixture()
        for (n, seed) in [("x", 1), ("y", 2), ("z", 3)] { try f.publish(n, "1", seed: seed) }
        let probe = try AdapterArtifact.open(path: f.artifacts["x@1"]!).decode()
        let config = try f.cacheConfig {
            $0.ramBudgetBytes = Int64(probe.byteCount)
            $0.ramPrecision = .f16
        }
        let cache = try AdapterCache(configuration: config)
        let x = try await cache.acquire(AdapterReference("x"))
        let y = try await cache.acquire(AdapterReference("y"))
        XCTAssertEqual(x.adapter.precision, .f16)
        XCTAssertEqual(y.adapter.precision, .f16)
        XCTAssertEqual(x.adapter.byteCount * 2, probe.byteCount)
        var m = await cache.metrics()
        XCTAssertEqual(m.ramBytes, Int64(probe.byteCount), "two half-precision adapters in the budget of one f32 adapter")
        XCTAssertEqual(m.ramEntries, 2)
        let status = await cache.list().first { $0.name == "x" }
        XCTAssertEqual(status?.ramBytes, Int64(probe.byteCount / 2))
        await cache.release(x)
        await cache.release(y)
        let z = try await cache.acquire(AdapterReference("z"))   // evicts x, the least recently used
        await cache.release(z)
        let x2 = try await cache.acquire(AdapterReference("x"))  // disk blob → RAM
        m = await cache.metrics()
        XCTAssertEqual(m.diskHits, 1)
        XCTAssertEqual(x2.adapter.precision, .f16)
        let mod = try XCTUnwrap(probe.module(layer: 0, projection: .q))
        let mod16 = try XCTUnwrap(x2.adapter.module(layer: 0, projection: .q))
        XCTAssertEqual(Array(x2.adapter.a16(mod16)), probe.a(mod).map { Float16($0).bitPattern })
        await cache.release(x2)
    }

    func testLeasesPinRAMAndBlockEviction() async throws {
        let f = StoreFixture()
        try f.publish("x", "1", seed: 1)
        try f.publish("y", "1", seed: 2)
        let probe = try AdapterArtifact.open(path: f.artifacts["x@1"]!).decode()
        let config = try f.cacheConfig { $0.ramBudgetBytes = Int64(probe.byteCount) * 3 / 2 }  // one decoded adapter fits
        let cache = try AdapterCache(configuration: config)
        let x = try await cache.acquire(AdapterReference("x"))
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("y")) }) {
            if case .ramBudgetExhausted(let a, _, let leased, _) = $0 { return a == "y@1" && leased == probe.byteCount }
            return false
        }
        await XCTAssertAdapterErrorAsync({ try await cache.evict(AdapterReference("x")) }) {
            if case .inUse(_, let n) = $0 { return n == 1 }
            return false
        }
        await cache.release(x)
        let y = try await cache.acquire(AdapterReference("y"))
        let m = await cache.metrics()
        XCTAssertEqual(m.ramEvictions, 1)
        XCTAssertEqual(m.ramEntries, 1)
        let tiers = await cache.list().reduce(into: [String: String]()) { $0[$1.name] = $1.tier }
        XCTAssertEqual(tiers, ["x": "disk", "y": "ram"])
        // Disk → RAM again for x (a disk hit) once y is released.
        await cache.release(y)
        let x2 = try await cache.acquire(AdapterReference("x"))
        let m2 = await cache.metrics()
        XCTAssertEqual(m2.diskHits, 2)  // y, then x
        XCTAssertEqual(memcmp(x2.adapter.storage, probe.storage, probe.byteCount), 0)
        await cache.release(x2)

        var tiny = try f.cacheConfig { $0.ramBudgetBytes = 100 }
        tiny.store = config.store
        let small = try AdapterCache(configuration: tiny)
        await XCTAssertAdapterErrorAsync({ try await small.acquire(AdapterReference("x")) }) {
            if case .ramBudgetTooSmall = $0 { return true }
            return false
        }
    }

    func testDiskBudgetSmallerThanOneAdapterIsRefusedBeforeDownloading() async throws {
        let f = StoreFixture()
        let entry = try f.publish("a", "1")
        let config = try f.cacheConfig { $0.diskBudgetBytes = entry.size - 1 }
        let cache = try AdapterCache(configuration: config)
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            if case .diskBudgetTooSmall(let a, let s, let b) = $0 { return a == "a@1" && s == entry.size && b == entry.size - 1 }
            return false
        }
        XCTAssertEqual(f.blobs(config), [])
        XCTAssertEqual(f.temps(config), [])
    }

    func testWrongBaseModelIsRefusedAndNothingIsCached() async throws {
        let f = StoreFixture()
        try f.publish("a", "1", base: TestSupport.digestA)
        try f.publish("nobase", "1")
        let config = try f.cacheConfig { $0.baseModelDigest = TestSupport.digestB; $0.requireBaseModelDigest = true }
        let cache = try AdapterCache(configuration: config)
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            if case .baseModelMismatch(let a, let ab, let lb) = $0 { return a == "a@1" && ab == TestSupport.digestA && lb == TestSupport.digestB }
            return false
        }
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("nobase")) }) {
            if case .baseModelUnknown = $0 { return true }
            return false
        }
        let listed = await cache.list()
        XCTAssertEqual(listed.count, 0)
        XCTAssertEqual(f.blobs(config), [])
        XCTAssertEqual(f.temps(config), [])
        // The right base model is accepted.
        try await cache.setBaseModelDigest(TestSupport.digestA)
        let lease = try await cache.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.name, "a")
    }

    func testTamperedBytesAndWrongDigestsAreRefused() async throws {
        let f = StoreFixture()
        try f.publish("a", "1")
        try f.publish("b", "1", seed: 3)
        // Flip one byte of a's artifact in the store.
        let path = f.artifactPath("a", "1")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        // Give b's index entry a wrong sha256.
        let indexPath = f.store + "/b/index.json"
        var index = try JSONDecoder().decode(StoreIndex.self, from: Data(contentsOf: URL(fileURLWithPath: indexPath)))
        index.versions[0].sha256 = String(repeating: "0", count: 64)
        try JSONEncoder().encode(index).write(to: URL(fileURLWithPath: indexPath))

        let config = try f.cacheConfig()
        let cache = try AdapterCache(configuration: config)
        for name in ["a", "b"] {
            await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference(name)) }) {
                if case .digestMismatch(let w, _, _) = $0 { return w == "\(name)@1" }
                return false
            }
        }
        let m = await cache.metrics()
        XCTAssertEqual(m.verifyFailures, 2)
        XCTAssertEqual(f.blobs(config), [])
        XCTAssertEqual(f.temps(config), [])
    }

    func testTruncatedStoreFileIsRefused() async throws {
        let f = StoreFixture()
        let entry = try f.publish("a", "1")
        let path = f.artifactPath("a", "1")
        try Data(contentsOf: URL(fileURLWithPath: path)).prefix(Int(entry.size) / 2).write(to: URL(fileURLWithPath: path))
        let cache = try AdapterCache(configuration: try f.cacheConfig())
        await XCTAssertAdapterErrorAsync({ try await cache.acquire(AdapterReference("a")) }) {
            if case .truncatedDownload(_, let e, let r) = $0 { return e == entry.size && r == entry.size / 2 }
            return false
        }
    }

    func testSignaturePolicy() async throws {
        let key = Curve25519.Signing.PrivateKey()
        let other = Curve25519.Signing.PrivateKey()
        let f = StoreFixture()
        try f.publish("signed", "1", key: key)
        try f.publish("unsigned", "1", seed: 4)
        try f.publish("indexsigned", "1", seed: 5, signIndexWith: key)
        let pub = key.publicKey.rawRepresentation.base64EncodedString()

        let trusting = try AdapterCache(configuration: try f.cacheConfig { $0.trustedKeys = [pub]; $0.requireSignature = true })
        _ = try await trusting.acquire(AdapterReference("signed"))
        _ = try await trusting.acquire(AdapterReference("indexsigned"))
        await XCTAssertAdapterErrorAsync({ try await trusting.acquire(AdapterReference("unsigned")) }) {
            if case .signatureRequired(let w) = $0 { return w == "unsigned@1" }
            return false
        }
        let wrongKey = try AdapterCache(configuration: try f.cacheConfig { $0.trustedKeys = [other.publicKey.rawRepresentation.base64EncodedString()] })
        await XCTAssertAdapterErrorAsync({ try await wrongKey.acquire(AdapterReference("signed")) }) {
            if case .untrustedKey(_, let k) = $0 { return k == pub }
            return false
        }
        // A forged index signature (valid base64, wrong value).
        let indexPath = f.store + "/indexsigned/index.json"
        var index = try JSONDecoder().decode(StoreIndex.self, from: Data(contentsOf: URL(fileURLWithPath: indexPath)))
        index.versions[0].signature!.value = Data(repeating: 7, count: 64).base64EncodedString()
        try JSONEncoder().encode(index).write(to: URL(fileURLWithPath: indexPath))
        let fresh = try AdapterCache(configuration: try f.cacheConfig { $0.trustedKeys = [pub] })
        await XCTAssertAdapterErrorAsync({ try await fresh.acquire(AdapterReference("indexsigned")) }) {
            if case .badSignature(let w, _) = $0 { return w == "indexsigned@1" }
            return false
        }
        let listed = await fresh.list()
        XCTAssertTrue(listed.isEmpty)
    }

    func testStartupDropsPartialAndCorruptFilesAndKeepsPins() async throws {
        let f = StoreFixture()
        try f.publish("a", "1")
        try f.publish("b", "1", seed: 9)
        let config = try f.cacheConfig()
        var shaA = ""
        do {
            let cache = try AdapterCache(configuration: config)
            shaA = try await cache.pull(AdapterReference("a")).sha256
            try await cache.pull(AdapterReference("b"))
            try await cache.pin(AdapterReference("b"))
            try await cache.flush()
            // A second process cannot open the same cache while this one holds it.
            XCTAssertThrowsError(try AdapterCache(configuration: config)) { XCTAssertTrue("\($0)".contains("in use")) }
        }
        // Simulate a kill mid-download and a torn write: a partial temp file and a corrupt blob.
        try Data(repeating: 1, count: 1000).write(to: URL(fileURLWithPath: config.directory + "/tmp/\(shaA).partial"))
        let blob = config.directory + "/blobs/\(shaA).tar.zst"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: blob))
        bytes[bytes.count - 3] ^= 0xff
        try bytes.write(to: URL(fileURLWithPath: blob))
        try Data("junk".utf8).write(to: URL(fileURLWithPath: config.directory + "/blobs/\(String(repeating: "c", count: 64)).tar.zst"))

        let reopened = try AdapterCache(configuration: config)
        let m = await reopened.metrics()
        XCTAssertEqual(m.droppedAtStartup, 3)
        let listed = await reopened.list()
        XCTAssertEqual(listed.map(\.name), ["b"])
        XCTAssertEqual(listed.first?.pinned, true)
        XCTAssertEqual(f.temps(config), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: blob))
        // The dropped adapter is fetched again, intact.
        let lease = try await reopened.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.sha256, shaA)
    }

    func testLostIndexIsRebuiltFromManifests() async throws {
        let f = StoreFixture()
        try f.publish("a", "1")
        let config = try f.cacheConfig()
        do {
            let cache = try AdapterCache(configuration: config)
            try await cache.pull(AdapterReference("a"))
        }
        try FileManager.default.removeItem(atPath: config.directory + "/index.json")
        var offline = config
        offline.store = nil
        let reopened = try AdapterCache(configuration: offline)
        let lease = try await reopened.acquire(AdapterReference("a"))
        XCTAssertEqual(lease.version, "1")
        await XCTAssertAdapterErrorAsync({ try await reopened.acquire(AdapterReference("b")) }) {
            if case .noStore = $0 { return true }
            return false
        }
    }

    func testHandPackedTarPublishesAndServes() async throws {
        let f = StoreFixture()
        let peft = f.root + "/hand"
        try TestSupport.writePEFT(peft, modules: TestSupport.llamaModules(layers: 1, dtype: .bf16))
        try TestSupport.run(["tar", "--zstd", "-cf", f.root + "/hand.tar.zst", "-C", peft, "."])
        XCTAssertAdapterError(try StorePublisher.publish(artifact: f.root + "/hand.tar.zst", to: f.store)) {
            if case .publish(_, let r) = $0 { return r.contains("--name") }
            return false
        }
        try StorePublisher.publish(artifact: f.root + "/hand.tar.zst", to: f.store,
                                   options: .init(name: try AdapterName("hand"), version: try AdapterName("0.1"), baseModel: TestSupport.digestA))
        let cache = try AdapterCache(configuration: try f.cacheConfig { $0.baseModelDigest = TestSupport.digestA })
        let lease = try await cache.acquire(AdapterReference("hand@0.1"))
        XCTAssertEqual(lease.adapter.modules.count, 7)
        let info = await cache.info(try AdapterReference("hand"))
        XCTAssertEqual(info?.baseModel, TestSupport.digestA)
    }
}
