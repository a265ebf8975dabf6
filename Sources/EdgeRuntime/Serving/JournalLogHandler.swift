import Foundation
import Logging

/// swift-log → journald through stderr: when systemd connects stderr to the journal
/// (JOURNAL_STREAM is set), each line starts with a `<N>` syslog priority that journald turns into
/// the entry's PRIORITY; metadata follows as dotted `key=value` pairs
/// (`request.id=… adapter.name=…`). Started by hand, lines get a timestamp and level name instead.
///
/// stderr rather than sd_journal_sendv: no extra fd, ordering with any other stderr output kept,
/// and the same output works under `journalctl -u` and in a terminal.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let label: String
    let journal: Bool

    public init(label: String, level: Logger.Level = .info, journal: Bool = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil) {
        self.label = label
        self.logLevel = level
        self.journal = journal
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// syslog priorities (sd-daemon.h's SD_ERR etc.).
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    public func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        var text = journal ? "<\(Self.priority(level))>" : "\(Self.timestamp()) \(level.rawValue.uppercased()) "
        // One journal entry per line: newlines inside a message would split it.
        text += message.description.replacingOccurrences(of: "\n", with: " ⏎ ")
        for (k, v) in all.sorted(by: { $0.key < $1.key }) {
            let value = "\(v)"
            let quoted = value.contains(" ") || value.isEmpty ? "\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\"" : value
            text += " \(k)=\(quoted.replacingOccurrences(of: "\n", with: " "))"
        }
        text += "\n"
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func timestamp() -> String {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        var tmv = tm()
        var secs = t.tv_sec
        gmtime_r(&secs, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec, Int(t.tv_nsec / 1_000_000))
    }
}
