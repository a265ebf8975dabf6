import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's own resource use as Prometheus's standard process gauges, read from /proc so a
/// load test can watch memory and descriptor counts stay flat (leaks show up as growth).
public struct ProcessStats: Sendable, Equatable {
    public var pid: Int32
    /// Resident set size in bytes (statm's second field × page size).
    public var residentBytes: Int
    /// Virtual size in bytes.
    public var virtualBytes: Int
    /// Open file descriptors (entries of /proc/self/fd); connections count here.
    public var openFDs: Int

    public static func current() -> ProcessStats {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var resident = 0, virtual = 0
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ")
            if fields.count >= 2 {
                virtual = (Int(fields[0]) ?? 0) * page
                resident = (Int(fields[1]) ?? 0) * page
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0
        return ProcessStats(pid: getpid(), residentBytes: resident, virtualBytes: virtual, openFDs: fds)
    }

    /// Prometheus text: the `process_*` gauges client libraries conventionally export.
    public var prometheusText: String {
        """
        # HELP process_resident_memory_bytes Resident memory size in bytes.
        # TYPE process_resident_memory_bytes gauge
        process_resident_memory_bytes \(residentBytes)
        # HELP process_virtual_memory_bytes Virtual memory size in bytes.
        # TYPE process_virtual_memory_bytes gauge
        process_virtual_memory_bytes \(virtualBytes)
        # HELP process_open_fds Number of open file descriptors.
        # TYPE process_open_fds gauge
        process_open_fds \(openFDs)
        # HELP process_pid The daemon's process id.
        # TYPE process_pid gauge
        process_pid \(pid)

        """
    }
}
