import AdapterCache
@testable import EdgeRuntime
import Foundation
import XCTest

/// `edgectl adapter rollback NAME` through the socket API against a real job manager and adapter
/// cache on the tiny model: two promoted versions, rollback to the first (the cache's bare-NAME
/// resolution follows, the second stays on disk and addressable), then a clear 409 when there is
/// nothing older, a 404 for an adapter never trained here, and a restart keeps the choice.
final class AdapterRollbackCLITests: XCTestCase {
    func waitFinished(_ m: FineTuningJobManager, _ id: String) async throws -> FineTuningJob {
        let deadline = Date().addingTimeInterval(240)
        while Date() < deadline {
            let j = try await m.job(id: id)
            if ["succeeded", "failed", "cancelled"].contains(j.status) { return j }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        throw CancellationError()
    }

    func testRollbackMakesThePreviousVersionCurrentAndKeepsTheNewerOne() async throws {
        let rig = try FineTuningTestRig()
        let model = try FineTuningTestRig.model()
        var cacheConfig = AdapterCacheConfiguration(directory: rig.cacheDir)
        cacheConfig.baseModelDigest = EngineBackend.baseDigest(directory: model)
        let cache = try AdapterCache(configuration: cacheConfig)
        // margin -1: every finite loss passes the gate (this test is about versions, not learning).
        let manager = try rig.makeManager(cache: cache, margin: -1)
        await manager.start()
        let server = try ServingTestServer(backend: ScriptedBackend(), fineTuning: manager)
        defer { Task { await server.stop(); await manager.shutdown() } }
        let sock = server.socketPath
        let name = try AdapterName("colours")

        // Before anything was trained: 404 with a reason, exit status 1.
        let none = try await offPool { try DaemonEdgectlTests.run(["adapter", "rollback", "colours", "--socket", sock]) }
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.err.contains("404") && none.err.contains("no versions trained on this device"), none.err)

        let train = rig.rows(6)
        for expected in ["colours@1", "colours@2"] {
            let job = try await manager.createJob(rig.request(train: train, validation: train,
                                                              hyper: .init(batchSize: 2, learningRate: 1e-2, steps: 2, rank: 2, alpha: 4)))
            let done = try await waitFinished(manager, job.id)
            XCTAssertEqual(done.fineTunedModel, expected, done.error?.message ?? "")
        }
        let newest = await cache.info(AdapterReference(name: name))
        XCTAssertEqual(newest?.version, "2")

        let rolled = try await offPool { try DaemonEdgectlTests.run(["adapter", "rollback", "colours", "--json", "--socket", sock]) }
        XCTAssertEqual(rolled.status, 0, rolled.err)
        let result = try JSONDecoder().decode(AdapterRollback.self, from: Data(rolled.out.utf8))
        XCTAssertEqual(result, AdapterRollback(name: "colours", version: "1", rolledBackFrom: "2", versions: ["1", "2"]))
        let current = await cache.info(AdapterReference(name: name))
        XCTAssertEqual(current?.version, "1", "a bare NAME now resolves to the previous version")
        let kept = await cache.info(AdapterReference(name: name, version: try AdapterName("2")))
        XCTAssertNotNil(kept, "the rolled-back-from version stays cached")
        XCTAssertTrue(FileManager.default.fileExists(atPath: rig.state + "/finetune/adapters/colours/2/adapter_model.safetensors"),
                      "the rolled-back-from version stays on disk")

        let again = try await offPool { try DaemonEdgectlTests.run(["adapter", "rollback", "colours", "--socket", sock]) }
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.err.contains("409") && again.err.contains("no previous version"), again.err)

        let versioned = try await offPool { try DaemonEdgectlTests.run(["adapter", "rollback", "colours@2", "--socket", sock]) }
        XCTAssertEqual(versioned.status, 64, "NAME@VERSION is a usage error")

        // The next job is gated against the current version (1) and becomes version 3, current.
        let third = try await manager.createJob(rig.request(train: train, validation: train,
                                                            hyper: .init(batchSize: 2, learningRate: 1e-2, steps: 1, rank: 2, alpha: 4)))
        let done3 = try await waitFinished(manager, third.id)
        XCTAssertEqual(done3.fineTunedModel, "colours@3", done3.error?.message ?? "")
        let after = await cache.info(AdapterReference(name: name))
        XCTAssertEqual(after?.version, "3")
        let text = try await offPool { try DaemonEdgectlTests.run(["adapter", "rollback", "colours", "--socket", sock]) }
        XCTAssertEqual(text.status, 0, text.err)
        XCTAssertTrue(text.out.contains("version 2 is current (rolled back from 3"), text.out)
    }

    func testTheCacheKeepsTheRolledBackVersionAcrossARestart() async throws {
        let rig = try FineTuningTestRig()
        let model = try FineTuningTestRig.model()
        var cacheConfig = AdapterCacheConfiguration(directory: rig.cacheDir)
        cacheConfig.baseModelDigest = EngineBackend.baseDigest(directory: model)
        let name = try AdapterName("colours")
        do {
            let cache = try AdapterCache(configuration: cacheConfig)
            let manager = try rig.makeManager(cache: cache, margin: -1)
            await manager.start()
            for _ in 0..<2 {
                let job = try await manager.createJob(rig.request(train: rig.rows(6), validation: rig.rows(6),
                                                                  hyper: .init(batchSize: 3, learningRate: 1e-2, steps: 1, rank: 2, alpha: 4)))
                _ = try await waitFinished(manager, job.id)
            }
            let r = try await manager.rollback(adapter: "colours")
            XCTAssertEqual(r.version, "1")
            await manager.shutdown()
        }
        // A new cache instance (daemon restart) reads the choice from its index. The first instance's
        // lock goes when its last reference does, which a finishing job task may still hold for a moment
        // (a real restart is a new process), so wait for it rather than race it.
        let reopened = try await Self.openWhenUnlocked(cacheConfig)
        let current = await reopened.info(AdapterReference(name: name))
        XCTAssertEqual(current?.version, "1")
        let manager = try rig.makeManager(cache: reopened, margin: -1)
        let err = await { () async -> Error? in
            do { _ = try await manager.rollback(adapter: "colours"); return nil } catch { return error }
        }()
        XCTAssertEqual(err as? FineTuningError, .noPreviousVersion(name: "colours", current: 1), "the manager's pointer survived too")
    }

    private static func openWhenUnlocked(_ config: AdapterCacheConfiguration) async throws -> AdapterCache {
        let deadline = Date().addingTimeInterval(10)
        while true {
            do { return try AdapterCache(configuration: config) } catch AdapterError.cacheLocked(_) where Date() < deadline {
                try await Task.sleep(nanoseconds: 20_000_000)
            }
        }
    }
}
