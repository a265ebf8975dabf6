import Foundation

/// Whole-file writes that are either complete or absent after a crash: the bytes go to a
/// temporary file in the same directory, which is fsynced, renamed over the target, and the
/// directory fsynced so the rename itself is durable.
public enum AtomicFile {
    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws(AdapterError) {
        let dir = (path as NSString).deletingLastPathComponent
        let tmp = (dir as NSString).appendingPathComponent(".\((path as NSString).lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp")
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw .io(path: tmp, reason: String(cString: strerror(errno))) }
        var ok = true
        var reason = ""
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; ok = false; reason = errno == ENOSPC ? "the disk is full" : String(cString: strerror(errno)); return }
                done += n
            }
        }
        if ok && fsync(fd) != 0 { ok = false; reason = "fsync: \(String(cString: strerror(errno)))" }
        close(fd)
        guard ok else { unlink(tmp); throw .io(path: path, reason: reason) }
        try commit(temporary: tmp, to: path)
    }

    /// Renames a complete, fsynced temporary file over `path` and syncs the directory.
    public static func commit(temporary tmp: String, to path: String) throws(AdapterError) {
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw .io(path: path, reason: "rename: \(reason)")
        }
        syncDirectory(of: path)
    }

    public static func syncDirectory(of path: String) {
        let dfd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    public static func fsyncFile(_ path: String) throws(AdapterError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .io(path: path, reason: "fsync: \(String(cString: strerror(errno)))") }
    }

    /// Creates a directory and its parents (mode 0755) if missing.
    public static func makeDirectory(_ path: String) throws(AdapterError) {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw .io(path: path, reason: "cannot create directory: \(error.localizedDescription)")
        }
    }
}
