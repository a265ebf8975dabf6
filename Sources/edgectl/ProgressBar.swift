import AdapterCache
import Foundation

/// A one-line download progress bar on stderr (bytes, rate, ETA), drawn only when stderr is a
/// terminal so logs and pipes stay clean. Thread-safe: progress arrives from the fetch task.
final class ProgressBar: @unchecked Sendable {
    private let enabled: Bool
    private let label: String
    private let lock = NSLock()
    private var drawn = false

    init(label: String, enabled: Bool = isatty(STDERR_FILENO) != 0) {
        self.label = label
        self.enabled = enabled
    }

    func update(_ p: FetchProgress) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        var line = "\(label) \(humanBytes(p.bytes))"
        if let total = p.total, total > 0 {
            let frac = min(1, Double(p.bytes) / Double(total))
            let width = 24
            let filled = Int(frac * Double(width))
            line = "\(label) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(humanBytes(p.bytes))/\(humanBytes(total))"
            if p.bytesPerSecond > 0 {
                let eta = Double(total - p.bytes) / p.bytesPerSecond
                line += "  \(humanBytes(Int64(p.bytesPerSecond)))/s  ETA \(Int(eta.rounded()))s"
            }
        }
        FileHandle.standardError.write(Data("\r\u{1b}[K\(line)".utf8))
        drawn = true
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
