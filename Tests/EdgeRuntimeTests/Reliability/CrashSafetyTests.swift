import AdapterCache
import Foundation
import XCTest
@testable import EdgeRuntime

/// SIGKILL at random points, then restart and check the state the next start-up sees: the real
/// `edge-runtimed` killed during adapter pulls, disk-cache eviction, fine-tune checkpointing and
/// adapter promotion, and `edgectl model import` killed mid-write. `EDGE_CRASH_RUNS` sets the runs
/// per scenario (default 6; `scripts/crash-test` runs the long form). Each scenario prints
/// `crash-safety NAME: runs=N failures=F` and fails if any run found a problem.
final class CrashSafetyTests: XCTestCase {
    var rng = SystemRandomNumberGenerator()

    /// Starts `body` on a thread (a request the kill will cut off) and returns at once.
    func background(_ body: @escaping @Sendable () -> Void) { Thread.detachNewThread(body) }

    func milliseconds(_ ms: Double) { usleep(useconds_t(max(0, ms) * 1000)) }

    /// The store's sha256 of every published name@version.
    func storeDigests(_ rig: ReliabilityRig, _ names: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for n in names {
            let data = try Data(contentsOf: URL(fileURLWithPath: rig.store + "/\(n)/index.json"))
            let index = try JSONDecoder().decode(StoreIndex.self, from: data)
            for v in index.versions { out["\(n)@\(v.version)"] = v.sha256 }
        }
        return out
    }

    /// After a restart: the cache directory is consistent, every listed adapter is the store's
    /// bytes, and a request for `model` works (from the cache or by fetching again) and leaves the
    /// right digest cached.
    func checkAdapters(_ rig: ReliabilityRig, digests: [String: String], model: String, budget: Int64? = nil) throws -> [String] {
        var problems = rig.cacheProblems(budget: budget)
        for (key, a) in try rig.adapters() where digests[key] != a.sha {
            problems.append("\(key) is listed with sha256 \(a.sha), the store has \(digests[key] ?? "nothing")")
        }
        let r = try rig.complete(model: model)
        if r.status != 200 { problems.append("completion with \(model): \(r.status) \(r.body)") }
        if let a = try rig.adapters()[model], a.sha != digests[model] { problems.append("\(model) served with sha256 \(a.sha)") }
        return problems
    }

    func timedPull(_ rig: ReliabilityRig, _ model: String) throws -> Double {
        let t0 = Date()
        let r = try rig.request("POST", "/v1/adapters/pull", #"{"name": "\#(model)", "stream": false}"#)
        guard r.status == 200 else { throw RigError("pull \(model): \(r.status) \(r.body)") }
        return Date().timeIntervalSince(t0) * 1000
    }

    func testKillDuringAdapterPull() throws {
        let rig = try ReliabilityRig()
        let names = ["pull-a", "pull-b", "pull-c"]
        for (i, n) in names.enumerated() { try rig.publish(name: n, version: "1", rank: 32, seed: UInt64(10 + i)) }
        let digests = try storeDigests(rig, names)
        try rig.start()
        let pullMS = try timedPull(rig, "pull-a@1")
        let tally = ScenarioTally("adapter-pull")
        for run in 0..<ReliabilityRig.runs {
            tally.run(run) {
                let model = names.randomElement(using: &rng)! + "@1"
                _ = try rig.request("DELETE", "/v1/adapters/\(model.split(separator: "@")[0])")
                let socket = rig.socket
                background { _ = try? DaemonClient(socketPath: socket).request("POST", "/v1/adapters/pull", body: Array(#"{"name": "\#(model)", "stream": false}"#.utf8)) }
                milliseconds(Double.random(in: 0...(pullMS * 1.5 + 5), using: &rng))
                rig.kill()
                if !((try? FileManager.default.contentsOfDirectory(atPath: rig.cache + "/tmp")) ?? []).isEmpty { tally.note("killed_mid_download") }
                try rig.start()
                return try checkAdapters(rig, digests: digests, model: model)
            }
        }
        tally.report()
    }

    func testKillDuringDiskCacheEviction() throws {
        let rig = try ReliabilityRig()
        let names = ["evict-a", "evict-b", "evict-c", "evict-d"]
        var sizes: [Int64] = []
        for (i, n) in names.enumerated() { sizes.append(try rig.publish(name: n, version: "1", rank: 32, seed: UInt64(20 + i)).size) }
        let digests = try storeDigests(rig, names)
        // Room for two: every further pull evicts.
        let budget = sizes.max()! * 2 + sizes.max()! / 2
        rig.adapterKeys = ["disk_budget_bytes = \(budget)"]
        try rig.start()
        let pullMS = try timedPull(rig, "evict-a@1")
        let tally = ScenarioTally("disk-cache-eviction")
        for run in 0..<ReliabilityRig.runs {
            tally.run(run) {
                let cached = Set(try rig.adapters().keys)
                let model = (names.map { $0 + "@1" }.filter { !cached.contains($0) }.randomElement(using: &rng))!
                let socket = rig.socket
                background { _ = try? DaemonClient(socketPath: socket).request("POST", "/v1/adapters/pull", body: Array(#"{"name": "\#(model)", "stream": false}"#.utf8)) }
                milliseconds(Double.random(in: 0...(pullMS * 1.5 + 5), using: &rng))
                rig.kill()
                try rig.start()
                var problems = try checkAdapters(rig, digests: digests, model: names.randomElement(using: &rng)! + "@1", budget: budget)
                if try rig.adapters().count > 2 { problems.append("more than two adapters cached under a two-adapter budget") }
                return problems
            }
        }
        tally.report()
    }

    // MARK: - Fine-tuning

    func jobs(_ rig: ReliabilityRig) -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        let dir = rig.state + "/finetune/jobs"
        for id in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            if let d = FileManager.default.contents(atPath: dir + "/\(id)/job.json"), let o = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
                out[id] = o
            }
        }
        return out
    }

    func status(_ record: [String: Any]) -> String { (record["job"] as? [String: Any])?["status"] as? String ?? "?" }

    func eventLines(_ rig: ReliabilityRig, _ id: String) -> [String] {
        let d = FileManager.default.contents(atPath: rig.state + "/finetune/jobs/\(id)/events.jsonl") ?? Data()
        return String(decoding: d, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// The first integer after `marker` in `line`.
    func number(after marker: String, in line: String) -> Int? {
        guard let r = line.range(of: marker) else { return nil }
        return Int(line[r.upperBound...].prefix { $0.isNumber })
    }

    func createJob(_ rig: ReliabilityRig, suffix: String = "colours", rows: Int, offset: Int, epochs: Int, continuing: Bool) throws -> String {
        let ft = try FineTuningTestRig()
        let train = ft.rows(rows, offset: offset), held = ft.rows(4, offset: offset + rows)
        func quoted(_ s: String) -> String { String(decoding: try! JSONSerialization.data(withJSONObject: [s]), as: UTF8.self).dropFirst().dropLast().description }
        let body = """
            {"model": "\(continuing ? suffix : "base")", "suffix": "\(suffix)", "training_data": \(quoted(train)), "validation_data": \(quoted(held)),
             "hyperparameters": {"rank": 2, "alpha": 4, "batch_size": 1, "n_epochs": \(epochs), "learning_rate": 0.02}, "seed": 5}
            """
        let r = try rig.request("POST", "/v1/fine_tuning/jobs", body)
        guard r.status == 200, let o = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any], let id = o["id"] as? String else {
            throw RigError("create job: \(r.status) \(r.body)")
        }
        return id
    }

    func waitUntil(_ timeout: Double, _ done: () throws -> Bool) rethrows -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if try done() { return true }
            usleep(5_000)
        }
        return false
    }

    func testKillDuringFineTuneCheckpointing() throws {
        let rig = try ReliabilityRig()
        try rig.start()
        let tally = ScenarioTally("finetune-checkpoint")
        var job: String?
        for run in 0..<ReliabilityRig.runs {
            tally.run(run) {
                if job == nil || ["succeeded", "failed", "cancelled"].contains(jobs(rig)[job!].map(status) ?? "?") {
                    job = try createJob(rig, suffix: "ckpt\(run)", rows: 40, offset: run, epochs: 8, continuing: false)
                }
                let id = job!
                _ = try rig.request("POST", "/v1/fine_tuning/run_pending")
                milliseconds(Double.random(in: 100...2500, using: &rng))
                rig.kill()
                let checkpoint = rig.state + "/finetune/jobs/\(id)/checkpoint.safetensors"
                var saved: Int?
                if FileManager.default.fileExists(atPath: checkpoint) {
                    let file = try SafetensorsFile(path: checkpoint)  // torn → throws → the run fails
                    saved = file.metadata["edge.step"].flatMap(Int.init)
                    if saved == nil { return ["checkpoint without edge.step"] }
                }
                let resumedBefore = eventLines(rig, id).filter { $0.contains("resumed from the checkpoint") }.count
                // Counted before the restart: finishing an interrupted promotion starts at once.
                let promotingBefore = eventLines(rig, id).filter { $0.contains("restarted while promoting") }.count
                try rig.start()
                _ = try rig.request("POST", "/v1/fine_tuning/run_pending")
                var problems: [String] = []
                let finishedBefore = ["succeeded", "failed", "cancelled"].contains(jobs(rig)[id].map(status) ?? "?")
                if saved != nil { tally.note("killed_after_a_checkpoint") }
                if let saved, !finishedBefore {
                    let resumed = waitUntil(60) { eventLines(rig, id).filter { $0.contains("resumed from the checkpoint") }.count > resumedBefore }
                        || eventLines(rig, id).filter { $0.contains("restarted while promoting") }.count > promotingBefore
                    guard resumed else {
                        let tail = eventLines(rig, id).suffix(4).joined(separator: " | ")
                        let log = rig.daemon?.stderr.split(separator: "\n").filter { $0.contains("fine-tun") }.suffix(4).joined(separator: " | ") ?? ""
                        return ["no resume event after the restart (checkpoint at step \(saved)); status \(jobs(rig)[id].map(status) ?? "?"); events: \(tail); log: \(log)"]
                    }
                    if eventLines(rig, id).filter({ $0.contains("restarted while promoting") }).count > promotingBefore {
                        // Killed after the last checkpoint, mid-promotion: the restart only finishes publishing.
                        tally.note("resumed_into_promotion")
                        return []
                    }
                    let lines = eventLines(rig, id)
                    let i = lines.lastIndex { $0.contains("resumed from the checkpoint") }!
                    let step = number(after: "resumed from the checkpoint at step ", in: lines[i])
                    if step == nil || step! < saved { problems.append("resumed at step \(step ?? -1), the checkpoint holds \(saved)") }
                    // The first step trained after the resume follows the checkpoint: no restart from 0.
                    if waitUntil(30, { eventLines(rig, id)[(i + 1)...].contains { $0.contains("training loss") } || ["succeeded", "failed"].contains(jobs(rig)[id].map(status) ?? "") }),
                       let next = eventLines(rig, id)[(i + 1)...].first(where: { $0.contains("training loss") }),
                       let n = number(after: "\"message\":\"step ", in: next), n != (step ?? -1) + 1 {
                        problems.append("after resuming at step \(step ?? -1) the next step was \(n)")
                    }
                }
                if let r = jobs(rig)[id], status(r) == "failed", ((r["job"] as? [String: Any])?["error"] as? [String: Any])?["code"] as? String != "eval_gate_rejected" {
                    problems.append("the job failed: \(r["job"] ?? "")")
                }
                return problems
            }
        }
        tally.report()
    }

    func testKillDuringAdapterPromotion() throws {
        let rig = try ReliabilityRig()
        try rig.start()
        let tally = ScenarioTally("adapter-promotion")
        for run in 0..<ReliabilityRig.runs {
            tally.run(run) {
                let before = try rig.adapters().filter { $0.key.hasPrefix("colours@") }
                let id = try createJob(rig, rows: 8, offset: run * 3, epochs: 2, continuing: !before.isEmpty)
                let jobDir = rig.state + "/finetune/jobs/\(id)"
                _ = try rig.request("POST", "/v1/fine_tuning/run_pending")
                // The trained adapter directory appears right before the gate's promotion starts.
                guard waitUntil(120, { FileManager.default.fileExists(atPath: jobDir + "/adapter") }) else { return ["the job never finished training"] }
                milliseconds(Double.random(in: 0...60, using: &rng))
                rig.kill()
                try rig.start()
                var problems: [String] = []
                // Right after the restart "colours" is the old or the new version, whole.
                let now = try rig.adapters().filter { $0.key.hasPrefix("colours@") }
                for (k, v) in before where now[k]?.sha != v.sha { problems.append("\(k) changed or vanished: \(now[k]?.sha ?? "gone")") }
                if now.count > before.count + 1 { problems.append("\(now.count - before.count) new versions after one job") }
                if !now.isEmpty, try rig.complete(model: "colours").status != 200 { problems.append("colours is not servable after the restart") }
                _ = try rig.request("POST", "/v1/fine_tuning/run_pending")
                guard waitUntil(180, { ["succeeded", "failed", "cancelled"].contains(jobs(rig)[id].map(status) ?? "") }) else { return problems + ["the job did not finish after the restart"] }
                if eventLines(rig, id).contains(where: { $0.contains("restarted while promoting") }) { tally.note("killed_mid_promotion") }
                if now.count > before.count { tally.note("new_version_visible_at_restart") }
                return problems + promotionProblems(rig)
            }
        }
        tally.report()
    }

    /// Versions 1…k on disk, k succeeded jobs each owning one of them, the cache serving each
    /// version with exactly the bytes its job packed, and every version directory byte-equal to
    /// its job's trained adapter.
    func promotionProblems(_ rig: ReliabilityRig) -> [String] {
        var problems: [String] = []
        let fm = FileManager.default
        let dir = rig.state + "/finetune/adapters/colours"
        // Version directories, plus the `current` pointer file promotion and rollback keep.
        let entries = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0 != "current" }
        let versions = entries.compactMap(Int.init).sorted()
        if entries.count != versions.count { problems.append("stray entries in \(dir): \(entries)") }
        if let pointer = try? String(contentsOfFile: dir + "/current", encoding: .utf8),
           !(Int(pointer.trimmingCharacters(in: .whitespacesAndNewlines)).map(versions.contains) ?? false) {
            problems.append("the current pointer \(pointer.debugDescription) names no version in \(dir): \(versions)")
        }
        if versions != Array(1..<(versions.count + 1)) { problems.append("versions on disk \(versions)") }
        let all = jobs(rig)
        var owners: [Int: String] = [:]
        for (id, r) in all {
            let job = r["job"] as? [String: Any] ?? [:]
            let st = job["status"] as? String ?? "?"
            if st == "failed", (job["error"] as? [String: Any])?["code"] as? String != "eval_gate_rejected" {
                problems.append("job \(id) failed: \(job["error"] ?? "")")
            }
            guard st == "succeeded" else { continue }
            guard let model = job["fine_tuned_model"] as? String, let v = Int(model.split(separator: "@").last ?? "") else {
                problems.append("succeeded job \(id) names no version"); continue
            }
            if let other = owners[v] { problems.append("version \(v) claimed by \(other) and \(id)") }
            owners[v] = id
        }
        if Set(owners.keys) != Set(versions) { problems.append("succeeded jobs own versions \(owners.keys.sorted()), disk has \(versions)") }
        let cached = (try? rig.adapters()) ?? [:]
        for (v, id) in owners {
            let jobDir = rig.state + "/finetune/jobs/\(id)"
            let packed = ReliabilityRig.sha(jobDir + "/adapter.tar.zst")
            if cached["colours@\(v)"]?.sha != packed { problems.append("colours@\(v) cached as \(cached["colours@\(v)"]?.sha ?? "nothing"), job \(id) packed \(packed ?? "nothing")") }
            for f in ["adapter_model.safetensors", "adapter_config.json"] where ReliabilityRig.sha("\(dir)/\(v)/\(f)") != ReliabilityRig.sha("\(jobDir)/adapter/\(f)") {
                problems.append("\(dir)/\(v)/\(f) differs from job \(id)'s")
            }
        }
        return problems
    }

    // MARK: - Model import

    func testKillDuringModelImport() throws {
        let root = try ServingTestServer.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let source = ModelTestSupport.fixture("model/tiny_llama.gguf")
        let reference = try FineTuningTestRig.model()
        let digest = try ModelDigest.of(path: reference)
        let out = root + "/models/tiny"
        func runImport(force: Bool) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: DaemonEdgectlTests.edgectl)
            p.arguments = ["model", "import", source, "--out", out] + (force ? ["--force"] : [])
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            return p
        }
        let t0 = Date()
        let first = try runImport(force: false)
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0)
        let importMS = Date().timeIntervalSince(t0) * 1000
        func complete() -> Bool { (try? NF4Model(directory: out)) != nil && (try? ModelDigest.of(path: out)) == digest }
        let tally = ScenarioTally("model-import")
        for run in 0..<ReliabilityRig.runs {
            tally.run(run) {
                // Even runs import afresh, odd runs replace a complete model with --force.
                let force = run % 2 == 1
                if !force { try? FileManager.default.removeItem(atPath: out) }
                if force && !complete() {
                    try? FileManager.default.removeItem(atPath: out)
                    let clean = try runImport(force: false)
                    clean.waitUntilExit()
                    guard complete() else { return ["a clean import did not produce a complete model"] }
                }
                let p = try runImport(force: force)
                milliseconds(Double.random(in: 0...(importMS * 1.2), using: &rng))
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                var problems: [String] = []
                if FileManager.default.fileExists(atPath: out) && !complete() { problems.append("a killed import left an incomplete \(out)") }
                let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/models")) ?? []).filter { $0 != "tiny" }
                if !leftovers.isEmpty { tally.note("left_temporaries") }
                if leftovers.contains(where: { $0.hasSuffix(".old") }) && !FileManager.default.fileExists(atPath: out) { tally.note("old_model_aside") }
                // What the next import (or the daemon's start) finds: leftovers gone, a replaced model back.
                ModelImporter.recoverInterrupted(output: out)
                let left = ((try? FileManager.default.contentsOfDirectory(atPath: root + "/models")) ?? []).filter { $0 != "tiny" }
                if !left.isEmpty { problems.append("leftovers after recovery: \(left)") }
                if force && !complete() { problems.append("a killed --force import lost the previous model") }
                return problems
            }
        }
        tally.report()
    }
}
