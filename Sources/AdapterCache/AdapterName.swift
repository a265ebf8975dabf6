/// A validated adapter name: `[a-z0-9][a-z0-9._-]*`, at most 64 characters, never `.`/`..`-like
/// path tricks. Names become directory and file names in the store and the cache, so anything that
/// could escape a directory is refused here, once, at the boundary.
public struct AdapterName: Hashable, Sendable, CustomStringConvertible {
    public let value: String
    public static let maxLength = 64

    public init(_ raw: String) throws(AdapterNameError) {
        guard !raw.isEmpty else { throw .empty }
        guard raw.utf8.count <= Self.maxLength else { throw .tooLong(raw) }
        let bytes = Array(raw.utf8)
        func isLowerAlnum(_ b: UInt8) -> Bool { (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) }
        guard isLowerAlnum(bytes[0]) else { throw .invalid(raw) }
        for b in bytes.dropFirst() where !(isLowerAlnum(b) || b == 0x2e || b == 0x5f || b == 0x2d) {
            throw .invalid(raw)
        }
        guard !raw.contains("..") else { throw .invalid(raw) }
        value = raw
    }

    public var description: String { value }
}

public enum AdapterNameError: Error, Equatable, CustomStringConvertible {
    case empty
    case tooLong(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .empty: "adapter name is empty"
        case .tooLong(let n): "adapter name '\(n.prefix(80))' is longer than \(AdapterName.maxLength) characters"
        case .invalid(let n): "adapter name '\(n.prefix(80))' is invalid: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
        }
    }
}
