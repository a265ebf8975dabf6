import ArgumentParser
import EdgeRuntime
import Foundation

/// `--socket`, shared by every command that talks to the daemon; EDGE_SOCKET and the per-user /
/// system defaults apply when it is absent (RuntimePaths.socketPath).
struct SocketOptions: ParsableArguments {
    @Option(name: .long, help: "Daemon socket (default: $EDGE_SOCKET, else $XDG_RUNTIME_DIR/edge-runtime/edge.sock for a user, else \(RuntimePaths.systemSocket)).")
    var socket: String?

    var path: String { RuntimePaths.socketPath(explicit: socket) }
    var client: DaemonClient { DaemonClient(socketPath: path) }
}

/// edgectl's exit codes for commands that talk to the daemon.
enum DaemonExit {
    /// The daemon answered with an error (its message is printed).
    static let requestFailed: Int32 = 1
    /// The daemon cannot be reached (not running, or no permission on the socket).
    static let unreachable: Int32 = 3

    static let helpText = "Exit codes: 0 success; 1 the daemon refused or failed the request; 3 the daemon is not reachable (not running, or no permission on its socket); 64 bad usage."

    /// Prints one sentence for a client-side failure and exits with the matching code.
    static func fail(_ error: Error) -> ExitCode {
        FileHandle.standardError.write(Data("edgectl: \(error)\n".utf8))
        if let e = error as? ClientError {
            switch e {
            case .notRunning, .permission: return ExitCode(unreachable)
            default: return ExitCode(requestFailed)
            }
        }
        return ExitCode(requestFailed)
    }

    static func refused(_ response: DaemonClient.Response) -> ExitCode {
        FileHandle.standardError.write(Data("edgectl: the daemon answered \(response.status): \(response.errorMessage)\n".utf8))
        return ExitCode(requestFailed)
    }
}
