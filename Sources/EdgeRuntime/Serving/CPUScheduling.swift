import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How Linux schedules the daemon's threads (`[model] cpu_scheduling`).
///
/// Each streamed token wakes a request's task thread and an event-loop thread. Under the kernel's
/// default policy a woken thread preempts a running one at once, so on a box whose cores all run
/// the compute threads every token interrupts a kernel task mid-way, and the other compute thread
/// waits for it at the next job boundary. `SCHED_BATCH` threads do not preempt on wakeup: the
/// serving threads run when a compute thread's time slice ends or it waits, a few hundred
/// microseconds later. Measured with 8 streams on 2 cores: streamed decode was 6–8% below the
/// same requests unstreamed under the default policy, 1–3% under batch.
public enum CPUScheduling: String, Sendable, CaseIterable {
    /// SCHED_BATCH (the default).
    case batch
    /// SCHED_OTHER, the kernel's default: serving threads preempt compute threads when they wake.
    case other

    /// `SCHED_BATCH` is only visible to C with _GNU_SOURCE: the value is fixed by the Linux ABI.
    private static let schedBatch: Int32 = 3

    /// The Linux policy value (as in /proc/PID/task/TID/stat).
    public var policy: Int32 { self == .batch ? Self.schedBatch : Int32(SCHED_OTHER) }

    /// Sets the policy of every thread of this process; threads made afterwards inherit it from the
    /// thread that makes them. Returns the threads it could not set, each with its errno (threads that
    /// ended meanwhile are not failures).
    @discardableResult
    public func apply() -> [(tid: Int32, errno: Int32)] {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return [] }
        var failed: [(tid: Int32, errno: Int32)] = []
        var param = sched_param()
        param.sched_priority = 0
        for name in tasks {
            guard let tid = Int32(name) else { continue }
            if sched_setscheduler(tid, policy, &param) != 0 && errno != ESRCH { failed.append((tid, errno)) }
        }
        return failed
    }
}
