import ArgumentParser
import EdgeRuntime
import Foundation

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show whether the daemon is serving: model, running and queued requests, KV memory, adapters in RAM.",
        discussion: DaemonExit.helpText + "\n\n" + helpExamples("edgectl status", "edgectl status --json --socket /run/edge-runtime/edge.sock")
    )

    @OptionGroup var socket: SocketOptions

    @Flag(name: .long, help: "Print the daemon's /healthz JSON instead of text.")
    var json = false

    func run() throws {
        let response: DaemonClient.Response
        do {
            response = try socket.client.request("GET", "/healthz")
        } catch {
            throw DaemonExit.fail(error)
        }
        guard response.status == 200, let h = response.json else { throw DaemonExit.refused(response) }
        if json {
            print(h.serialized)
            return
        }
        let state = h["status"]?.stringValue ?? "unknown"
        print("edge-runtimed \(h["version"]?.stringValue ?? "?") at \(socket.path): \(state == "ok" ? "serving" : state.replacingOccurrences(of: "_", with: " "))")
        if let m = h["model"], !m.isNull {
            print("model:      \(m["name"]?.stringValue ?? "?") (\(m["path"]?.stringValue ?? "?")), context \(m["context_length"]?.intValue ?? 0) tokens")
        } else if let hint = h["hint"]?.stringValue {
            print("model:      none — \(hint)")
        }
        print("requests:   \(h["running"]?.intValue ?? 0) running, \(h["queued"]?.intValue ?? 0) queued")
        let kv = Double(h["kv_bytes"]?.intValue ?? 0) / 1_048_576
        let budget = Double(h["kv_budget_bytes"]?.intValue ?? 0) / 1_048_576
        print("KV cache:   \(String(format: "%.1f", kv)) MiB" + (budget > 0 ? " of \(String(format: "%.0f", budget)) MiB" : ""))
        let adapters = h["adapters_in_ram"]?.arrayValue?.compactMap(\.stringValue) ?? []
        print("adapters:   \(adapters.isEmpty ? "none in RAM" : adapters.joined(separator: ", "))")
        if let up = h["uptime_seconds"]?.doubleValue {
            let s = Int(up)
            print("uptime:     \(s / 3600)h \(s / 60 % 60)m \(s % 60)s")
        }
    }
}
