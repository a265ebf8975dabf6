/// A snapshot of the cache's counters for the daemon's /metrics. Counters only grow; byte and entry
/// figures are current values. Times are seconds.
public struct AdapterCacheMetrics: Sendable, Codable, Equatable {
    public struct Timing: Sendable, Codable, Equatable {
        public var count: Int = 0
        public var totalSeconds: Double = 0
        public var maxSeconds: Double = 0

        mutating func record(_ seconds: Double) {
            count += 1
            totalSeconds += seconds
            maxSeconds = max(maxSeconds, seconds)
        }
    }

    public var ramHits = 0
    public var ramMisses = 0
    public var diskHits = 0
    public var diskMisses = 0
    public var ramBytes: Int64 = 0
    public var diskBytes: Int64 = 0
    public var ramEntries = 0
    public var diskEntries = 0
    public var ramEvictions = 0
    public var diskEvictions = 0
    public var fetchFailures = 0
    public var verifyFailures = 0
    public var fetchedBytes: Int64 = 0
    /// Files dropped at start-up: partial downloads and blobs that failed their digest.
    public var droppedAtStartup = 0
    public var activeLeases = 0
    public var fetch = Timing()
    public var verify = Timing()
    public var decode = Timing()
}
