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
