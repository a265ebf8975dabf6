/// Recency and byte accounting for one cache tier. Every insert, touch and removal updates the
/// byte total; `victims` names the least recently used entries, skipping protected ones, whose
/// removal would bring the tier within its budget. Entries are few (adapters, not tokens), so a
/// scan sorted by last use is simpler than a linked list and just as fast at this size.
///
/// A value type without internal synchronisation: the owning actor serialises access.
public struct LRUTracker<Key: Hashable & Sendable>: Sendable {
    public struct Entry: Sendable {
        public var bytes: Int64
        /// Monotonic use counter; larger is more recent.
        public var tick: UInt64
    }

    public private(set) var entries: [Key: Entry] = [:]
    public private(set) var totalBytes: Int64 = 0
    private var clock: UInt64 = 0

    public init() {}

    public var count: Int { entries.count }

    public func contains(_ key: Key) -> Bool { entries[key] != nil }

    /// Adds or replaces `key` as the most recently used entry.
    public mutating func insert(_ key: Key, bytes: Int64) {
        if let old = entries[key] { totalBytes -= old.bytes }
        clock += 1
        entries[key] = Entry(bytes: bytes, tick: clock)
        totalBytes += bytes
    }

    /// Adds `key` with a recency restored from disk (older than anything touched since start).
    public mutating func restore(_ key: Key, bytes: Int64, order: UInt64) {
        if let old = entries[key] { totalBytes -= old.bytes }
        entries[key] = Entry(bytes: bytes, tick: order)
        totalBytes += bytes
        clock = max(clock, order)
    }

    public mutating func touch(_ key: Key) {
        guard entries[key] != nil else { return }
        clock += 1
        entries[key]!.tick = clock
    }

    @discardableResult
    public mutating func remove(_ key: Key) -> Int64? {
        guard let e = entries.removeValue(forKey: key) else { return nil }
        totalBytes -= e.bytes
        return e.bytes
    }

    /// Keys from least to most recently used.
    public var orderedKeys: [Key] { entries.sorted { $0.value.tick < $1.value.tick }.map(\.key) }

    /// The least recently used unprotected keys whose removal leaves room for `incoming` more bytes
    /// under `budget`, or nil if even removing every unprotected entry would not.
    public func victims(toFit incoming: Int64, budget: Int64, isProtected: (Key) -> Bool) -> [Key]? {
        var excess = totalBytes + incoming - budget
        if excess <= 0 { return [] }
        var chosen: [Key] = []
        for key in orderedKeys where !isProtected(key) {
            chosen.append(key)
            excess -= entries[key]!.bytes
            if excess <= 0 { return chosen }
        }
        return nil
    }
}
