import EdgeRuntime
import Foundation
import XCTest

/// The real `edge-runtimed` on the tiny model: a job created with `edgectl finetune create --now`
/// trains inside the daemon; SIGKILL mid-job, restart, and the job resumes from its checkpoint.
final class FineTuningDaemonTests: XCTestCase {
    func startDaemon(_ dir: String, model: String) throws -> DaemonProcess {
        let config = dir + "/config.toml"
        try """
            [server]
            socket_group = ""
            [adapters]
            cache_dir = "\(dir)/cache"
            [finetune]
            idle_after = 3600
            max_load = 1000
            on_ac_power = false
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let sock = dir + "/edge.sock"
        let daemon = try DaemonProcess(DaemonProcessTests.binary, ["--config", config, "--socket", sock, "--model", model],
                                       environment: ["EDGE_STATE_DIR": dir + "/state"])
        let client = DaemonClient(socketPath: sock)
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            if let r = try? client.request("GET", "/healthz"), r.status == 200 { return daemon }
            usleep(50_000)
        }
        daemon.kill()
        throw DaemonDidNotStart("the daemon did not come up: \(daemon.stderr)")
    }

    struct DaemonDidNotStart: Error, CustomStringConvertible { let description: String; init(_ d: String) { description = d } }

    func events(_ sock: String, _ id: String) throws -> [FineTuningEvent] {
        let r = try DaemonClient(socketPath: sock).request("GET", "/v1/fine_tuning/jobs/\(id)/events?limit=100")
        struct Page: Decodable { var data: [FineTuningEvent] }
        return try JSONDecoder().decode(Page.self, from: r.body).data
    }

    func testKilledDaemonResumesTheJobFromItsCheckpoint() async throws {
        let rig = try FineTuningTestRig()
        let model = try FineTuningTestRig.model()
        let dir = rig.root
        try rig.rows(40).write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        try rig.rows(4, offset: 40).write(toFile: dir + "/held.jsonl", atomically: true, encoding: .utf8)
        let sock = dir + "/edge.sock"
        var daemon = try startDaemon(dir, model: model)
        defer { daemon.kill() }  // the restarted one too: defer reads the var at exit
        let created = try await offPool { try DaemonEdgectlTests.run(["finetune", "create", "--socket", sock, "--adapter", "colours", "--data", dir + "/train.jsonl",
                                                                      "--validation", dir + "/held.jsonl", "--rank", "2", "--alpha", "4", "--batch-size", "1",
                                                                      "--epochs", "8", "--now", "--json"]) }
        XCTAssertEqual(created.status, 0, created.err)
        let job = try JSONDecoder().decode(FineTuningJob.self, from: Data(created.out.utf8))
        // Kill once a checkpoint (every 10 steps) has been written and training went on past it.
        let end = Date().addingTimeInterval(120)
        var lastStep = 0
        while Date() < end {
            lastStep = try events(sock, job.id).compactMap { $0.data?["train_loss"] != nil ? Int($0.data!["step"]!) : nil }.max() ?? 0
            if lastStep >= 12 { break }
            usleep(20_000)
        }
        XCTAssertGreaterThanOrEqual(lastStep, 12, daemon.stderr)
        daemon.kill()
        _ = daemon.waitForExit(timeout: 10)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/state/finetune/jobs/\(job.id)/checkpoint.safetensors"))

        daemon = try startDaemon(dir, model: model)
        let pending = try await offPool { try DaemonEdgectlTests.run(["finetune", "run-pending", "--socket", sock]) }
        XCTAssertEqual(pending.status, 0, pending.err)
        let logs = try await offPool { try DaemonEdgectlTests.run(["finetune", "logs", job.id, "-f", "--interval", "0.2", "--socket", sock]) }
        XCTAssertTrue(logs.out.contains("the daemon restarted during training"), logs.out)
        // Whichever checkpoint was last on disk (every 10 steps; on a fast machine training can pass
        // step 30 before the kill lands): a checkpoint step at or below the last step seen, never 0.
        let resumed = logs.out.firstMatch(of: #/resumed from the checkpoint at step (\d+)\//#).flatMap { Int($0.1) }
        XCTAssertNotNil(resumed, logs.out)
        if let resumed {
            XCTAssertTrue(resumed >= 10 && resumed % 10 == 0, logs.out)
        }
        XCTAssertTrue(logs.out.contains("held-out loss after training"), logs.out)
        let status = try await offPool { try DaemonEdgectlTests.run(["finetune", "status", job.id, "--json", "--socket", sock]) }
        let final = try JSONDecoder().decode(FineTuningJob.self, from: Data(status.out.utf8))
        if final.status == "succeeded" {
            XCTAssertEqual(final.fineTunedModel, "colours@1")
            let adapters = try DaemonClient(socketPath: sock).request("GET", "/v1/adapters")
            XCTAssertTrue(String(decoding: adapters.body, as: UTF8.self).contains("colours"), String(decoding: adapters.body, as: UTF8.self))
        } else {
            XCTAssertEqual(final.error?.code, "eval_gate_rejected", final.error?.message ?? "")
        }
    }
}
