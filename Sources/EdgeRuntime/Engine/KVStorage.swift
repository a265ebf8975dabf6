import Foundation

/// The memory behind one `SequenceCache`: `count` floats of address space, 64-byte aligned, of which
/// only the pages written become resident.
///
/// Large reservations are private anonymous mappings with `MAP_NORESERVE`: the kernel commits a
/// page on first write, so a cache laid out for a sequence's whole context costs what its written
/// positions cover, and growing it within the reservation is free (no copy, no new allocation).
/// When the mapping is refused (strict overcommit, exhausted address space) the storage falls back
/// to an ordinary allocation, which the cache then grows by copying. Freed (unmapped) in deinit.
/// Not synchronised: the owning cache decides who writes.
final class KVStorage: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    let count: Int
    private let mappedBytes: Int

    /// `count` floats of address space; `lazy` asks for a mapping committed on write.
    init(count: Int, lazy: Bool) {
        self.count = max(count, 1)
        let bytes = self.count * MemoryLayout<Float>.size
        if lazy, bytes >= 1 << 16 {
            let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            if let p, p != MAP_FAILED {
                pointer = p.bindMemory(to: Float.self, capacity: self.count)
                mappedBytes = bytes
                return
            }
        }
        pointer = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: Float.self, capacity: self.count)
        mappedBytes = 0
    }

    /// Whether unwritten parts cost no memory (a lazily committed mapping).
    var isLazy: Bool { mappedBytes > 0 }

    deinit {
        if mappedBytes > 0 { munmap(UnsafeMutableRawPointer(pointer), mappedBytes) } else { UnsafeMutableRawPointer(pointer).deallocate() }
    }
}
