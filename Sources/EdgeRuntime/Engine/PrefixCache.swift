/// KV caches of finished requests' prompts, kept so a later request sharing a prompt prefix with
/// the same adapter set skips recomputing it.
///
/// An entry is keyed by the adapter set (`AdapterMix.cacheKey`: names, versions, content digests
/// and weights) *and* the tokens: keys and values depend on the adapters (every projection carries
/// a LoRA delta), so a prefix computed under one set is never offered to another (llama.cpp bug
/// #26207 reused KV across LoRA adapters). Entries hold only positions computed by prompt chunks
/// (the tiled f32 GEMM path), never decode positions, so a hit gives the very numbers a fresh
/// prefill would.
///
/// Bounded in bytes and entries, least recently used evicted first; the scheduler also evicts from
/// here before it lets a KV budget turn a request away. Concurrency: engine thread only (no lock).
final class PrefixCache {
    struct Entry {
        let key: String
        let tokens: [Int32]
        let cache: SequenceCache
        var lastUse: UInt64
    }

    /// Bytes and entries this cache may hold (0 bytes = disabled).
    var byteLimit: Int
    let entryLimit: Int
    private(set) var entries: [Entry] = []
    private(set) var bytes = 0
    private var clock: UInt64 = 0

    init(byteLimit: Int, entryLimit: Int = 64) {
        self.byteLimit = max(0, byteLimit)
        self.entryLimit = max(1, entryLimit)
    }

    var isEnabled: Bool { byteLimit > 0 }

    /// The entry with the longest common prefix with `prompt` among those with `key`, and that
    /// length (0 when nothing matches).
    func lookup(key: String, prompt: [Int32]) -> (cache: SequenceCache, length: Int)? {
        var best: Int?
        var bestLength = 0
        for (i, e) in entries.enumerated() where e.key == key {
            let n = Self.commonPrefix(e.tokens, prompt)
            if n > bestLength { best = i; bestLength = n }
        }
        guard let best else { return nil }
        clock += 1
        entries[best].lastUse = clock
        return (entries[best].cache, bestLength)
    }

    /// Keeps `cache` (its first `tokens.count` positions hold `tokens` under `key`). An entry whose
    /// tokens the new one extends is replaced; one that already covers these tokens wins instead.
    /// Returns false (and keeps nothing) when the cache is disabled or the entry alone is too big.
    @discardableResult
    func insert(key: String, tokens: [Int32], cache: SequenceCache) -> Bool {
        guard isEnabled, !tokens.isEmpty, cache.byteCount <= byteLimit, cache.length >= tokens.count else { return false }
        clock += 1
        if let i = entries.firstIndex(where: { $0.key == key && Self.commonPrefix($0.tokens, tokens) == tokens.count }) {
            entries[i].lastUse = clock
            return false
        }
        entries.removeAll { e in
            let covered = e.key == key && Self.commonPrefix(e.tokens, tokens) == e.tokens.count
            if covered { bytes -= e.cache.byteCount }
            return covered
        }
        entries.append(Entry(key: key, tokens: tokens, cache: cache, lastUse: clock))
        bytes += cache.byteCount
        while bytes > byteLimit || entries.count > entryLimit { _ = evictOne() }
        return true
    }

    /// Drops the least recently used entry; returns the bytes freed (0 when empty).
    func evictOne() -> Int {
        guard let i = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) else { return 0 }
        let freed = entries[i].cache.byteCount
        entries.remove(at: i)
        bytes -= freed
        return freed
    }

    func removeAll() {
        entries.removeAll()
        bytes = 0
    }

    static func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
        let n = min(a.count, b.count)
        var i = 0
        while i < n && a[i] == b[i] { i += 1 }
        return i
    }
}
