import Foundation

/// An exclusive `flock` on a file, held from init to deinit (the fd is closed there, which releases
/// it — also when the process dies, so a crash never leaves a stale lock).
public final class FileLock {
    private let fd: Int32
    public let path: String

    /// `blocking: false` throws `.cacheLocked` when another process holds the lock.
    public init(path: String, blocking: Bool) throws(AdapterError) {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        while flock(fd, LOCK_EX | (blocking ? 0 : LOCK_NB)) != 0 {
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { throw .cacheLocked(path: (path as NSString).deletingLastPathComponent) }
            throw .io(path: path, reason: "flock: \(String(cString: strerror(e)))")
        }
    }

    deinit { close(fd) }
}
