/// `NAME` (the newest version) or `NAME@VERSION`, both parts validated as store-safe names.
public struct AdapterReference: Hashable, Sendable, CustomStringConvertible {
    public let name: AdapterName
    public let version: AdapterName?

    public init(name: AdapterName, version: AdapterName? = nil) {
        self.name = name
        self.version = version
    }

    public init(_ text: String) throws(AdapterError) {
        let parts = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        if parts.count == 2 && parts[1].isEmpty { throw .badReference(text, reason: "the version after '@' is empty") }
        do {
            name = try AdapterName(parts[0])
            version = parts.count == 2 ? try AdapterName(parts[1]) : nil
        } catch {
            throw .badReference(text, reason: error.description)
        }
    }

    public var description: String { version.map { "\(name)@\($0)" } ?? name.value }
}
