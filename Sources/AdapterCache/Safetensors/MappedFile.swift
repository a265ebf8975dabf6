import Foundation

/// A whole file mapped read-only and shared (`MAP_SHARED`), so every process that maps the same
/// file shares its page cache and no private copy of the bytes is ever made.
///
/// Immutable after init; safe to share across threads.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let count: Int

    public init(path: String) throws(SafetensorsError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .io(path: path, reason: "not a regular file") }
        count = Int(st.st_size)
        if count == 0 {
            // mmap refuses length 0; an empty file still has to be readable (and then rejected by format checks).
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 16))
            isMapped = false
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw .io(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
        isMapped = true
    }

    private let isMapped: Bool

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Hints the kernel to read ahead (the model is about to be streamed through once).
    public func adviseWillNeed() {
        if isMapped { madvise(UnsafeMutableRawPointer(mutating: base), count, MADV_WILLNEED) }
    }

    deinit {
        if isMapped { munmap(UnsafeMutableRawPointer(mutating: base), count) } else { UnsafeMutableRawPointer(mutating: base).deallocate() }
    }
}
