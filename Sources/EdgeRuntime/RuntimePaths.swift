import Foundation

/// Where the daemon and edgectl look for their socket, state and cache (DESIGN.md §1).
///
/// The precedence is the same for both programs so that `edgectl` finds whatever socket the daemon
/// was told to use: an explicit `--socket` wins, then `EDGE_SOCKET`, then the per-user path under
/// `$XDG_RUNTIME_DIR` when not running as root, then the system path.
public enum RuntimePaths {
    public static let systemSocket = "/run/edge-runtime/edge.sock"
    public static let systemConfig = "/etc/edge-runtime/config.toml"
    public static let systemState = "/var/lib/edge-runtime"
    public static let systemCache = "/var/cache/edge-runtime"

    public static func socketPath(
        explicit: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        isRoot: Bool = getuid() == 0
    ) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = environment["EDGE_SOCKET"], !env.isEmpty { return env }
        if !isRoot, let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty {
            return runtime + "/edge-runtime/edge.sock"
        }
        return systemSocket
    }
}
