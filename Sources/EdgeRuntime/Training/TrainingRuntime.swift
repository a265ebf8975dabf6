import Kernels
import Foundation

/// Process-wide knobs of the trainer: thread count of the matrix products, and measurements.
public enum TrainingRuntime {
    /// Threads for the trainer's products: the NF4 kernels' pool, which also runs the OpenBLAS
    /// products (see `Blas`).
    public static func setThreads(_ n: Int) {
        ek_set_threads(Int32(n))
    }

    /// Progress output appears line by line even when redirected to a file.
    public static func lineBufferStdout() { et_stdout_line_buffered() }

    /// Peak resident set size of this process (VmHWM), in bytes; 0 if unknown.
    public static func peakRSSBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }

    /// User + system CPU seconds of this process so far (wall time lies on a loaded machine).
    public static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
