import AdapterCache
import EdgeRuntime
import Foundation

/// A daemon started by `bench load --model DIR` so the benchmark runs unattended: a temporary
/// state directory (socket, config, adapter store and cache) with `adapterCount` synthetic
/// adapters shaped for the model, published to a local store and pulled by the daemon on first
/// use. The process is terminated and the directory removed in `stop()` (and deinit).
final class LoadDaemon {
    let directory: String
    let socketPath: String
    let adapterNames: [String]
    let process: Process
    let logPath: String

    init(binary: String, model: String, adapterCount: Int, scheduler: (maxRunning: Int?, maxQueue: Int?)) throws {
        var template = Array("/tmp/edge-load-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw LoadError.setup("cannot create a temporary directory in /tmp") }
        directory = String(cString: p)
        socketPath = directory + "/edge.sock"
        logPath = directory + "/daemon.log"
        let store = directory + "/store"
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)

        let shape = try Self.modelShape(model)
        let digest = try ModelDigest.of(path: model)
        var names: [String] = []
        for i in 0..<adapterCount {
            let name = "load-\(Character(UnicodeScalar(UInt8(97 + i % 26))))\(i >= 26 ? String(i / 26) : "")"
            let peft = directory + "/peft-\(name)"
            try SyntheticAdapter.write(to: peft, layers: shape.layers, hidden: shape.hidden, intermediate: shape.intermediate, kvDim: shape.kvDim, rank: 8, seed: UInt64(1000 + i))
            var options = AdapterArtifact.PackOptions(name: try AdapterName(name), version: try AdapterName("1"), baseModel: digest)
            options.level = 3
            let (artifact, _) = try AdapterArtifact.pack(directory: peft, options: options)
            let file = directory + "/\(name).tar.zst"
            try AtomicFile.write(artifact, to: file)
            _ = try StorePublisher.publish(artifact: file, to: store)
            try? FileManager.default.removeItem(atPath: peft)
            names.append(name)
        }
        adapterNames = names

        var schedulerSection = ""
        if scheduler.maxRunning != nil || scheduler.maxQueue != nil {
            schedulerSection = "[scheduler]\n"
            if let r = scheduler.maxRunning { schedulerSection += "max_running = \(r)\n" }
            if let q = scheduler.maxQueue { schedulerSection += "max_queue = \(q)\n" }
        }
        let config = directory + "/config.toml"
        try """
            # Written by `edgectl bench load --model`.
            [server]
            socket_group = ""
            shutdown_grace = 5
            [model]
            path = "\(model)"
            [adapters]
            store_url = "file://\(store)"
            cache_dir = "\(directory)/cache"
            \(schedulerSection)
            """.write(toFile: config, atomically: true, encoding: .utf8)

        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", config, "--socket", socketPath]
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
    }

    deinit { stop() }

    /// Waits until /healthz reports the model loaded.
    func waitUntilReady(timeout: Double) throws {
        let client = DaemonClient(socketPath: socketPath, timeout: 10)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else { throw LoadError.setup("the daemon exited with status \(process.terminationStatus); its log: \(logPath)") }
            if let r = try? client.request("GET", "/healthz"), r.json?["status"]?.stringValue == "ok" { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw LoadError.setup("the daemon was not ready within \(Int(timeout)) s; its log: \(logPath)")
    }

    /// SIGTERM, a short wait, SIGKILL; then the temporary directory goes (unless `keep`).
    func stop(keep: Bool = false) {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        if !keep { try? FileManager.default.removeItem(atPath: directory) }
    }

    static func modelShape(_ model: String) throws -> (layers: Int, hidden: Int, intermediate: Int, kvDim: Int) {
        let path = model + "/config.json"
        guard let data = FileManager.default.contents(atPath: path), let json = try? JSONValue.parse(Array(data)) else {
            throw LoadError.setup("\(path) is missing or not JSON: give --model an imported model directory (edgectl model import)")
        }
        func int(_ key: String) throws -> Int {
            guard let v = json[key]?.intValue, v > 0 else { throw LoadError.setup("\(path) has no positive integer \"\(key)\"") }
            return Int(v)
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let headDim = json["head_dim"]?.intValue.map(Int.init) ?? hidden / heads
        guard heads * headDim == hidden else {
            throw LoadError.setup("\(path): heads × head_dim ≠ hidden_size; synthetic adapters need square q/o projections (pass --socket and --adapters instead)")
        }
        let kvHeads = json["num_key_value_heads"]?.intValue.map(Int.init) ?? heads
        return (try int("num_hidden_layers"), hidden, try int("intermediate_size"), kvHeads * headDim)
    }
}

enum LoadError: Error, CustomStringConvertible {
    case setup(String)
    var description: String {
        switch self {
        case .setup(let s): return s
        }
    }
}
