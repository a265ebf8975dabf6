import AdapterCache
import Crypto
import Foundation
import XCTest
@testable import EdgeRuntime

/// Shared set-up of the crash-safety and trust tests: a temporary root (short path: sun_path holds
/// 108 bytes), the tiny model imported once per process, a `file://` store with adapters of the
/// tiny model's shapes, and the real `edge-runtimed` started, SIGKILLed and restarted on it.
final class ReliabilityRig {
    let root: String
    var store: String { root + "/store" }
    var cache: String { root + "/cache" }
    var state: String { root + "/state" }
    var socket: String { root + "/edge.sock" }
    var config: String { root + "/config.toml" }
    let model: String
    let baseDigest: String
    /// Extra lines appended to the daemon's config (e.g. `[adapters]` keys are set through `adapterKeys`).
    var adapterKeys: [String] = []
    var serverKeys: [String] = []
    var daemon: DaemonProcess?

    init() throws {
        root = try ServingTestServer.makeTemporaryDirectory()
        chmod(root, 0o755)  // the "other uid" client must reach the socket
        model = try FineTuningTestRig.model()
        baseDigest = EngineBackend.baseDigest(directory: model)
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
    }

    deinit {
        daemon?.kill()
        _ = daemon?.waitForExit(timeout: 10)
        try? FileManager.default.removeItem(atPath: root)
    }

    /// How many kill/restart runs each scenario does: `EDGE_CRASH_RUNS` (the long form, ≥ 100),
    /// else a short form that fits in CI.
    static var runs: Int {
        ProcessInfo.processInfo.environment["EDGE_CRASH_RUNS"].flatMap(Int.init).map { max(1, $0) } ?? 6
    }

    /// Packs a random PEFT adapter of the tiny model's shapes and publishes it into the store.
    @discardableResult
    func publish(name: String, version: String, rank: Int = 4, seed: UInt64, baseModel: String? = nil, signingKey: Curve25519.Signing.PrivateKey? = nil,
                 created: Date = Date()) throws -> StoreIndex.Version {
        let peft = root + "/peft-\(name)-\(version)"
        try? FileManager.default.removeItem(atPath: peft)
        try DaemonAdapterCtlTests.writeAdapter(to: peft, model: model, rank: rank, seed: seed)
        var options = AdapterArtifact.PackOptions(name: try AdapterName(name), version: try AdapterName(version), baseModel: baseModel ?? baseDigest,
                                                  signingKey: signingKey)
        options.level = 1
        options.created = created
        let (data, _) = try AdapterArtifact.pack(directory: peft, options: options)
        let file = root + "/\(name)-\(version).tar.zst"
        try data.write(to: URL(fileURLWithPath: file))
        var publish = StorePublisher.Options(signingKey: signingKey)
        publish.replace = true
        publish.created = created
        return try StorePublisher.publish(artifact: file, to: store, options: publish)
    }

    func writeConfig() throws {
        try ([
            "[server]", "socket_group = \"\"", "shutdown_grace = 1",
        ] + serverKeys + [
            "[adapters]", "store_url = \"file://\(store)\"", "cache_dir = \"\(cache)\"",
        ] + adapterKeys + [
            "[finetune]", "idle_after = 3600", "max_load = 1000", "on_ac_power = false",
        ]).joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
    }

    /// Starts the daemon and waits for /healthz.
    func start(environment: [String: String] = [:]) throws {
        try writeConfig()
        let d = try DaemonProcess(DaemonProcessTests.binary, ["--config", config, "--socket", socket, "--model", model],
                                  environment: ["EDGE_STATE_DIR": state].merging(environment) { $1 })
        daemon = d
        let client = DaemonClient(socketPath: socket)
        let end = Date().addingTimeInterval(60)
        while Date() < end {
            if let r = try? client.request("GET", "/healthz"), r.status == 200 { return }
            if !d.process.isRunning { break }
            usleep(20_000)
        }
        d.kill()
        throw RigError("the daemon did not come up: \(d.stderr)")
    }

    func kill() {
        guard let d = daemon else { return }
        d.kill()
        _ = d.waitForExit(timeout: 10)
    }

    func request(_ method: String, _ path: String, _ json: String? = nil) throws -> (status: Int, body: String) {
        let r = try DaemonClient(socketPath: socket).request(method, path, body: json.map { Array($0.utf8) })
        return (r.status, String(decoding: r.body, as: UTF8.self))
    }

    /// `GET /v1/adapters` as (name@version → sha256, pinned, source).
    func adapters() throws -> [String: (sha: String, pinned: Bool, source: String)] {
        let r = try request("GET", "/v1/adapters")
        guard r.status == 200, let obj = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
              let data = obj["data"] as? [[String: Any]] else { throw RigError("GET /v1/adapters: \(r.status) \(r.body)") }
        var out: [String: (String, Bool, String)] = [:]
        for a in data {
            out["\(a["name"] as? String ?? "?")@\(a["version"] as? String ?? "?")"] = (a["sha256"] as? String ?? "", a["pinned"] as? Bool ?? false, a["source"] as? String ?? "")
        }
        return out
    }

    func complete(model: String) throws -> (status: Int, body: String) {
        try request("POST", "/v1/completions", #"{"model": "\#(model)", "prompt": "colour of item 3?", "max_tokens": 2, "temperature": 0}"#)
    }

    /// The cache directory as start-up must leave it: no temporary files, every blob named by its
    /// own sha256, and index.json listing exactly the blobs (sizes included). Empty when consistent.
    func cacheProblems(budget: Int64? = nil) -> [String] {
        var problems: [String] = []
        let fm = FileManager.default
        let tmp = (try? fm.contentsOfDirectory(atPath: cache + "/tmp")) ?? []
        if !tmp.isEmpty { problems.append("tmp/ not swept: \(tmp)") }
        var blobs: [String: Int64] = [:]
        for f in (try? fm.contentsOfDirectory(atPath: cache + "/blobs")) ?? [] {
            let path = cache + "/blobs/" + f
            let sha = f.hasSuffix(".tar.zst") ? String(f.dropLast(8)) : ""
            guard let actual = try? FileDigest.sha256(file: path), actual == sha else {
                problems.append("blob \(f) does not hash to its name")
                continue
            }
            blobs[sha] = ((try? fm.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.int64Value ?? -1
        }
        guard let data = fm.contents(atPath: cache + "/index.json"),
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let entries = obj["entries"] as? [[String: Any]] else {
            return problems + ["index.json missing or unreadable"]
        }
        var indexed: [String: Int64] = [:]
        for e in entries { indexed[e["sha256"] as? String ?? "?"] = (e["size"] as? NSNumber)?.int64Value ?? -1 }
        if indexed != blobs { problems.append("index \(indexed) differs from blobs \(blobs)") }
        if let budget, blobs.values.reduce(0, +) > budget { problems.append("blobs hold \(blobs.values.reduce(0, +)) bytes, over the \(budget)-byte budget") }
        return problems
    }

    /// sha256 of a file as lower-case hex.
    static func sha(_ path: String) -> String? { try? FileDigest.sha256(file: path) }
}

struct RigError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Tallies one scenario's runs and prints the line `scripts/crash-test` collects.
final class ScenarioTally {
    let name: String
    private(set) var runs = 0
    private(set) var failures: [String] = []
    /// How often a run landed in an interesting window (e.g. mid-promotion), for the report.
    private(set) var notes: [String: Int] = [:]

    func note(_ what: String) { notes[what, default: 0] += 1 }

    init(_ name: String) { self.name = name }

    func run(_ index: Int, _ body: () throws -> [String]) {
        runs += 1
        do {
            let problems = try body()
            if !problems.isEmpty { failures.append("run \(index): " + problems.joined(separator: "; ")) }
        } catch {
            failures.append("run \(index): \(error)")
        }
    }

    func report(file: StaticString = #filePath, line: UInt = #line) {
        let extra = notes.sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        print("crash-safety \(name): runs=\(runs) failures=\(failures.count)\(extra)")
        for f in failures.prefix(5) { print("crash-safety \(name): \(f)") }
        XCTAssertEqual(failures.count, 0, "\(name): \(failures.prefix(3).joined(separator: "\n"))", file: file, line: line)
    }
}
