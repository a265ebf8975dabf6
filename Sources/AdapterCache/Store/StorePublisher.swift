import Crypto
import Foundation

/// Writes an artifact into a static store directory: `{dir}/{name}/{version}.tar.zst` and an
/// updated `{dir}/{name}/index.json`, each atomically (temp → fsync → rename), the artifact first so
/// an index never names a file that is not there. Older versions stay listed and on disk.
/// Concurrent publishers of one name are serialised with an flock on `{dir}/{name}/.lock`.
public enum StorePublisher {
    public struct Options {
        /// Required for hand-packed tars (no manifest); must match the manifest otherwise.
        public var name: AdapterName?
        public var version: AdapterName?
        public var baseModel: String?
        /// Signs the index entry (over the same statement as a manifest signature).
        public var signingKey: Curve25519.Signing.PrivateKey?
        /// Replace an existing version with different bytes (otherwise refused).
        public var replace = false
        public var created = Date()

        public init(name: AdapterName? = nil, version: AdapterName? = nil, baseModel: String? = nil, signingKey: Curve25519.Signing.PrivateKey? = nil) {
            self.name = name
            self.version = version
            self.baseModel = baseModel
            self.signingKey = signingKey
        }
    }

    @discardableResult
    public static func publish(artifact path: String, to storeDir: String, options: Options = Options(), limits: ArtifactLimits = ArtifactLimits()) throws(AdapterError) -> StoreIndex.Version {
        let artifact = try AdapterArtifact.open(path: path, limits: limits)
        let digests = try artifact.verifyContent()
        _ = try artifact.decode()  // never publish an adapter the runtime would refuse
        let m = artifact.manifest
        guard let nameText = m?.name ?? options.name?.value else { throw .publish(path: storeDir, reason: "\(path) has no manifest; pass --name and --version") }
        guard let versionText = m?.version ?? options.version?.value else { throw .publish(path: storeDir, reason: "\(path) has no manifest; pass --version") }
        if let m, let n = options.name, n.value != m.name { throw .publish(path: storeDir, reason: "--name \(n) differs from the manifest's name \(m.name)") }
        if let m, let v = options.version, v.value != m.version { throw .publish(path: storeDir, reason: "--version \(v) differs from the manifest's version \(m.version)") }
        let name: AdapterName, version: AdapterName
        do { name = try AdapterName(nameText); version = try AdapterName(versionText) } catch { throw .name(error) }
        let baseModel = m?.baseModel ?? options.baseModel
        if let b = options.baseModel, let mb = m?.baseModel, b != mb { throw .publish(path: storeDir, reason: "--base-model-digest differs from the manifest's base_model \(mb)") }
        if let b = baseModel, !FileDigest.isHexDigest(b) { throw .publish(path: storeDir, reason: "base model digest '\(b.prefix(80))' is not 64 hex digits") }

        let statement = SignedStatement(name: name.value, version: version.value, baseModel: baseModel, configSHA256: digests.config, contentSHA256: digests.content)
        var signature = m?.signature
        if let sig = signature { try sig.verify(statement, trusted: [], what: path) }
        if let key = options.signingKey { signature = try ArtifactSignature.sign(statement, with: key) }

        let sha = try FileDigest.sha256(file: path)
        let size: Int64
        do { size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0 } catch { throw .io(path: path, reason: "\(error)") }

        let dir = (storeDir as NSString).appendingPathComponent(name.value)
        try AtomicFile.makeDirectory(dir)
        let lock = try FileLock(path: (dir as NSString).appendingPathComponent(".lock"), blocking: true)
        defer { withExtendedLifetime(lock) {} }

        let indexPath = (dir as NSString).appendingPathComponent("index.json")
        var index = StoreIndex(name: name.value, latest: nil, versions: [])
        if let data = FileManager.default.contents(atPath: indexPath) {
            index = try StoreIndex.decode(data, url: indexPath, expectedName: name)
        }
        if let existing = index.versions.first(where: { $0.version == version.value }), existing.sha256 != sha, !options.replace {
            throw .publish(path: storeDir, reason: "\(name)@\(version) is already published with other content (sha256 \(existing.sha256)); publish a new version")
        }
        let entry = StoreIndex.Version(
            version: version.value, sha256: sha, size: size, baseModel: baseModel,
            created: m?.created ?? ISO8601.string(options.created), signature: signature,
            configSHA256: digests.config, contentSHA256: digests.content,
            rank: m?.rank ?? artifact.config.r, alpha: m?.alpha ?? artifact.config.loraAlpha, targets: m?.targets ?? artifact.config.targetDescription)

        // Artifact first (temp → fsync → rename), then the index that names it.
        let target = (dir as NSString).appendingPathComponent("\(version.value).tar.zst")
        let tmp = (dir as NSString).appendingPathComponent(".\(version.value).tar.zst.\(getpid()).tmp")
        unlink(tmp)
        do { try FileManager.default.copyItem(atPath: path, toPath: tmp) } catch { throw .publish(path: storeDir, reason: "copying the artifact: \(error.localizedDescription)") }
        try AtomicFile.fsyncFile(tmp)
        try AtomicFile.commit(temporary: tmp, to: target)

        index.versions.removeAll { $0.version == version.value }
        index.versions.append(entry)
        index.latest = version.value
        try AtomicFile.write(index.encoded(), to: indexPath)
        return entry
    }
}
