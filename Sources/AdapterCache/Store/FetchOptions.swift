/// How patient and how persistent fetching is. Times in seconds.
public struct FetchOptions: Sendable, Equatable {
    public var connectTimeout: Double = 10
    /// Longest silence between two reads of one response before the attempt fails.
    public var readTimeout: Double = 30
    /// Longest one attempt (one HTTP request) may take in total.
    public var requestTimeout: Double = 600
    /// Attempts per fetch (1 = no retry). 404 and other 4xx answers are never retried.
    public var maxAttempts = 4
    /// Back-off before retry n is `initialBackoff × 2^(n-1)` (±20 % jitter), at most `maxBackoff`.
    public var initialBackoff: Double = 0.25
    public var maxBackoff: Double = 8
    /// index.json larger than this is refused.
    public var maxIndexBytes = 1 << 20

    public init() {}
}

/// Download progress: bytes so far (including a resumed prefix), the total when known, and the
/// transfer rate of this attempt.
public struct FetchProgress: Sendable, Equatable {
    public var bytes: Int64
    public var total: Int64?
    public var bytesPerSecond: Double

    public init(bytes: Int64, total: Int64?, bytesPerSecond: Double) {
        self.bytes = bytes
        self.total = total
        self.bytesPerSecond = bytesPerSecond
    }
}
