import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// When fine-tuning may run (DESIGN.md §7): only after `idleAfter` seconds without a request,
/// optionally inside a daily time window, on AC power, and under load / CPU-pressure limits.
/// A pure decision over a `SystemSnapshot`, so it is testable; `SystemSnapshot.current` reads the
/// machine (/proc/loadavg, /proc/pressure/cpu, /sys/class/power_supply).
public struct IdlePolicy: Codable, Sendable, Equatable {
    /// Seconds without any inference request before training may start.
    public var idleAfter: Double = 300
    /// Daily window in local minutes since midnight [start, end); may wrap midnight. nil: any time.
    public var windowStartMinute: Int? = nil
    public var windowEndMinute: Int? = nil
    public var requireACPower = false
    /// 1-minute load average per core above which training waits. nil: no limit.
    public var maxLoadPerCore: Double? = 1.5
    /// /proc/pressure/cpu "some avg10" (percent) above which training waits. nil: no limit.
    public var maxCPUPressure: Double? = 40

    public init() {}

    public enum Decision: Equatable, Sendable {
        case run
        case wait(String)
    }

    /// Parses "HH:MM-HH:MM".
    public mutating func setWindow(_ text: String) throws(TrainingError) {
        let parts = text.split(separator: "-").map(String.init)
        func minute(_ s: String) -> Int? {
            let hm = s.split(separator: ":").compactMap { Int($0) }
            guard hm.count == 2, (0..<24).contains(hm[0]), (0..<60).contains(hm[1]) else { return nil }
            return hm[0] * 60 + hm[1]
        }
        guard parts.count == 2, let a = minute(parts[0]), let b = minute(parts[1]), a != b else {
            throw .invalidHyperparameter(name: "finetune.window", reason: "\"\(text)\" is not HH:MM-HH:MM")
        }
        windowStartMinute = a; windowEndMinute = b
    }

    public func decide(_ s: SystemSnapshot) -> Decision {
        if s.secondsSinceLastRequest < idleAfter {
            return .wait("a request arrived \(Int(s.secondsSinceLastRequest)) s ago (idle_after \(Int(idleAfter)) s)")
        }
        if let a = windowStartMinute, let b = windowEndMinute {
            let m = s.localMinuteOfDay
            let inside = a < b ? (m >= a && m < b) : (m >= a || m < b)
            if !inside { return .wait("outside the training window") }
        }
        if requireACPower, s.onACPower == false { return .wait("running on battery") }
        if let limit = maxLoadPerCore, s.loadAverage1 / Double(max(1, s.cores)) > limit {
            return .wait(String(format: "load average %.2f is above the limit", s.loadAverage1))
        }
        if let limit = maxCPUPressure, let p = s.cpuPressureAvg10, p > limit {
            return .wait(String(format: "CPU pressure %.1f%% is above the limit", p))
        }
        return .run
    }
}

/// What the idle policy looks at.
public struct SystemSnapshot: Sendable, Equatable {
    public var secondsSinceLastRequest: Double
    public var localMinuteOfDay: Int
    public var onACPower: Bool?       // nil: no power-supply information (e.g. a VM) — treated as mains
    public var loadAverage1: Double
    public var cpuPressureAvg10: Double?
    public var cores: Int

    public init(secondsSinceLastRequest: Double, localMinuteOfDay: Int, onACPower: Bool?, loadAverage1: Double,
                cpuPressureAvg10: Double?, cores: Int) {
        self.secondsSinceLastRequest = secondsSinceLastRequest; self.localMinuteOfDay = localMinuteOfDay
        self.onACPower = onACPower; self.loadAverage1 = loadAverage1; self.cpuPressureAvg10 = cpuPressureAvg10; self.cores = cores
    }

    public static func current(secondsSinceLastRequest: Double, root: String = "") -> SystemSnapshot {
        let comps = Calendar.current.dateComponents([.hour, .minute], from: Date())
        let load = (try? String(contentsOfFile: root + "/proc/loadavg", encoding: .utf8))?
            .split(separator: " ").first.flatMap { Double($0) } ?? 0
        return SystemSnapshot(secondsSinceLastRequest: secondsSinceLastRequest,
                              localMinuteOfDay: (comps.hour ?? 0) * 60 + (comps.minute ?? 0),
                              onACPower: acPower(root: root), loadAverage1: load,
                              cpuPressureAvg10: cpuPressure(root: root),
                              cores: ProcessInfo.processInfo.activeProcessorCount)
    }

    /// "some avg10=1.23 …" from /proc/pressure/cpu.
    static func cpuPressure(root: String) -> Double? {
        guard let text = try? String(contentsOfFile: root + "/proc/pressure/cpu", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("some") {
            for field in line.split(separator: " ") where field.hasPrefix("avg10=") { return Double(field.dropFirst(6)) }
        }
        return nil
    }

    /// true if any Mains/USB supply is online, false if only batteries are present, nil if none known.
    static func acPower(root: String) -> Bool? {
        let dir = root + "/sys/class/power_supply"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir), !names.isEmpty else { return nil }
        var sawMains = false, sawBattery = false
        for n in names {
            let type = (try? String(contentsOfFile: "\(dir)/\(n)/type", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if type == "Battery" { sawBattery = true; continue }
            if type == "Mains" || type == "USB" || type == "USB_C" {
                sawMains = true
                if (try? String(contentsOfFile: "\(dir)/\(n)/online", encoding: .utf8))?.hasPrefix("1") == true { return true }
            }
        }
        if sawMains || sawBattery { return false }
        return nil
    }
}

/// Lowers the calling thread to SCHED_IDLE (falls back to nice 19), so inference threads always win
/// the CPU. Linux applies both per thread.
public enum TrainingThreadPriority {
    @discardableResult
    public static func lowerCurrentThread() -> Bool {
        var param = sched_param()
        param.sched_priority = 0
        // SCHED_IDLE = 5 on Linux.
        if sched_setscheduler(0, 5, &param) == 0 { return true }
        return setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(0), 19) == 0
    }
}
