import Foundation

/// Where the remote store lives: an `http(s)://` base URL, or a directory given as `file://PATH`
/// or a plain path. Layout under it: `{name}/index.json` and `{name}/{version}.tar.zst`.
public enum StoreLocation: Sendable, Equatable, CustomStringConvertible {
    case http(String)
    case directory(String)

    public init(_ text: String) throws(AdapterError) {
        let t = text.trimmingCharacters(in: .whitespaces)
        guard !t.isEmpty else { throw .badConfig(path: "store", key: "url", reason: "is empty") }
        let lower = t.lowercased()
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            guard URL(string: t)?.host != nil else { throw .badConfig(path: "store", key: t, reason: "is not a valid URL") }
            var base = t
            while base.hasSuffix("/") { base.removeLast() }
            self = .http(base)
        } else if lower.hasPrefix("file://") {
            guard let path = URL(string: t)?.path, !path.isEmpty else { throw .badConfig(path: "store", key: t, reason: "is not a valid file:// URL") }
            self = .directory(path)
        } else if t.contains("://") {
            throw .badConfig(path: "store", key: t, reason: "only http://, https:// and file:// stores are supported")
        } else {
            self = .directory(t.hasPrefix("/") ? t : FileManager.default.currentDirectoryPath + "/" + t)
        }
    }

    public var description: String {
        switch self {
        case .http(let u): u
        case .directory(let p): "file://" + p
        }
    }

    /// URL or path of `{name}/{file}`; name and file are validated names, so nothing escapes the base.
    func location(_ name: AdapterName, _ file: String) -> String {
        switch self {
        case .http(let base): "\(base)/\(name.value)/\(file)"
        case .directory(let dir): (dir as NSString).appendingPathComponent("\(name.value)/\(file)")
        }
    }
}
