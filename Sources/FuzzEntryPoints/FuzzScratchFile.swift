import Foundation

/// One scratch file per process for parsers that only read from a path (GGUF maps its file). It
/// lives in /dev/shm when that exists so each rewrite stays in RAM, and is removed at exit.
final class FuzzScratchFile: @unchecked Sendable {
    static let shared = FuzzScratchFile()
    let path: String

    private init() {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        path = "\(dir)/edge-fuzz-\(getpid()).bin"
        atexit { unlink(FuzzScratchFile.shared.path) }
    }

    /// Replaces the file's contents with `data` and returns its path. Single-threaded use only
    /// (libFuzzer and the replay test call one input at a time).
    func write(_ data: Data) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create the fuzz scratch file \(path): errno \(errno)")
        defer { close(fd) }
        data.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Foundation.write(fd, buf.baseAddress! + done, buf.count - done)
                precondition(n > 0, "cannot write the fuzz scratch file \(path): errno \(errno)")
                done += n
            }
        }
        return path
    }
}
