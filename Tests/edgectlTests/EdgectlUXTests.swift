import Foundation
import XCTest

/// What a user touches: every command's --help has an example, the exit codes are documented,
/// output has no colour codes when piped or with NO_COLOR, errors are one actionable sentence, and
/// every listing/status command's --json is JSON.
final class EdgectlUXTests: XCTestCase {
    /// Every command of the tree, from argument-parser's own description of it.
    struct Command {
        var path: [String]
        var discussion: String
        var options: [String]
    }

    static func commandTree() throws -> [Command] {
        let r = try EdgectlProcess.run(["--experimental-dump-help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        guard let root = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let command = root["command"] as? [String: Any] else {
            throw NSError(domain: "help", code: 1, userInfo: [NSLocalizedDescriptionKey: "--experimental-dump-help is not a command tree"])
        }
        var out: [Command] = []
        func walk(_ c: [String: Any], _ parent: [String]) {
            guard let name = c["commandName"] as? String, name != "help" else { return }
            let path = parent + [name]
            let args = (c["arguments"] as? [[String: Any]]) ?? []
            let options = args.compactMap { ($0["names"] as? [[String: Any]])?.compactMap { $0["name"] as? String } }.flatMap { $0 }
            out.append(Command(path: path, discussion: c["discussion"] as? String ?? "", options: options))
            for s in (c["subcommands"] as? [[String: Any]]) ?? [] { walk(s, path) }
        }
        walk(command, [])
        return out
    }

    func testEveryCommandsHelpShowsAnExampleOfItself() throws {
        let tree = try Self.commandTree()
        XCTAssertGreaterThan(tree.count, 30, "the whole tree: \(tree.map { $0.path.joined(separator: " ") })")
        for c in tree {
            let name = c.path.joined(separator: " ")
            guard let range = c.discussion.range(of: "Examples:\n") else {
                XCTFail("`\(name) --help` has no Examples: section")
                continue
            }
            let examples = c.discussion[range.upperBound...].split(separator: "\n").prefix { $0.hasPrefix("  ") }
            XCTAssertFalse(examples.isEmpty, "`\(name) --help`: Examples: lists nothing")
            // A group may show its subcommands; a leaf shows itself.
            XCTAssertTrue(examples.contains { $0.contains(name) }, "`\(name) --help`: no example runs `\(name)`: \(examples)")
        }
        // The text a user sees, not only the dump: spot-check one leaf and the root.
        let leaf = try EdgectlProcess.run(["finetune", "logs", "--help"])
        XCTAssertEqual(leaf.status, 0)
        XCTAssertTrue(leaf.stdout.contains("Examples:\n  edgectl finetune logs"), leaf.stdout)
    }

    func testRootHelpDocumentsExitCodes() throws {
        let r = try EdgectlProcess.run(["--help"])
        XCTAssertEqual(r.status, 0)
        let flat = r.stdout.replacingOccurrences(of: "\n", with: " ")
        for code in ["0 success", "1 the command failed", "2 a fine-tuning result was rejected", "3 the daemon is not reachable", "64 bad usage"] {
            XCTAssertTrue(flat.contains(code), "edgectl --help does not explain exit code '\(code)': \(r.stdout)")
        }
        let usage = try EdgectlProcess.run(["status", "--no-such-option"])
        XCTAssertEqual(usage.status, 64, "bad usage is exit status 64 as documented")
    }

    func testEveryListingAndStatusCommandHasJSON() throws {
        let tree = Dictionary(uniqueKeysWithValues: try Self.commandTree().map { ($0.path.joined(separator: " "), $0) })
        for name in ["edgectl status", "edgectl adapter list", "edgectl adapter info", "edgectl finetune list", "edgectl finetune status",
                     "edgectl finetune logs", "edgectl model info", "edgectl eval logprobs", "edgectl bench kernels", "edgectl bench generate"] {
            XCTAssertTrue(tree[name]?.options.contains("json") ?? false, "`\(name)` has no --json")
        }
    }

    /// `bench serve --targets` picks the projections its synthetic adapters adapt; a name that is not one
    /// of the seven is bad usage that lists them, before any daemon starts.
    func testBenchServeTargetsNameTheProjections() throws {
        let r = try EdgectlProcess.run(["bench", "serve", "--model", "/nonexistent", "--targets", "q_proj,qkv"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj") && r.stderr.contains("'q_proj,qkv'"), r.stderr)
        let help = try EdgectlProcess.run(["bench", "serve", "--help"])
        XCTAssertTrue(help.stdout.contains("--targets"), help.stdout)
    }

    private func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("edgectl-ux-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testDaemonNotRunningIsOneSentenceWithWhatToDoAndStatus3() throws {
        let dir = try scratch()
        let socket = dir.appendingPathComponent("none.sock").path
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        for args in [["status"], ["adapter", "list"], ["finetune", "list", "--json"], ["chat", "Hi"]] {
            let r = try EdgectlProcess.run(args + ["--socket", socket], environment: env)
            XCTAssertEqual(r.status, 3, "\(args): \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args): one line, not a trace: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("the daemon is not running at \(socket)"), r.stderr)
            XCTAssertTrue(r.stderr.contains("systemctl start edge-runtime.socket") && r.stderr.contains("edge-runtimed --socket"), r.stderr)
            XCTAssertFalse(r.stderr.contains("\u{1B}"), "no escape sequences: \(r.stderr)")
            XCTAssertEqual(r.stdout, "")
        }
    }

    func testNoColourOrProgressEscapesWhenPipedOrWithNO_COLOR() throws {
        let dir = try scratch()
        for noColor in [true, false] {
            var env = ProcessInfo.processInfo.environment
            if noColor { env["NO_COLOR"] = "1" } else { env.removeValue(forKey: "NO_COLOR") }
            for args in [["--help"], ["adapter", "list", "--cache-dir", dir.appendingPathComponent("c").path],
                         ["adapter", "keygen", dir.appendingPathComponent("k\(noColor)").path], ["model", "info", dir.path]] {
                let r = try EdgectlProcess.run(args, environment: env)
                XCTAssertFalse(r.stdout.contains("\u{1B}") || r.stderr.contains("\u{1B}"),
                               "\(args) (NO_COLOR \(noColor)) wrote escape sequences to a pipe: \(r.stdout.debugDescription) \(r.stderr.debugDescription)")
            }
        }
    }

    func testLocalJSONOutputsParse() throws {
        let dir = try scratch()
        let cache = dir.appendingPathComponent("cache").path
        let list = try EdgectlProcess.run(["adapter", "list", "--cache-dir", cache, "--json"])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [Any])?.count, 0, list.stdout)
        let key = try EdgectlProcess.run(["adapter", "keygen", dir.appendingPathComponent("sign.key").path, "--json"])
        XCTAssertEqual(key.status, 0, key.stderr)
        let obj = try JSONSerialization.jsonObject(with: Data(key.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((obj?["public_key"] as? String).flatMap { Data(base64Encoded: $0) }?.count, 32)
    }

    /// A real daemon (no model loaded: its status and adapter list still answer) behind the
    /// daemon-side --json commands.
    func testDaemonJSONOutputsParse() throws {
        let dir = try scratch()
        let socket = dir.appendingPathComponent("d.sock").path
        let config = dir.appendingPathComponent("config.toml")
        try """
        [model]
        path = "\(dir.appendingPathComponent("no-model").path)"
        [adapters]
        cache_dir = "\(dir.appendingPathComponent("cache").path)"
        """.write(to: config, atomically: true, encoding: .utf8)
        let daemon = Process()
        daemon.executableURL = EdgectlProcess.binary.deletingLastPathComponent().appendingPathComponent("edge-runtimed")
        daemon.arguments = ["--config", config.path, "--socket", socket]
        var env = ProcessInfo.processInfo.environment
        env["EDGE_STATE_DIR"] = dir.appendingPathComponent("state").path
        daemon.environment = env
        let log = FileHandle(forWritingAtPath: "/dev/null")
        daemon.standardOutput = log
        daemon.standardError = log
        try daemon.run()
        defer {
            daemon.terminate()
            daemon.waitUntilExit()
        }
        var status = try EdgectlProcess.run(["status", "--json", "--socket", socket])
        for _ in 0..<200 where status.status != 0 {
            Thread.sleep(forTimeInterval: 0.1)
            status = try EdgectlProcess.run(["status", "--json", "--socket", socket])
        }
        XCTAssertEqual(status.status, 0, status.stderr)
        let health = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(health?["status"] as? String, "no_model")
        XCTAssertNotNil(health?["hint"] as? String)

        let adapters = try EdgectlProcess.run(["adapter", "list", "--json", "--socket", socket])
        XCTAssertEqual(adapters.status, 0, adapters.stderr)
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(adapters.stdout.utf8)) as? [Any], adapters.stdout)

        // Without a model there is no fine-tuning: one sentence, status 1, nothing on stdout.
        let jobs = try EdgectlProcess.run(["finetune", "list", "--json", "--socket", socket])
        if jobs.status == 0 {
            XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(jobs.stdout.utf8)) as? [String: Any], jobs.stdout)
        } else {
            XCTAssertEqual(jobs.status, 1)
            XCTAssertEqual(jobs.stdout, "")
            XCTAssertEqual(jobs.stderr.split(separator: "\n").count, 1, jobs.stderr)
        }
    }
}
