/// What can stop the daemon from starting or reloading: configuration, socket, systemd. Each
/// description names the file/key/path at fault and says what to do.
public enum DaemonError: Error, CustomStringConvertible, Equatable {
    case configUnreadable(path: String, reason: String)
    case configSyntax(path: String, line: Int, column: Int, reason: String)
    case configKey(path: String, key: String, problem: String)
    case socket(path: String, operation: String, errno: Int32)
    case socketActivation(String)

    public var description: String {
        switch self {
        case .configUnreadable(let path, let reason):
            return "cannot read config \(path): \(reason)"
        case .configSyntax(let path, let line, let column, let reason):
            return "config \(path) line \(line), column \(column): \(reason): fix the TOML syntax"
        case .configKey(let path, let key, let problem):
            return "config \(path): \(key) \(problem)"
        case .socket(let path, let operation, let errno):
            let hint: String
            switch errno {
            case EACCES, EPERM: hint = ": permission denied — run as root/the edge-runtime user or pass --socket PATH in a writable directory"
            case EADDRINUSE: hint = ": another process is listening there — stop it (systemctl stop edge-runtime) or choose another --socket"
            default: hint = ""
            }
            return "socket \(path): \(operation) failed: \(String(cString: strerror(errno)))\(hint)"
        case .socketActivation(let message):
            return "socket activation: \(message)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
