import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The on-disk layout of one job, `<state>/finetune/jobs/<id>/`: job.json, train.jsonl,
/// validation.jsonl, events.jsonl (one event per line, appended), checkpoint.safetensors, and the
/// trained adapter. Whole files are written temp → fsync → rename so a crash leaves the old or the
/// new version, never a torn one.
struct FineTuningJobFiles: Sendable {
    let directory: String

    var record: String { directory + "/job.json" }
    var train: String { directory + "/train.jsonl" }
    var validation: String { directory + "/validation.jsonl" }
    var events: String { directory + "/events.jsonl" }
    var checkpoint: String { directory + "/checkpoint.safetensors" }
    /// The PEFT directory of the trained adapter (promoted or rejected) — kept with the job.
    var adapter: String { directory + "/adapter" }
    var artifact: String { directory + "/adapter.tar.zst" }

    static func writeAtomically(_ data: Data, to path: String) throws(FineTuningError) {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        var ok = true
        data.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + off, raw.count - off)
                if n <= 0 { if errno == EINTR { continue }; ok = false; break }
                off += n
            }
        }
        let why = String(cString: strerror(errno))
        if ok { ok = fsync(fd) == 0 }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw .io(path: path, reason: why)
        }
        syncDirectory(of: path)
    }

    /// Makes a rename durable: fsync of the containing directory.
    static func syncDirectory(of path: String) {
        let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    func saveRecord(_ r: FineTuningJobRecord) throws(FineTuningError) {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data: Data
        do { data = try enc.encode(r) } catch { throw .io(path: record, reason: "cannot encode the job: \(error)") }
        try Self.writeAtomically(data, to: record)
    }

    func loadRecord() throws(FineTuningError) -> FineTuningJobRecord {
        guard let data = FileManager.default.contents(atPath: record) else { throw .io(path: record, reason: "missing or unreadable") }
        do { return try JSONDecoder().decode(FineTuningJobRecord.self, from: data) } catch {
            throw .corruptJob(path: record, reason: "\(error)")
        }
    }
}

/// `events.jsonl` of one job. Appended from the training thread (per-step loss) and the manager
/// actor, so writes go through a lock; each event is one `write` of one line (O_APPEND), so a crash
/// can at worst lose the last line, which `read` ignores if torn.
final class FineTuningEventLog: @unchecked Sendable {
    let path: String
    private let lock = NSLock()
    private var next: Int

    init(path: String) {
        self.path = path
        next = Self.readAll(path: path).count + 1
    }

    /// Appends an event and returns it; ids are `<job id>-ev<n>`, increasing.
    @discardableResult
    func append(jobID: String, level: String = "info", message: String, type: String = "message", data: [String: Double]? = nil) -> FineTuningEvent {
        lock.lock()
        defer { lock.unlock() }
        let event = FineTuningEvent(id: "\(jobID)-ev\(next)", createdAt: Int(Date().timeIntervalSince1970), level: level,
                                    message: message, type: type, data: data)
        next += 1
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        guard var line = try? enc.encode(event) else { return event }
        line.append(0x0A)
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        if fd >= 0 {
            line.withUnsafeBytes { _ = Glibc.write(fd, $0.baseAddress!, $0.count) }
            close(fd)
        }
        return event
    }

    /// Oldest first.
    static func readAll(path: String) -> [FineTuningEvent] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let dec = JSONDecoder()
        return data.split(separator: 0x0A).compactMap { try? dec.decode(FineTuningEvent.self, from: Data($0)) }
    }

    func readAll() -> [FineTuningEvent] {
        lock.lock()
        defer { lock.unlock() }
        return Self.readAll(path: path)
    }
}
