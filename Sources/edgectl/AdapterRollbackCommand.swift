import AdapterCache
import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl adapter rollback NAME`: the daemon makes the previous version of an adapter trained on
/// this device current again (`POST /v1/adapters/NAME/rollback`). Always through the daemon: it
/// owns both the adapter cache and the fine-tuning state the switch must keep consistent.
struct AdapterRollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Make the previous fine-tuned version of an adapter current again (the newer one stays on disk).",
        discussion: """
        Requests for NAME are then served by the previous version promoted by `edgectl finetune`; the
        rolled-back-from version stays on disk and remains reachable as NAME@VERSION. Rolling back
        again goes one version further back. The next fine-tuning job of NAME is gated against the
        version that is current.

        Examples:
          edgectl adapter rollback support-bot
          edgectl adapter rollback support-bot --json --socket /run/edge-runtime/edge.sock

        \(DaemonExit.helpText)
        """)

    @Argument(help: "NAME of an adapter trained on this device (no @VERSION: the previous version is chosen).") var name: String
    @OptionGroup var socket: SocketOptions
    @Flag(name: .long, help: "Print JSON.") var json = false

    func validate() throws {
        if name.contains("@") { throw ValidationError("give the adapter NAME without @VERSION: rollback always goes to the version before the current one") }
        do { _ = try AdapterName(name) } catch { throw ValidationError("'\(name)' is not a valid adapter name: \(error)") }
    }

    func run() async throws {
        let response: DaemonClient.Response
        do { response = try socket.client.request("POST", "/v1/adapters/\(name)/rollback", body: Array("{}".utf8)) } catch {
            throw DaemonExit.fail(error)
        }
        guard (200..<300).contains(response.status) else { throw DaemonExit.refused(response) }
        let result: AdapterRollback
        do { result = try JSONDecoder().decode(AdapterRollback.self, from: response.body) } catch {
            FileHandle.standardError.write(Data("edgectl: the daemon sent a rollback answer edgectl cannot read (\(error)); are edgectl and edge-runtimed the same version?\n".utf8))
            throw ExitCode(DaemonExit.requestFailed)
        }
        if json { printJSON(result); return }
        print("\(result.name): version \(result.version) is current (rolled back from \(result.rolledBackFrom); kept versions: \(result.versions.joined(separator: ", ")))")
    }
}
