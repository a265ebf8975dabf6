import CSystemd
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's listening Unix socket: inherited from systemd (socket activation, fd 3 and up) or
/// bound here. Owns the fd until `take()` hands it to the server; removes the socket file it
/// created when released.
public final class ListeningSocket: @unchecked Sendable {
    // Mutated only by take()/deinit, which the daemon calls from one task.
    private var fd: Int32
    public let path: String
    /// True when systemd passed the socket (then systemd owns the file too).
    public let activated: Bool
    private let unlinkOnClose: Bool

    private init(fd: Int32, path: String, activated: Bool, unlinkOnClose: Bool) {
        self.fd = fd
        self.path = path
        self.activated = activated
        self.unlinkOnClose = unlinkOnClose
    }

    deinit {
        if fd >= 0 { close(fd) }
        if unlinkOnClose { unlink(path) }
    }

    /// Hands the fd to its new owner (NIO closes it when the server channel closes).
    public func take() -> Int32 {
        let f = fd
        fd = -1
        return f
    }

    /// The socket systemd passed (LISTEN_FDS / LISTEN_PID), or nil when not socket-activated.
    /// Exactly one listening AF_UNIX stream socket is expected.
    public static func fromSystemd() throws(DaemonError) -> ListeningSocket? {
        let n = sd_listen_fds(1)
        if n < 0 { throw .socketActivation("sd_listen_fds failed: \(String(cString: strerror(-n)))") }
        if n == 0 { return nil }
        if n > 1 {
            throw .socketActivation("systemd passed \(n) sockets; edge-runtime.socket must declare exactly one ListenStream=")
        }
        let fd = SD_LISTEN_FDS_START
        guard sd_is_socket_unix(fd, Int32(SOCK_STREAM.rawValue), 1, nil, 0) > 0 else {
            throw .socketActivation("fd \(fd) from systemd is not a listening Unix stream socket: use ListenStream=/run/edge-runtime/edge.sock")
        }
        var addr = sockaddr_un()
        var len = socklen_t(MemoryLayout<sockaddr_un>.size)
        let path: String = withUnsafeMutablePointer(to: &addr) { p in
            _ = p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
            return withUnsafeBytes(of: &p.pointee.sun_path) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        let flags = fcntl(fd, F_GETFD)
        _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC)
        return ListeningSocket(fd: fd, path: path.isEmpty ? "(inherited fd \(fd))" : path, activated: true, unlinkOnClose: false)
    }

    /// Binds `path` itself: parent directory created, a stale socket file (nobody answering)
    /// removed, mode and group set before `listen`, so no client ever sees looser permissions.
    public static func bind(path: String, mode: mode_t, group: String, logger: Logger) throws(DaemonError) -> ListeningSocket {
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw .socket(path: path, operation: "bind (path longer than \(MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1) bytes)", errno: ENAMETOOLONG)
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            } catch {
                throw .socket(path: path, operation: "create directory \(parent)", errno: EACCES)
            }
        }
        try removeStale(path)

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket(path: path, operation: "socket", errno: errno) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw .socket(path: path, operation: "bind", errno: e)
        }
        let owned = ListeningSocket(fd: fd, path: path, activated: false, unlinkOnClose: true)
        guard chmod(path, mode) == 0 else { throw .socket(path: path, operation: "chmod \(String(mode, radix: 8))", errno: errno) }
        if !group.isEmpty {
            if let g = getgrnam(group) {
                if chown(path, uid_t.max, g.pointee.gr_gid) != 0 {
                    logger.warning("cannot give the socket to group \(group): \(String(cString: strerror(errno))); only this user and root can connect", metadata: ["socket.path": "\(path)"])
                }
            } else {
                logger.notice("group \(group) does not exist; the socket keeps this process's group", metadata: ["socket.path": "\(path)"])
            }
        }
        guard listen(fd, 256) == 0 else { throw .socket(path: path, operation: "listen", errno: errno) }
        return owned
    }

    /// Removes a socket file nobody listens on; refuses to touch a live socket or a non-socket.
    static func removeStale(_ path: String) throws(DaemonError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw .socket(path: path, operation: "bind (a file that is not a socket is in the way; remove it by hand)", errno: EEXIST)
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw .socket(path: path, operation: "socket", errno: errno) }
        defer { close(probe) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc == 0 { throw .socket(path: path, operation: "bind", errno: EADDRINUSE) }
        guard unlink(path) == 0 || errno == ENOENT else { throw .socket(path: path, operation: "remove stale socket", errno: errno) }
    }
}
