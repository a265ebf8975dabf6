import Foundation

/// `{store}/{name}/index.json`: every published version of one adapter (oldest first) and which one
/// "latest" means. Static JSON, so any file server or CDN can serve the store.
public struct StoreIndex: Codable, Sendable, Equatable {
    public struct Version: Codable, Sendable, Equatable {
        public var version: String
        /// sha256 (hex) of the artifact file `{version}.tar.zst` — what the fetcher verifies.
        public var sha256: String
        public var size: Int64
        /// sha256 of the base model's model.safetensors the adapter was trained on.
        public var baseModel: String?
        public var created: String
        public var signature: ArtifactSignature?
        /// sha256 of adapter_config.json and adapter_model.safetensors (what a signature covers).
        public var configSHA256: String?
        public var contentSHA256: String?
        public var rank: Int?
        public var alpha: Double?
        public var targets: [String]?

        enum CodingKeys: String, CodingKey {
            case version, sha256, size, baseModel = "base_model", created, signature
            case configSHA256 = "config_sha256", contentSHA256 = "content_sha256", rank, alpha, targets
        }
    }

    public var name: String
    public var latest: String?
    public var versions: [Version]

    /// The entry for `version`, or for "latest" when nil (the `latest` field, else the newest by `created`).
    public func resolve(_ version: String?) -> Version? {
        if let v = version { return versions.last { $0.version == v } }
        if let l = latest, let e = versions.last(where: { $0.version == l }) { return e }
        return versions.max { ISO8601.parse($0.created) < ISO8601.parse($1.created) }
    }

    /// Parses and checks an index fetched from `url`: names, versions and digests well-formed.
    public static func decode(_ data: Data, url: String, expectedName: AdapterName) throws(AdapterError) -> StoreIndex {
        let index: StoreIndex
        do { index = try JSONDecoder().decode(StoreIndex.self, from: data) } catch {
            throw .badIndex(url: url, reason: "not the expected JSON (\(error))")
        }
        guard index.name == expectedName.value else { throw .badIndex(url: url, reason: "it describes adapter '\(index.name.prefix(80))', not '\(expectedName)'") }
        for v in index.versions {
            guard (try? AdapterName(v.version)) != nil else { throw .badIndex(url: url, reason: "version '\(v.version.prefix(80))' is not a valid version name") }
            guard FileDigest.isHexDigest(v.sha256) else { throw .badIndex(url: url, reason: "version \(v.version): sha256 is not 64 hex digits") }
            guard v.size > 0 else { throw .badIndex(url: url, reason: "version \(v.version): size must be positive") }
            if let b = v.baseModel, !FileDigest.isHexDigest(b) { throw .badIndex(url: url, reason: "version \(v.version): base_model is not a sha256 hex digest") }
        }
        return index
    }

    func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(self)) ?? Data()
    }
}
