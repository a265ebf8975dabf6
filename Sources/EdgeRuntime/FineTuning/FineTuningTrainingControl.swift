import Foundation

/// Flags shared between the manager actor and the training thread of the running job: the thread
/// polls them between optimiser steps. Lock-protected; set from any task.
final class FineTuningTrainingControl: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false
    private var stopped = false

    func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    /// Pause at the next step (daemon shutdown).
    func stop() { lock.lock(); stopped = true; lock.unlock() }
    var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }
    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }
}
