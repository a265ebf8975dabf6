/// A running request's hold on a decoded adapter: while any lease on it is outstanding the adapter
/// stays in RAM and on disk. Give it back with `AdapterCache.release(_:)` when the request ends;
/// releasing twice is harmless.
public final class AdapterLease: Sendable, CustomStringConvertible {
    public let adapter: LoRAAdapter
    public let name: String
    public let version: String
    public let sha256: String
    let id: UInt64

    init(adapter: LoRAAdapter, name: String, version: String, sha256: String, id: UInt64) {
        self.adapter = adapter
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.id = id
    }

    public var description: String { "\(name)@\(version)" }
}
