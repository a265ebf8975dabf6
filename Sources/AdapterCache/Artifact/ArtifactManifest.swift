import Foundation

/// `manifest.json`, the first member of a packed artifact: what the adapter is, what it was
/// trained on, digests of its two PEFT files (as PEFT wrote them, before byte-plane encoding), and
/// optionally an ed25519 signature over those facts.
public struct ArtifactManifest: Codable, Sendable, Equatable {
    public static let formatV1 = "edge-runtime-adapter/1"

    public struct FileEntry: Codable, Sendable, Equatable {
        public var sha256: String
        public var size: Int64
        /// The archive member holding the file, when it differs from the file's name.
        public var storedAs: String?
        /// `"byte-planes-v1"` when stored byte-plane encoded (see `BytePlaneCodec`).
        public var encoding: String?

        enum CodingKeys: String, CodingKey { case sha256, size, storedAs = "stored_as", encoding }
    }

    public var format: String
    public var name: String
    public var version: String
    /// ISO 8601 UTC.
    public var created: String
    /// sha256 (hex) of the base model's model.safetensors the adapter was trained on.
    public var baseModel: String?
    /// Maximum rank over the modules; `alpha` is lora_alpha (patterns may vary both per module).
    public var rank: Int
    public var alpha: Double
    public var useRSLoRA: Bool
    public var targets: [String]
    public var layers: Int
    public var dtype: String
    /// sha256 of adapter_model.safetensors — "the content".
    public var contentSHA256: String
    public var files: [String: FileEntry]
    public var signature: ArtifactSignature?

    enum CodingKeys: String, CodingKey {
        case format, name, version, created, baseModel = "base_model", rank, alpha, useRSLoRA = "use_rslora", targets, layers, dtype
        case contentSHA256 = "content_sha256", files, signature
    }

    /// The statement a signature covers: identity, base model and both file digests.
    public var signedStatement: SignedStatement {
        SignedStatement(name: name, version: version, baseModel: baseModel, configSHA256: files[AdapterArtifact.configMember]?.sha256 ?? "", contentSHA256: contentSHA256)
    }

    func encoded() -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(self)) ?? Data()
    }
}
