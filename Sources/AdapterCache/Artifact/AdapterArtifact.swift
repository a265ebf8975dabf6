import Crypto
import Foundation

/// An adapter artifact opened in memory: the zstd-compressed tar `edgectl adapter pack` writes
/// (`manifest.json`, `adapter_config.json`, `adapter_model.bps` — the safetensors file byte-plane
/// encoded), or a PEFT directory packed by hand with `tar --zstd -cf x.tar.zst -C DIR .`
/// (`adapter_config.json`, `adapter_model.safetensors`, no manifest). Only those members are read.
///
/// Immutable after open and safe to share across threads. Opening checks structure and the
/// manifest; `verifyContent()` recomputes file digests; `decode()` builds the RAM-tier adapter.
public final class AdapterArtifact: @unchecked Sendable {
    public static let manifestMember = "manifest.json"
    public static let configMember = "adapter_config.json"
    public static let weightsMember = "adapter_model.safetensors"
    public static let planesMember = "adapter_model.bps"
    public static let planesEncoding = "byte-planes-v1"

    public let label: String
    public let manifest: ArtifactManifest?
    public let config: PEFTConfig
    /// The weights image (plain safetensors, or byte-plane encoded when `isPlaneEncoded`).
    let weights: SafetensorsFile
    public let isPlaneEncoded: Bool
    private let buffer: OwnedBytes  // the decompressed tar; `weights` points into it

    /// Opens a file (mapped, decompressed within `limits`).
    public static func open(path: String, limits: ArtifactLimits = ArtifactLimits()) throws(AdapterError) -> AdapterArtifact {
        let mapped: MappedFile
        do { mapped = try MappedFile(path: path) } catch { throw .safetensors(error) }
        guard Int64(mapped.count) <= limits.maxArtifactBytes else { throw .tooLarge(path: path, what: "artifact (\(mapped.count) bytes)", limit: limits.maxArtifactBytes) }
        return try open(compressed: mapped.bytes, label: path, limits: limits)
    }

    public static func open(compressed: UnsafeRawBufferPointer, label: String, limits: ArtifactLimits = ArtifactLimits()) throws(AdapterError) -> AdapterArtifact {
        // Real adapters compress about 1–3×; a small file that expands far beyond that is a bomb,
        // refused before it can claim the (much larger) absolute budget.
        let scaled = compressed.count.multipliedReportingOverflow(by: max(1, limits.maxCompressionRatio))
        let byRatio = max(limits.ratioFloorBytes, scaled.overflow ? Int.max : scaled.partialValue)
        let limit = min(limits.maxDecompressedBytes, byRatio)
        let tar: OwnedBytes
        do {
            tar = try Zstd.decompress(compressed, limit: limit, label: label)
        } catch .tooLarge(let path, _, let l) where limit < limits.maxDecompressedBytes {
            throw .tooLarge(path: path, what: "decompressed data (more than \(limits.maxCompressionRatio)× the \(compressed.count)-byte artifact, a zstd bomb)", limit: l)
        }
        return try AdapterArtifact(tar: tar, label: label, limits: limits)
    }

    private init(tar: OwnedBytes, label: String, limits: ArtifactLimits) throws(AdapterError) {
        self.label = label
        buffer = tar
        let members = try TarArchive.read(tar.bytes, wanted: [Self.manifestMember, Self.configMember, Self.weightsMember, Self.planesMember],
                                          maxMemberBytes: limits.maxMemberBytes, label: label)
        if let m = members[Self.manifestMember] {
            guard m.bytes.count <= limits.maxJSONBytes else { throw .tooLarge(path: label, what: Self.manifestMember, limit: Int64(limits.maxJSONBytes)) }
            let decoded: ArtifactManifest
            do { decoded = try JSONDecoder().decode(ArtifactManifest.self, from: Data(m.bytes)) } catch {
                throw .badManifest(path: label, reason: "\(error)")
            }
            guard decoded.format == ArtifactManifest.formatV1 else {
                throw .badManifest(path: label, reason: "format '\(decoded.format)' is not \(ArtifactManifest.formatV1); upgrade edge-runtime to read it")
            }
            do { _ = try AdapterName(decoded.name); _ = try AdapterName(decoded.version) } catch { throw .badManifest(path: label, reason: error.description) }
            if let b = decoded.baseModel, !FileDigest.isHexDigest(b) { throw .badManifest(path: label, reason: "base_model '\(b.prefix(80))' is not a sha256 hex digest") }
            manifest = decoded
        } else {
            manifest = nil
        }
        guard let c = members[Self.configMember] else {
            throw .badArchive(path: label, reason: "no \(Self.configMember) member (pack the PEFT directory itself: tar --zstd -cf x.tar.zst -C DIR .)")
        }
        config = try PEFTConfig(data: Data(c.bytes), label: "\(label):\(Self.configMember)")
        let planes = members[Self.planesMember], plain = members[Self.weightsMember]
        if planes != nil && plain != nil { throw .badArchive(path: label, reason: "holds both \(Self.planesMember) and \(Self.weightsMember); refusing an ambiguous archive") }
        guard let w = planes ?? plain else { throw .badArchive(path: label, reason: "no \(Self.weightsMember) member") }
        isPlaneEncoded = planes != nil
        if isPlaneEncoded {
            guard manifest?.files[Self.weightsMember]?.encoding == Self.planesEncoding else {
                throw .badManifest(path: label, reason: "\(Self.planesMember) present but the manifest does not declare encoding \(Self.planesEncoding)")
            }
        }
        do { weights = try SafetensorsFile(bytes: w.bytes, owner: tar, label: "\(label):\(w.name)") } catch { throw .safetensors(error) }
    }

    /// The weights as PEFT wrote them (re-interleaved if stored as planes).
    public func safetensorsData() -> Data {
        let image = weights.fileBytes
        guard isPlaneEncoded else { return Data(image) }
        var out = Data(count: image.count)
        out.withUnsafeMutableBytes { dst in
            dst.baseAddress!.copyMemory(from: image.baseAddress!, byteCount: weights.dataOffset)
            let codec = BytePlaneCodec(tensors: Array(weights.tensors.values), dataLength: image.count - weights.dataOffset)
            codec.decode(image.baseAddress! + weights.dataOffset, into: dst.baseAddress! + weights.dataOffset)
        }
        return out
    }

    /// sha256 of adapter_config.json and of adapter_model.safetensors as PEFT wrote them.
    public func contentDigests() -> (config: String, content: String) {
        (FileDigest.sha256(config.raw), FileDigest.sha256(safetensorsData()))
    }

    /// Recomputes both file digests and compares them with the manifest (if any). Returns them.
    @discardableResult
    public func verifyContent() throws(AdapterError) -> (config: String, content: String) {
        let d = contentDigests()
        if let m = manifest {
            if let e = m.files[Self.configMember], e.sha256 != d.config {
                throw .contentDigestMismatch(path: label, file: Self.configMember, expected: e.sha256, actual: d.config)
            }
            if m.contentSHA256 != d.content {
                throw .contentDigestMismatch(path: label, file: Self.weightsMember, expected: m.contentSHA256, actual: d.content)
            }
        }
        return d
    }

    /// The RAM-tier adapter (validated; see `LoRAAdapterDecoder`).
    public func decode() throws(AdapterError) -> LoRAAdapter {
        let source: AdapterTensorSource = isPlaneEncoded ? BytePlaneTensorSource(file: weights) : SafetensorsTensorSource(file: weights)
        return try LoRAAdapterDecoder.decode(config: config, source: source, label: label)
    }

    // MARK: - Packing

    public struct PackOptions {
        public var name: AdapterName
        public var version: AdapterName
        public var baseModel: String?
        public var signingKey: Curve25519.Signing.PrivateKey?
        public var level: Int32 = 19
        public var created = Date()

        public init(name: AdapterName, version: AdapterName, baseModel: String? = nil, signingKey: Curve25519.Signing.PrivateKey? = nil) {
            self.name = name
            self.version = version
            self.baseModel = baseModel
            self.signingKey = signingKey
        }
    }

    /// Validates a PEFT directory (it must decode) and returns the compressed artifact and its manifest.
    public static func pack(directory: String, options: PackOptions) throws(AdapterError) -> (artifact: Data, manifest: ArtifactManifest) {
        let adapter = try LoRAAdapterDecoder.load(directory: directory)
        if let b = options.baseModel, !FileDigest.isHexDigest(b) {
            throw .badConfig(path: "--base-model-digest", key: b, reason: "must be 64 lower-case hex digits (sha256 of the base model's model.safetensors)")
        }
        let weightsPath = (directory as NSString).appendingPathComponent(weightsMember)
        let weights: SafetensorsFile
        do { weights = try SafetensorsFile(path: weightsPath) } catch { throw .safetensors(error) }
        let configData = adapter.config.raw
        let image = weights.fileBytes

        var encoded = Data(count: image.count)
        encoded.withUnsafeMutableBytes { dst in
            dst.baseAddress!.copyMemory(from: image.baseAddress!, byteCount: weights.dataOffset)
            let codec = BytePlaneCodec(tensors: Array(weights.tensors.values), dataLength: image.count - weights.dataOffset)
            codec.encode(image.baseAddress! + weights.dataOffset, into: dst.baseAddress! + weights.dataOffset)
        }
        let dtypes = Set(weights.tensors.values.map(\.dtype.rawValue)).sorted().joined(separator: ",")
        var manifest = ArtifactManifest(
            format: ArtifactManifest.formatV1, name: options.name.value, version: options.version.value, created: ISO8601.string(options.created),
            baseModel: options.baseModel, rank: adapter.maxRank, alpha: adapter.config.loraAlpha, useRSLoRA: adapter.config.useRSLoRA,
            targets: adapter.projections.map(\.rawValue), layers: Set(adapter.modules.map(\.layer)).count, dtype: dtypes,
            contentSHA256: FileDigest.sha256(image),
            files: [
                configMember: .init(sha256: FileDigest.sha256(configData), size: Int64(configData.count), storedAs: nil, encoding: nil),
                weightsMember: .init(sha256: FileDigest.sha256(image), size: Int64(image.count), storedAs: planesMember, encoding: planesEncoding),
            ],
            signature: nil)
        if let key = options.signingKey { manifest.signature = try ArtifactSignature.sign(manifest.signedStatement, with: key) }
        let tar = TarArchive.write([(manifestMember, manifest.encoded()), (configMember, configData), (planesMember, encoded)],
                                   mtime: Int(options.created.timeIntervalSince1970))
        let compressed: Data
        do { compressed = try tar.withUnsafeBytes { try Zstd.compress($0, level: options.level, label: directory) } } catch let e as AdapterError { throw e } catch {
            throw .zstd(path: directory, reason: "\(error)")
        }
        return (compressed, manifest)
    }
}
