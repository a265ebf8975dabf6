import Crypto
import Foundation

/// Settings of an `AdapterCache`; every field has a default except the directory.
public struct AdapterCacheConfiguration: Sendable {
    public var directory: String
    /// Compressed artifacts on disk (pinned and local adapters count towards it but are never evicted).
    public var diskBudgetBytes: Int64 = 4 << 30
    /// Decoded adapters in RAM.
    public var ramBudgetBytes: Int64 = 1 << 30
    /// How decoded adapters are held in RAM (and counted against `ramBudgetBytes`): `.f32` as decoded,
    /// `.f16` (half the bytes) or `.int8` (rows with a scale each, about a quarter; what the daemon's
    /// fastest mode uses), see `LoRAAdapter.converted(to:)`.
    public var ramPrecision: LoRAPrecision = .f32
    public var store: StoreLocation?
    /// Base64 ed25519 public keys whose signatures are trusted. When non-empty, a signed adapter
    /// must be signed by one of them.
    public var trustedKeys: [String] = []
    /// Refuse adapters the store publishes without a signature.
    public var requireSignature = false
    /// sha256 of the loaded base model's model.safetensors; adapters for another base are refused.
    public var baseModelDigest: String?
    /// Refuse adapters that do not say which base model they were trained on.
    public var requireBaseModelDigest = false
    public var fetch = FetchOptions()
    public var limits = ArtifactLimits()

    public init(directory: String) {
        self.directory = directory
    }

    /// `/var/cache/edge-runtime/adapters` for root, else `$XDG_CACHE_HOME/edge-runtime/adapters`
    /// (`~/.cache/...` when unset).
    public static func defaultDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if getuid() == 0 { return "/var/cache/edge-runtime/adapters" }
        if let x = environment["XDG_CACHE_HOME"], x.hasPrefix("/") { return x + "/edge-runtime/adapters" }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.cache/edge-runtime/adapters"
    }

    func parsedTrustedKeys() throws(AdapterError) -> [Curve25519.Signing.PublicKey] {
        var keys: [Curve25519.Signing.PublicKey] = []
        for k in trustedKeys { keys.append(try SigningKeys.publicKey(k)) }
        return keys
    }
}
