import AdapterCache
import Foundation
import Logging
import XCTest
@testable import EdgeRuntime

/// The daemon's fine-tuning job manager on the tiny Llama fixture (imported to a temp dir): jobs
/// are validated and persisted, train only when idle, yield to inference with a checkpoint, pass or
/// fail the eval gate, publish into a real adapter cache, and survive a restart.
/// A state directory, an adapter cache directory and the fake inference activity for one test.
final class FineTuningTestRig: @unchecked Sendable {
    /// Flags the test flips to play the inference scheduler.
    final class Activity: @unchecked Sendable {
        private let lock = NSLock()
        private var _busy = false
        private var _idleSeconds = 1e9
        var busy: Bool {
            get { lock.lock(); defer { lock.unlock() }; return _busy }
            set { lock.lock(); _busy = newValue; lock.unlock() }
        }
        var idleSeconds: Double {
            get { lock.lock(); defer { lock.unlock() }; return _idleSeconds }
            set { lock.lock(); _idleSeconds = newValue; lock.unlock() }
        }
    }

    nonisolated(unsafe) static var modelDirectory: String?
    static let lock = NSLock()

    /// tiny_llama.gguf imported once per test process.
    static func model() throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let d = modelDirectory { return d }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("edge-ftjobs-model-\(getpid())").path
        try? FileManager.default.removeItem(atPath: out)
        _ = try ModelImporter(source: ModelTestSupport.fixture("model/tiny_llama.gguf"), output: out).run()
        modelDirectory = out
        return out
    }

    let root: String
    var state: String { root + "/state" }
    var cacheDir: String { root + "/cache" }
    let activity = Activity()

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("edge-ftjobs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + "/cache", withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// `n` chat rows with short, regular answers the tiny model can learn quickly.
    func rows(_ n: Int, offset: Int = 0) -> String {
        let colours = ["red", "green", "blue", "black"]
        return (0..<n).map { i in
            let k = i + offset
            return #"{"messages": [{"role": "user", "content": "colour of item \#(k)?"}, {"role": "assistant", "content": "\#(colours[k % 4]) \#(colours[k % 4])"}]}"#
        }.joined(separator: "\n") + "\n"
    }

    func makeManager(cache: AdapterCache? = nil, margin: Double = 0.02, checkpointEvery: Int = 1) throws -> FineTuningJobManager {
        let dir = try FineTuningTestRig.model()
        var settings = FineTuningJobManager.Settings()
        settings.pollInterval = 0.05
        settings.checkpointEvery = checkpointEvery
        settings.gate = EvalGate(relativeMargin: margin)
        var policy = IdlePolicy()
        policy.idleAfter = 30
        policy.maxLoadPerCore = nil   // the shared build machine is busy; load is not what these tests check
        policy.maxCPUPressure = nil
        settings.policy = policy
        let activity = self.activity
        let env = FineTuningEnvironment(
            inferenceBusy: { activity.busy }, secondsSinceLastRequest: { activity.idleSeconds },
            publish: { path, name, version in
                guard let cache else { return }
                _ = try await cache.importArtifact(path: path, local: true, name: try AdapterName(name), version: try AdapterName(version))
            },
            baseDigest: EngineBackend.baseDigest(directory: dir),
            makeCurrent: { name, version in
                guard let cache else { return }
                try await cache.setCurrentVersion(name: try AdapterName(name), version: try AdapterName(version))
            })
        return try FineTuningJobManager(stateDirectory: state, modelDirectory: dir, environment: env, settings: settings)
    }

    func request(train: String, validation: String? = nil, hyper: FineTuningHyperparameters = .init(nEpochs: 2, batchSize: 2, learningRate: 2e-2, rank: 4, alpha: 8)) -> FineTuningJobRequest {
        FineTuningJobRequest(baseAdapter: nil, adapterName: "colours", trainingData: Array(train.utf8), validationData: validation.map { Array($0.utf8) },
                             hyperparameters: hyper, seed: 3, requestedByUID: getuid())
    }
}

final class FineTuningJobManagerTests: XCTestCase {
    var rig: FineTuningTestRig!
    var state: String { rig.state }
    var cacheDir: String { rig.cacheDir }

    override func setUpWithError() throws { rig = try FineTuningTestRig() }
    override func tearDown() { rig = nil }

    func rows(_ n: Int, offset: Int = 0) -> String { rig.rows(n, offset: offset) }
    func request(train: String, validation: String? = nil, hyper: FineTuningHyperparameters = .init(nEpochs: 2, batchSize: 2, learningRate: 2e-2, rank: 4, alpha: 8)) -> FineTuningJobRequest {
        rig.request(train: train, validation: validation, hyper: hyper)
    }
    func makeManager(_ activity: FineTuningTestRig.Activity, cache: AdapterCache? = nil, margin: Double = 0.02) throws -> FineTuningJobManager {
        try rig.makeManager(cache: cache, margin: margin)
    }

    func waitFor(_ m: FineTuningJobManager, _ id: String, timeout: Double = 240, _ done: @escaping (FineTuningJob, [FineTuningEvent]) -> Bool) async throws -> FineTuningJob {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let j = try await m.job(id: id)
            if done(j, try await m.events(jobID: id, after: nil, limit: 10_000)) { return j }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let j = try await m.job(id: id)
        XCTFail("timed out waiting on \(id) (status \(j.status))")
        return j
    }

    func finished(_ j: FineTuningJob, _: [FineTuningEvent]) -> Bool { ["succeeded", "failed", "cancelled"].contains(j.status) }

    func stepEvents(_ events: [FineTuningEvent]) -> [Int] {
        events.reversed().compactMap { $0.data?["train_loss"] != nil ? Int($0.data!["step"]!) : nil }
    }

    func testJobWaitsForIdleThenTrainsPromotesAndPublishes() async throws {
        let activity = rig.activity
        activity.idleSeconds = 1   // a request just arrived: the idle policy (30 s) must hold the job
        var cacheConfig = AdapterCacheConfiguration(directory: cacheDir)
        cacheConfig.baseModelDigest = EngineBackend.baseDigest(directory: try FineTuningTestRig.model())
        let cache = try AdapterCache(configuration: cacheConfig)
        let m = try makeManager(activity, cache: cache)
        await m.start()
        let train = rows(12)
        let job = try await m.createJob(request(train: train, validation: train))
        XCTAssertEqual(job.status, "queued")
        XCTAssertEqual(job.model, "base")
        let files = state + "/finetune/jobs/\(job.id)"
        for f in ["job.json", "train.jsonl", "validation.jsonl", "events.jsonl"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: files + "/" + f), f)
        }
        XCTAssertEqual(try String(contentsOfFile: files + "/train.jsonl", encoding: .utf8), train)
        try await Task.sleep(nanoseconds: 400_000_000)
        let waiting = try await m.job(id: job.id)
        XCTAssertEqual(waiting.status, "queued", "not idle yet: the job must not start")

        activity.idleSeconds = 1e6
        let done = try await waitFor(m, job.id, finished)
        XCTAssertEqual(done.status, "succeeded", "\(done.error?.message ?? "")")
        XCTAssertEqual(done.fineTunedModel, "colours@1")
        XCTAssertGreaterThan(done.trainedTokens ?? 0, 0)
        let events = try await m.events(jobID: job.id, after: nil, limit: 1000)
        let steps = stepEvents(events)
        let record = await m.record(id: job.id)!
        XCTAssertEqual(steps, Array(1...record.totalSteps), "one loss event per optimiser step, in order")
        XCTAssertLessThan(record.heldOutLoss!, record.baselineLoss! * 0.98)
        XCTAssertTrue(events.contains { $0.message.hasPrefix("promoted") })
        let listed = await cache.list()
        let published = try XCTUnwrap(listed.first { $0.name == "colours" })
        XCTAssertEqual(published.version, "1")
        XCTAssertTrue(published.local, "adapters trained here are never evicted")
        XCTAssertTrue(FileManager.default.fileExists(atPath: state + "/finetune/adapters/colours/1/adapter_model.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: files + "/checkpoint.safetensors"), "a finished job drops its checkpoint")

        // A second job on the same adapter is gated against version 1 and would publish version 2.
        let again = try await m.createJob(request(train: train, validation: train, hyper: .init(learningRate: 1e-6, steps: 1, rank: 4, alpha: 8)))
        let second = try await waitFor(m, again.id, finished)
        XCTAssertEqual(second.status, "failed")
        XCTAssertEqual(second.error?.code, "eval_gate_rejected", "a near-zero learning rate cannot beat version 1 by 2%")
        let r2 = await m.record(id: again.id)!
        XCTAssertEqual(r2.baselineLoss!, record.heldOutLoss!, accuracy: 1e-3 * record.heldOutLoss!, "the baseline is the previous version's held-out loss")
        XCTAssertTrue(FileManager.default.fileExists(atPath: state + "/finetune/jobs/\(again.id)/adapter/adapter_model.safetensors"), "a rejected adapter is kept")
        let listedJobs = try await m.listJobs(after: nil, limit: 10)
        XCTAssertEqual(listedJobs.map(\.id), [again.id, job.id], "newest first")
        await m.shutdown()
    }

    func testRejectedByTheGateKeepsTheNumbers() async throws {
        let activity = rig.activity
        let m = try makeManager(activity, margin: 0.99)
        await m.start()
        let job = try await m.createJob(request(train: rows(8), validation: rows(2, offset: 8), hyper: .init(batchSize: 2, steps: 2, rank: 2, alpha: 4)))
        let done = try await waitFor(m, job.id, finished)
        XCTAssertEqual(done.status, "failed")
        XCTAssertEqual(done.error?.code, "eval_gate_rejected")
        XCTAssertNil(done.fineTunedModel)
        let r = await m.record(id: job.id)!
        XCTAssertNotNil(r.baselineLoss)
        XCTAssertNotNil(r.heldOutLoss)
        XCTAssertTrue(done.error!.message.contains(String(format: "%.5f", r.heldOutLoss!)), done.error!.message)
        await m.shutdown()
    }

    func testBadRowsAreRefusedWithLineNumbersAndNothingIsStored() async throws {
        let m = try makeManager(rig.activity)
        var data = rows(6)
        data += "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]\n"   // line 7: invalid JSON
        data += "{\"messages\": []}\n"                                          // line 8: empty
        do {
            _ = try await m.createJob(request(train: data))
            XCTFail("bad rows must be refused")
        } catch let e as FineTuningError {
            XCTAssertEqual(e.status, 400)
            XCTAssertTrue(e.message.contains("line 7"), e.message)
            XCTAssertTrue(e.message.contains("line 8"), e.message)
            XCTAssertEqual(e.param, "training_data")
        }
        do {
            _ = try await m.createJob(request(train: rows(2), validation: rows(1)))
            XCTFail("two rows are too few")
        } catch let e as FineTuningError {
            XCTAssertEqual(e.status, 400)
        }
        do {
            _ = try await m.createJob(request(train: rows(8), hyper: .init(rank: 0)))
            XCTFail("rank 0 is invalid")
        } catch let e as FineTuningError {
            XCTAssertEqual(e.param, "hyperparameters.rank")
        }
        let jobs = try await m.listJobs(after: nil, limit: 10)
        XCTAssertTrue(jobs.isEmpty)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: state + "/finetune/jobs"), [])
        do { _ = try await m.job(id: "ftjob-nope"); XCTFail() } catch let e as FineTuningError { XCTAssertEqual(e.status, 404) }
    }

    func testCancelQueuedAndFinishedJobs() async throws {
        let activity = rig.activity
        activity.idleSeconds = 0
        let m = try makeManager(activity)
        await m.start()
        let job = try await m.createJob(request(train: rows(8)))
        let cancelled = try await m.cancel(jobID: job.id)
        XCTAssertEqual(cancelled.status, "cancelled")
        XCTAssertNotNil(cancelled.finishedAt)
        do { _ = try await m.cancel(jobID: job.id); XCTFail() } catch let e as FineTuningError { XCTAssertEqual(e.status, 409) }
        activity.idleSeconds = 1e6
        try await Task.sleep(nanoseconds: 300_000_000)
        let after = try await m.job(id: job.id)
        XCTAssertEqual(after.status, "cancelled", "a cancelled job never starts")
        // Re-opened from disk, it stays cancelled.
        await m.shutdown()
        let reopened = try makeManager(activity)
        let again = try await reopened.job(id: job.id)
        XCTAssertEqual(again.status, "cancelled")
    }

    func testInferencePausesTrainingAndARestartResumesFromTheCheckpoint() async throws {
        let activity = rig.activity
        let first = try makeManager(activity)
        await first.start()
        // 256 steps of about a millisecond each: the pause below lands mid-job even when this test's
        // 50 ms polls run late (with 32 steps a full-suite run saw step 3 only after the job had ended).
        let job = try await first.createJob(request(train: rows(16), validation: rows(4, offset: 16),
                                                    hyper: .init(nEpochs: 16, batchSize: 1, learningRate: 1e-2, rank: 2, alpha: 4)))
        _ = try await waitFor(first, job.id) { _, events in self.stepEvents(events).count >= 3 }
        activity.busy = true   // a request arrives: training yields at the next step, with a checkpoint
        let paused = try await waitFor(first, job.id) { j, _ in j.status == "queued" }
        XCTAssertEqual(paused.status, "queued")
        let r = await first.record(id: job.id)!
        XCTAssertGreaterThanOrEqual(r.completedSteps, 3)
        XCTAssertLessThan(r.completedSteps, r.totalSteps)
        XCTAssertTrue(FileManager.default.fileExists(atPath: state + "/finetune/jobs/\(job.id)/checkpoint.safetensors"))
        try await Task.sleep(nanoseconds: 300_000_000)
        let stillPaused = await first.record(id: job.id)!
        XCTAssertEqual(stillPaused.completedSteps, r.completedSteps, "no training while inference is busy")
        await first.shutdown()

        // As a SIGKILLed daemon leaves it: the record still says running.
        let files = FineTuningJobFiles(directory: state + "/finetune/jobs/\(job.id)")
        var killed = try files.loadRecord()
        killed.job.status = "running"
        try files.saveRecord(killed)

        // A new manager on the same state directory (the daemon restarted) continues the job.
        activity.busy = false
        let second = try makeManager(activity)
        await second.start()
        let done = try await waitFor(second, job.id, finished)
        XCTAssertEqual(done.status == "succeeded" || done.error?.code == "eval_gate_rejected", true, "\(done.error?.message ?? "")")
        let events = try await second.events(jobID: job.id, after: nil, limit: 10_000)
        let steps = stepEvents(events)
        XCTAssertEqual(steps, Array(1...r.totalSteps), "steps continue from the checkpoint, none repeated or skipped")
        XCTAssertTrue(events.contains { $0.message.contains("resumed from the checkpoint at step \(r.completedSteps)/") })
        XCTAssertTrue(events.contains { $0.message.contains("the daemon restarted during training") })
        await second.shutdown()
    }
}
