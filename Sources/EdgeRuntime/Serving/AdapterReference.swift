import AdapterCache

/// `NAME` or `NAME@VERSION`, as users write it in `model`, `adapters[].name` and on the command
/// line. `version == nil` means the newest version the cache or the store knows.
public struct AdapterReference: Sendable, Hashable, CustomStringConvertible {
    public var name: AdapterName
    public var version: String?

    public static let maxVersionLength = 64

    public init(name: AdapterName, version: String? = nil) {
        self.name = name
        self.version = version
    }

    /// Parses `NAME[@VERSION]`. Versions are `[A-Za-z0-9._-]`, at most 64 characters, never `..`:
    /// like names they become file names in the store and the cache.
    public init(parsing raw: String) throws(APIError) {
        let parts = raw.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        do {
            name = try AdapterName(String(parts[0]))
        } catch {
            throw APIError.badRequest("\(error.description)", param: "model", code: "invalid_adapter_name")
        }
        if parts.count == 2 {
            let v = String(parts[1])
            let ok = !v.isEmpty && v.utf8.count <= Self.maxVersionLength && !v.contains("..")
                && v.utf8.allSatisfy { b in
                    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)
                        || b == 0x2e || b == 0x5f || b == 0x2d
                }
            guard ok else {
                throw APIError.badRequest(
                    "adapter version '\(v.prefix(80))' in '\(raw.prefix(140))' is invalid: use letters, digits, '.', '_' and '-' (at most \(Self.maxVersionLength))",
                    param: "model", code: "invalid_adapter_version")
            }
            version = v
        } else {
            version = nil
        }
    }

    public var description: String { version.map { "\(name.value)@\($0)" } ?? name.value }
}
