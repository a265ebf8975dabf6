/// Finds OpenAI `stop` strings in streamed text and decides how much text is safe to release.
///
/// Text that could still turn into a stop string (a suffix that is a prefix of one) is held back
/// until the next delta settles it. Matching runs on UTF-8 bytes; because both the text and the
/// stop strings are valid UTF-8, every match and every held-back suffix starts on a scalar
/// boundary, so released text is always valid. Not thread-safe: one per request.
public struct StopSequenceMatcher: Sendable {
    private let stops: [[UInt8]]
    /// Text received but not released yet.
    private var pending: [UInt8] = []
    /// Bytes released so far (offset of `pending[0]` in the whole output).
    public private(set) var releasedBytes = 0
    public private(set) var stopped = false

    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
    }

    public struct Step: Sendable, Equatable {
        /// Text safe to send now.
        public var text: String
        /// A stop string matched: `text` ends right before it; stop generating.
        public var stopped: Bool
    }

    public mutating func append(_ delta: String) -> Step {
        guard !stopped else { return Step(text: "", stopped: true) }
        pending.append(contentsOf: delta.utf8)
        guard !stops.isEmpty else { return release(pending.count, stop: false) }
        // Earliest match wins (what a user reading the text would see first).
        var earliest: Int?
        for s in stops {
            if let at = Self.find(s, in: pending), earliest.map({ at < $0 }) ?? true { earliest = at }
        }
        if let at = earliest {
            return release(at, stop: true)
        }
        var keep = 0
        for s in stops {
            let maxLen = min(s.count - 1, pending.count)
            var len = maxLen
            while len > keep {
                if pending[(pending.count - len)...].elementsEqual(s[0..<len]) { keep = len; break }
                len -= 1
            }
        }
        return release(pending.count - keep, stop: false)
    }

    /// At the end of generation: whatever is still held back is real text.
    public mutating func flush() -> String {
        guard !stopped else { return "" }
        return release(pending.count, stop: false).text
    }

    private mutating func release(_ count: Int, stop: Bool) -> Step {
        let out = String(decoding: pending[0..<count], as: UTF8.self)
        releasedBytes += count
        if stop {
            stopped = true
            pending.removeAll()
        } else {
            pending.removeFirst(count)
        }
        return Step(text: out, stopped: stop)
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard needle.count <= hay.count else { return nil }
        let first = needle[0]
        var i = 0
        let last = hay.count - needle.count
        while i <= last {
            if hay[i] == first && hay[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
