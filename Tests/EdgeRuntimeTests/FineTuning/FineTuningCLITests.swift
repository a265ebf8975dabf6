import EdgeRuntime
import Foundation
import XCTest

/// `edgectl finetune create|list|status|logs -f|cancel|run-pending` through the socket API, against a
/// real job manager on the tiny model (the in-process server, a scripted inference backend).
final class FineTuningCLITests: XCTestCase {
    func testCreateRunPendingFollowLogsListStatusAndCancel() async throws {
        let helper = try FineTuningTestRig()
        helper.activity.idleSeconds = 0   // never idle on its own: only run-pending starts the job
        let manager = try helper.makeManager()
        await manager.start()
        let server = try ServingTestServer(backend: ScriptedBackend(), fineTuning: manager)
        defer { Task { await server.stop(); await manager.shutdown() } }
        let dir = helper.root
        try helper.rows(8).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try helper.rows(3, offset: 8).write(toFile: dir + "/held.jsonl", atomically: true, encoding: .utf8)
        let sock = server.socketPath

        let created = try await offPool { try DaemonEdgectlTests.run(["finetune", "create", "--socket", sock, "--adapter", "colours", "--data", dir + "/train.jsonl",
                                                                      "--validation", dir + "/held.jsonl", "--rank", "2", "--alpha", "4", "--steps", "3", "--json"]) }
        XCTAssertEqual(created.status, 0, created.err)
        let job = try JSONDecoder().decode(FineTuningJob.self, from: Data(created.out.utf8))
        XCTAssertEqual(job.status, "queued")
        XCTAssertEqual(job.hyperparameters.rank, 2)
        try await Task.sleep(nanoseconds: 300_000_000)
        let waiting = try await manager.job(id: job.id)
        XCTAssertEqual(waiting.status, "queued")

        let pending = try await offPool { try DaemonEdgectlTests.run(["finetune", "run-pending", "--socket", sock]) }
        XCTAssertEqual(pending.status, 0, pending.err)
        XCTAssertTrue(pending.out.contains(job.id), pending.out)
        let logs = try await offPool { try DaemonEdgectlTests.run(["finetune", "logs", job.id, "-f", "--interval", "0.2", "--socket", sock]) }
        XCTAssertTrue(logs.out.contains("step 1/3"), logs.out)
        XCTAssertTrue(logs.out.contains("step 3/3"), logs.out)
        XCTAssertTrue(logs.out.contains("held-out loss after training"), logs.out)
        let final = try await manager.job(id: job.id)
        XCTAssertEqual(logs.status, final.status == "succeeded" ? 0 : 2, logs.err)

        let list = try await offPool { try DaemonEdgectlTests.run(["finetune", "list", "--socket", sock]) }
        XCTAssertEqual(list.status, 0, list.err)
        XCTAssertTrue(list.out.contains(job.id) && list.out.contains(final.status), list.out)
        let status = try await offPool { try DaemonEdgectlTests.run(["finetune", "status", job.id, "--socket", sock]) }
        XCTAssertEqual(status.status, 0, status.err)
        XCTAssertTrue(status.out.contains("step 3/3"), status.out)
        let cancel = try await offPool { try DaemonEdgectlTests.run(["finetune", "cancel", job.id, "--socket", sock]) }
        XCTAssertEqual(cancel.status, 1, "a finished job cannot be cancelled")
        XCTAssertTrue(cancel.err.contains("409"), cancel.err)

        try "{\"messages\": 5}\n".write(toFile: dir + "/bad.jsonl", atomically: true, encoding: .utf8)
        let bad = try await offPool { try DaemonEdgectlTests.run(["finetune", "create", "--socket", sock, "--adapter", "x", "--data", dir + "/bad.jsonl"]) }
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.err.contains("400") && bad.err.contains("line 1"), bad.err)
    }
}
