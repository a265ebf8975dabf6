import Foundation

/// The memory behind one `SequenceCache`: `byteCount` bytes of address space, 64-byte aligned, of
/// which only the pages written become resident.
///
/// Large reservations are private anonymous mappings with `MAP_NORESERVE`: the kernel commits a
/// page on first write, so a cache laid out for a sequence's whole context costs what its written
/// positions cover, and growing it within the reservation is free (no copy, no new allocation).
/// When the mapping is refused (strict overcommit, exhausted address space) the storage falls back
/// to an ordinary allocation, which the cache then grows by copying. Freed (unmapped) in deinit.
/// Not synchronised: the owning cache decides who writes.
final class KVStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    private let mapped: Bool

    /// `byteCount` bytes of address space; `lazy` asks for a mapping committed on write.
    init(byteCount: Int, lazy: Bool) {
        self.byteCount = max(byteCount, 64)
        if lazy, self.byteCount >= 1 << 16 {
            let p = mmap(nil, self.byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if let p, p != MAP_FAILED {
                base = p
                mapped = true
                return
            }
        }
        base = UnsafeMutableRawPointer.allocate(byteCount: self.byteCount, alignment: 64)
        mapped = false
    }

    /// Whether unwritten parts cost no memory (a lazily committed mapping).
    var isLazy: Bool { mapped }

    deinit {
        if mapped { munmap(base, byteCount) } else { base.deallocate() }
    }
}

/// Address ranges of finished caches, kept with their written pages resident for the next caches
/// of the same model.
///
/// A fresh range costs a page fault the first time each 4 KiB of it is written: for 8 SmolLM2
/// streams that is ~90 faults a decode step, each zeroing a page on the engine thread while the
/// kernels' other threads wait (in a VM the host may have to back the page too: clear_page alone was
/// 3% of a long-context daemon profile). A cache taking a recycled range writes over pages that are
/// already there. Bounded: at most `maxEntries` ranges and `maxBytes` of their written pages are
/// kept (what is over is handed back to the kernel), and a taker's pages past its capacity are
/// handed back too, so a cache's resident memory stays within the bytes it is charged for.
final class KVStoragePool: @unchecked Sendable {
    private struct Entry {
        let storage: KVStorage
        let regionBytes: Int   // bytes from one layer's keys (or values) to the next region
        let writtenBytes: Int  // bytes written at the start of each region: the resident ones
        let regions: Int
        var resident: Int { writtenBytes * regions }
    }

    let maxEntries: Int
    let maxBytes: Int
    private let lock = NSLock()
    private var entries: [Entry] = []
    private var residentBytes = 0

    init(maxEntries: Int = 16, maxBytes: Int = 64 << 20) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    /// Resident bytes held for reuse now.
    var heldBytes: Int { lock.withLock { residentBytes } }

    /// A range of at least `bytes` (the smallest kept one) for a taker that lays `regions` regions of
    /// rows of `rowBytes` over all of it, its pages past `keepRows` rows of each region handed back; nil
    /// when none is large enough.
    func take(bytes: Int, regions: Int, rowBytes: Int, keepRows: Int) -> KVStorage? {
        let entry: Entry? = lock.withLock {
            guard let i = entries.indices.filter({ entries[$0].storage.byteCount >= bytes && entries[$0].regions == regions })
                .min(by: { entries[$0].storage.byteCount < entries[$1].storage.byteCount }) else { return nil }
            residentBytes -= entries[i].resident
            return entries.remove(at: i)
        }
        guard let entry else { return nil }
        // Pages are kept where the taker's regions start as the last user's did (the same row size);
        // past its capacity they are handed back.
        let regionBytes = entry.storage.byteCount / regions / rowBytes * rowBytes
        if regionBytes != entry.regionBytes {
            Self.release(entry.storage, regions: regions, regionBytes: entry.regionBytes, from: 0, to: entry.writtenBytes)
        } else if entry.writtenBytes > keepRows * rowBytes {
            Self.release(entry.storage, regions: regions, regionBytes: regionBytes, from: keepRows * rowBytes, to: entry.writtenBytes)
        }
        return entry.storage
    }

    /// Keeps a lazily mapped range whose `regions` regions (`regionBytes` apart) have their first
    /// `writtenBytes` written, trimmed to what the bounds allow; anything else is unmapped.
    func give(_ storage: KVStorage, regions: Int, regionBytes: Int, writtenBytes: Int) {
        guard storage.isLazy, regions > 0 else { return }
        let kept: Int? = lock.withLock {
            guard entries.count < maxEntries else { return nil }
            let room = max(0, maxBytes - residentBytes) / regions
            let keep = min(writtenBytes, room)
            entries.append(Entry(storage: storage, regionBytes: regionBytes, writtenBytes: keep, regions: regions))
            residentBytes += keep * regions
            return keep
        }
        if let kept, kept < writtenBytes {
            Self.release(storage, regions: regions, regionBytes: regionBytes, from: kept, to: writtenBytes)
        }
    }

    /// Hands the whole pages of [from, to) of every region back to the kernel (they read as zero after).
    private static func release(_ storage: KVStorage, regions: Int, regionBytes: Int, from: Int, to: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        for r in 0..<regions {
            let start = (r * regionBytes + from + page - 1) / page * page, end = min(storage.byteCount, r * regionBytes + to)
            if end > start { madvise(storage.base + start, end - start, MADV_DONTNEED) }
        }
    }
}
