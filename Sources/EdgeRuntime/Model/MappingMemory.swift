import Foundation

/// Memory accounting of one mapping, from `/proc/<pid>/smaps` (kB, as the kernel reports them). Used to
/// show that the model's weights stay in the shared page cache: `privateDirty` ~0, `sharedClean`
/// growing when other processes map the same file.
public struct MappingMemory: Sendable, Equatable {
    public var rssKB = 0
    public var sharedCleanKB = 0
    public var privateCleanKB = 0
    public var privateDirtyKB = 0
    public var anonymousKB = 0

    public init() {}

    /// The mapping of process `pid` ("self" for this one) that contains `address`, or nil.
    public static func of(address: UnsafeRawPointer, pid: String = "self") -> MappingMemory? {
        guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/smaps") else { return nil }
        defer { try? handle.close() }
        // procfs files report size 0: read to the end rather than by size.
        let text = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        let target = UInt(bitPattern: address)
        var found: MappingMemory?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = parts.first else { continue }
            if !first.hasSuffix(":"), first.contains("-"), parts.count >= 5 {
                if found != nil { break }
                let bounds = first.split(separator: "-").compactMap { UInt($0, radix: 16) }
                if bounds.count == 2, bounds[0] <= target, target < bounds[1] { found = MappingMemory() }
                continue
            }
            guard found != nil, parts.count >= 2, let value = Int(parts[1]) else { continue }
            switch first {
            case "Rss:": found!.rssKB = value
            case "Shared_Clean:": found!.sharedCleanKB = value
            case "Private_Clean:": found!.privateCleanKB = value
            case "Private_Dirty:": found!.privateDirtyKB = value
            case "Anonymous:": found!.anonymousKB = value
            default: break
            }
        }
        return found
    }
}
