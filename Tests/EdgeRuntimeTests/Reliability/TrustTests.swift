import AdapterCache
import Crypto
import Foundation
import Hummingbird
import XCTest
@testable import EdgeRuntime

/// What the daemon refuses through its API, and says so in its log: tampered, wrongly digested,
/// unsigned or badly signed artifacts when signatures are required, adapters for another base,
/// a store rolling a pinned adapter back, oversized fine-tune uploads, and any uid not let in —
/// on every route of the router. Also disk full and a read-only state directory.
final class TrustTests: XCTestCase {
    func refusedPull(_ rig: ReliabilityRig, _ name: String, expect fragment: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try rig.request("POST", "/v1/adapters/pull", #"{"name": "\#(name)", "stream": false}"#)
        XCTAssertTrue((400..<500).contains(r.status), "\(name): \(r.status) \(r.body)", file: file, line: line)
        XCTAssertTrue(r.body.contains(fragment), "\(name): \(r.body)", file: file, line: line)
        let logged = waitForLog(rig) { $0.contains("refusing adapter") && $0.contains(name.split(separator: "@")[0]) && $0.contains(fragment) }
        XCTAssertTrue(logged, "no log line refusing \(name) with '\(fragment)': \(rig.daemon!.stderr.suffix(2000))", file: file, line: line)
        XCTAssertNil(try rig.adapters()[name.contains("@") ? name : name + "@1"], "\(name) must not be cached", file: file, line: line)
    }

    /// The daemon's stderr is collected asynchronously: a line may arrive just after the response.
    func waitForLog(_ rig: ReliabilityRig, timeout: Double = 10, _ match: (Substring) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        repeat {
            if rig.daemon!.stderr.split(separator: "\n").contains(where: match) { return true }
            usleep(20_000)
        } while Date() < end
        return false
    }

    func testBadArtifactsAndDowngradesAreRefusedThroughTheDaemonAndLogged() throws {
        let rig = try ReliabilityRig()
        let key = Curve25519.Signing.PrivateKey()
        let stranger = Curve25519.Signing.PrivateKey()
        rig.adapterKeys = ["require_signature = true", "trusted_keys = [\"\(key.publicKey.rawRepresentation.base64EncodedString())\"]"]
        try rig.publish(name: "good", version: "1", seed: 1, signingKey: key)
        try rig.publish(name: "tampered", version: "1", seed: 2, signingKey: key)
        try rig.publish(name: "digest", version: "1", seed: 3, signingKey: key)
        try rig.publish(name: "unsigned", version: "1", seed: 4)
        try rig.publish(name: "stranger", version: "1", seed: 5, signingKey: stranger)
        try rig.publish(name: "otherbase", version: "1", seed: 6, baseModel: String(repeating: "ab", count: 32), signingKey: key)
        try rig.publish(name: "pinned", version: "1", seed: 7, signingKey: key, created: Date().addingTimeInterval(-3600))
        try rig.publish(name: "pinned", version: "2", seed: 8, signingKey: key)

        // One byte of the artifact flipped in the store.
        let tampered = rig.store + "/tampered/1.tar.zst"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: tampered))
        bytes[bytes.count / 2] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: tampered))
        // The index names another digest than the artifact's.
        let index = rig.store + "/digest/index.json"
        let text = try String(contentsOfFile: index, encoding: .utf8)
        let sha = try XCTUnwrap(ReliabilityRig.sha(rig.store + "/digest/1.tar.zst"))
        try text.replacingOccurrences(of: sha, with: String(repeating: "0", count: 64)).write(toFile: index, atomically: true, encoding: .utf8)

        try rig.start()
        XCTAssertEqual(try rig.request("POST", "/v1/adapters/pull", #"{"name": "good@1", "stream": false}"#).status, 200)
        XCTAssertEqual(try rig.complete(model: "good@1").status, 200)

        try refusedPull(rig, "tampered@1", expect: "tampered with")
        try refusedPull(rig, "digest@1", expect: "tampered with")
        try refusedPull(rig, "unsigned@1", expect: "requires signed adapters")
        try refusedPull(rig, "stranger@1", expect: "stranger@1")
        try refusedPull(rig, "otherbase@1", expect: "trained on base model")
        // Inference naming a refused adapter is refused the same way, never served.
        let r = try rig.complete(model: "tampered@1")
        XCTAssertEqual(r.status, 400, r.body)

        // Pinned at 2, the store then rolls back to 1 as its newest: pulling "pinned" must not downgrade.
        XCTAssertEqual(try rig.request("POST", "/v1/adapters/pull", #"{"name": "pinned@2", "stream": false}"#).status, 200)
        XCTAssertEqual(try rig.request("POST", "/v1/adapters/pinned@2/pin").status, 200)
        let pinnedIndex = rig.store + "/pinned/index.json"
        var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: pinnedIndex))) as? [String: Any])
        obj["versions"] = (obj["versions"] as? [[String: Any]] ?? []).filter { $0["version"] as? String == "1" }
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: pinnedIndex))
        let rollback = try rig.request("POST", "/v1/adapters/pull", #"{"name": "pinned", "stream": false}"#)
        XCTAssertEqual(rollback.status, 400, rollback.body)
        XCTAssertTrue(rollback.body.contains("downgrade was refused"), rollback.body)
        XCTAssertTrue(waitForLog(rig) { $0.contains("refusing adapter: the store offers pinned@1, which is older than the pinned pinned@2") }, rig.daemon!.stderr.suffix(2000).description)
        XCTAssertNil(try rig.adapters()["pinned@1"])
        XCTAssertEqual(rig.cacheProblems(), [])
    }

    func testFineTuneUploadsAreCappedWith413() throws {
        let rig = try ReliabilityRig()
        rig.serverKeys = ["max_upload_bytes = 8192"]
        try rig.start()
        let row = #"{"messages": [{"role": "user", "content": "colour?"}, {"role": "assistant", "content": "red"}]}\n"#
        let big = String(repeating: row, count: 200)  // ≈ 19 KB
        let r = try rig.request("POST", "/v1/fine_tuning/jobs", #"{"suffix": "big", "training_data": "\#(big)"}"#)
        XCTAssertEqual(r.status, 413, r.body)
        XCTAssertTrue(r.body.contains("max_upload_bytes") || r.body.contains("max_body_bytes"), r.body)
        // Under the cap the same route gets past the size check (to the data validation).
        let small = try rig.request("POST", "/v1/fine_tuning/jobs", #"{"suffix": "small", "training_data": "\#(row)"}"#)
        XCTAssertNotEqual(small.status, 413, small.body)
        XCTAssertEqual(try rig.request("GET", "/healthz").status, 200)
    }

    /// Every route the router holds, asked by uid 65534 (nobody) through the real socket: 403, and
    /// an "access denied" log line for each. The list comes from the router itself, so a route
    /// added without an authorisation check fails here.
    func testAnotherUIDIsRefusedWith403OnEveryRoute() throws {
        guard getuid() == 0 else { return XCTFail("this test switches to uid 65534 and needs root (CI runs the tests as root)") }
        var config = DaemonConfiguration()
        config.auth.inferenceGIDs = []
        config.auth.manageGIDs = []
        let state = ServingState(backend: NoModelBackend(hint: "routes only"), fineTuning: nil, settings: .init(config))
        let routes = APIRoutes(state: state).build().routes
        XCTAssertGreaterThanOrEqual(routes.count, 18, "\(routes)")

        let rig = try ReliabilityRig()
        rig.serverKeys = ["socket_mode = \"0666\""]
        try rig.start()
        for route in routes {
            let path = route.path.description.split(separator: "/").map { $0.hasPrefix(":") ? "x1" : String($0) }.joined(separator: "/")
            let url = "http://localhost/" + path.drop { $0 == "/" }
            var args = ["--reuid", "65534", "--regid", "65534", "--clear-groups", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        "--unix-socket", rig.socket, "-X", route.method.rawValue]
            if route.method == .post { args += ["-H", "Content-Type: application/json", "--data", "{}"] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
            p.arguments = args + [url]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            let code = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            XCTAssertEqual(code, "403", "\(route.method) \(path) as uid 65534")
            // The same route as root (the daemon's own uid) is let in: the 403 is about the uid.
            let root = try rig.request(route.method.rawValue, "/" + path.drop { $0 == "/" }, route.method == .post ? "{}" : nil)
            XCTAssertNotEqual(root.status, 403, "\(route.method) \(path) as root: \(root.body)")
        }
        let logged = waitForLog(rig) { _ in rig.daemon!.stderr.split(separator: "\n").filter { $0.contains("access denied") && $0.contains("65534") }.count >= routes.count }
        XCTAssertTrue(logged, "an 'access denied' line per refused request: \(rig.daemon!.stderr.suffix(3000))")
    }

    // MARK: - Disk full and read-only

    func mountTmpfs(_ dir: String, size: Int, readOnly: Bool = false) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = ["-t", "tmpfs", "-o", "size=\(size)\(readOnly ? ",ro" : "")", "tmpfs", dir]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw RigError("mount tmpfs on \(dir) failed (the test needs root, as in CI)") }
    }

    func unmount(_ dir: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/umount")
        p.arguments = ["-l", dir]
        try? p.run()
        p.waitUntilExit()
    }

    func testPullOnAFullDiskIsAClearErrorAndKeepsTheCache() throws {
        let rig = try ReliabilityRig()
        let small = try rig.publish(name: "small", version: "1", rank: 1, seed: 1)
        let big = try rig.publish(name: "big", version: "1", rank: 64, seed: 2)
        let size = Int((small.size * 3 + 32768 + 4095) / 4096 * 4096)
        XCTAssertGreaterThan(Int(big.size), size, "the big adapter must not fit the tmpfs")
        try mountTmpfs(rig.cache, size: size)
        defer { rig.kill(); unmount(rig.cache) }
        try rig.start()
        XCTAssertEqual(try rig.request("POST", "/v1/adapters/pull", #"{"name": "small@1", "stream": false}"#).status, 200)
        let r = try rig.request("POST", "/v1/adapters/pull", #"{"name": "big@1", "stream": false}"#)
        XCTAssertTrue((400..<600).contains(r.status), r.body)
        XCTAssertTrue(r.body.contains("disk is full"), r.body)
        // The earlier adapter still serves, the failed download left nothing behind.
        XCTAssertEqual(try rig.complete(model: "small@1").status, 200)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: rig.cache + "/tmp"), [])
        rig.kill()
        try rig.start()
        XCTAssertEqual(rig.cacheProblems(), [])
        XCTAssertEqual(try rig.adapters()["small@1"]?.sha, small.sha256)
    }

    func testCheckpointOnAFullDiskIsAClearErrorAndKeepsTheJob() throws {
        let rig = try ReliabilityRig()
        try mountTmpfs(rig.state, size: 2 << 20)
        defer { rig.kill(); unmount(rig.state) }
        try rig.start()
        let ft = try FineTuningTestRig()
        let train = String(decoding: try JSONSerialization.data(withJSONObject: [ft.rows(40)]), as: UTF8.self).dropFirst().dropLast()
        let created = try rig.request("POST", "/v1/fine_tuning/jobs", #"{"suffix": "full", "training_data": \#(train), "hyperparameters": {"rank": 2, "alpha": 4, "batch_size": 1, "n_epochs": 4}}"#)
        XCTAssertEqual(created.status, 200, created.body)
        let id = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(created.body.utf8)) as? [String: Any])?["id"] as? String)
        // Once it trains, fill what is left of the disk: its next checkpoint runs into it.
        XCTAssertEqual(try rig.request("POST", "/v1/fine_tuning/run_pending").status, 200)
        let running = Date().addingTimeInterval(60)
        while Date() < running, !(try rig.request("GET", "/v1/fine_tuning/jobs/\(id)").body.contains("\"running\"")) { usleep(10_000) }
        let filler = rig.state + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT, 0o600)
        let chunk = [UInt8](repeating: 1, count: 4096)
        while write(fd, chunk, chunk.count) > 0 {}
        close(fd)
        XCTAssertEqual(try rig.request("POST", "/v1/fine_tuning/run_pending").status, 200)
        var job: [String: Any] = [:]
        let end = Date().addingTimeInterval(120)
        while Date() < end {
            let r = try rig.request("GET", "/v1/fine_tuning/jobs/\(id)")
            job = (try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any]) ?? [:]
            if ["failed", "succeeded"].contains(job["status"] as? String ?? "") { break }
            usleep(50_000)
        }
        XCTAssertEqual(job["status"] as? String, "failed", "\(job)")
        let message = ((job["error"] as? [String: Any])?["message"] as? String) ?? ""
        XCTAssertTrue(message.contains("disk is full") || message.contains("No space left"), message)
        // Room again: the job's record and the daemon are intact, the state directory still loads.
        unlink(filler)
        rig.kill()
        try rig.start()
        let again = try rig.request("GET", "/v1/fine_tuning/jobs/\(id)")
        XCTAssertEqual(again.status, 200, again.body)
        XCTAssertFalse(FileManager.default.fileExists(atPath: rig.state + "/finetune/jobs/\(id)/checkpoint.safetensors.tmp"))
    }

    func testReadOnlyStateDirectoryIsAnErrorAtStartNamingThePath() throws {
        let rig = try ReliabilityRig()
        try mountTmpfs(rig.state, size: 1 << 20, readOnly: true)
        defer { unmount(rig.state) }
        XCTAssertThrowsError(try rig.start())
        let d = try XCTUnwrap(rig.daemon)
        XCTAssertEqual(d.waitForExit(timeout: 10), 1, d.stderr)
        XCTAssertTrue(d.stderr.contains("the state directory \(rig.state) is not writable (Read-only file system)"), d.stderr)
    }
}
