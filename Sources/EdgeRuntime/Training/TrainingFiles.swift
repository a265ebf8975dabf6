import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe file replacement: write a temporary beside the target, fsync it, rename over the
/// target, fsync the directory. A reader sees the old file or the new one, never a torn one.
enum TrainingFiles {
    static func write(_ data: Data, to path: String) throws(TrainingError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: tmp, reason: "cannot create: \(String(cString: strerror(errno)))") }
        var ok = true
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n < 0 { if errno == EINTR { continue }; ok = false; break }
                off += n
            }
        }
        let err = String(cString: strerror(errno))
        close(fd)
        guard ok else { unlink(tmp); throw .io(path: tmp, reason: "write failed: \(err)") }
        try fsyncAndRename(tmp, to: path)
    }

    static func fsyncAndRename(_ tmp: String, to path: String) throws(TrainingError) {
        let fd = open(tmp, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: tmp, reason: "cannot reopen: \(String(cString: strerror(errno)))") }
        let synced = fsync(fd) == 0
        close(fd)
        guard synced else { throw .io(path: tmp, reason: "fsync failed: \(String(cString: strerror(errno)))") }
        guard rename(tmp, path) == 0 else { throw .io(path: path, reason: "rename failed: \(String(cString: strerror(errno)))") }
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
