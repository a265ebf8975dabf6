import CSystemd
import Foundation
import Logging

/// sd_notify for Type=notify: READY=1, STATUS=…, WATCHDOG=1, RELOADING=1, STOPPING=1. A no-op when
/// NOTIFY_SOCKET is unset (started by hand), so callers never need to check.
/// Concurrency contract: stateless; sd_notify is thread-safe.
public struct SystemdNotifier: Sendable {
    public init() {}

    public var isActive: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    /// Half of WATCHDOG_USEC (systemd's advice), when the watchdog is enabled for this process.
    public var watchdogInterval: Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec / 2))
    }

    @discardableResult
    public func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    public func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    public func status(_ text: String) { notify("STATUS=\(text)") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func stopping(status: String) { notify("STOPPING=1\nSTATUS=\(status)") }

    /// RELOADING=1 with the monotonic timestamp systemd ≥ 253 wants for Type=notify-reload.
    public func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        notify("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }

    /// "serving; 3 adapters in RAM; 2 running" (or why it is not serving).
    public static func statusLine(model: ModelInfo?, hint: String, status: BackendStatus, draining: Bool) -> String {
        if draining { return "draining; \(status.running) running" }
        guard model != nil else { return "no model: \(hint)" }
        var s = "serving; \(status.adaptersInRAM.count) adapter\(status.adaptersInRAM.count == 1 ? "" : "s") in RAM; \(status.running) running"
        if status.queued > 0 { s += "; \(status.queued) queued" }
        return s
    }
}
