import Crypto
import Foundation

/// The exact bytes an adapter signature covers. Lines of `key: value` in a fixed order, so that a
/// signature made by `pack` (in the manifest) or by `publish` (in the store index) verifies the
/// same facts, computed from the bytes actually received rather than from any JSON claims.
public struct SignedStatement: Sendable, Equatable {
    public var name: String
    public var version: String
    public var baseModel: String?
    public var configSHA256: String
    public var contentSHA256: String

    public var bytes: Data {
        Data("""
        edge-runtime adapter signature v1
        name: \(name)
        version: \(version)
        base_model: \(baseModel ?? "none")
        config_sha256: \(configSHA256)
        content_sha256: \(contentSHA256)

        """.utf8)
    }
}

/// An ed25519 signature and the public key that made it (base64, raw 32 and 64 bytes).
public struct ArtifactSignature: Codable, Sendable, Equatable {
    public var algorithm: String
    public var publicKey: String
    public var value: String

    enum CodingKeys: String, CodingKey { case algorithm, publicKey = "public_key", value }

    public static func sign(_ statement: SignedStatement, with key: Curve25519.Signing.PrivateKey) throws(AdapterError) -> ArtifactSignature {
        do {
            let sig = try key.signature(for: statement.bytes)
            return ArtifactSignature(algorithm: "ed25519", publicKey: key.publicKey.rawRepresentation.base64EncodedString(), value: Data(sig).base64EncodedString())
        } catch {
            throw .badKey(path: "(signing key)", reason: "signing failed: \(error)")
        }
    }

    /// Checks the signature over `statement`. With `trusted` non-empty the signing key must be one of
    /// them; with none configured the signature still proves the bytes are the ones the key signed.
    public func verify(_ statement: SignedStatement, trusted: [Curve25519.Signing.PublicKey], what: String) throws(AdapterError) {
        guard algorithm == "ed25519" else { throw .badSignature(what: what, reason: "algorithm '\(algorithm)' is not ed25519") }
        guard let keyBytes = Data(base64Encoded: publicKey), let key = try? Curve25519.Signing.PublicKey(rawRepresentation: keyBytes) else {
            throw .badSignature(what: what, reason: "public key is not 32 bytes of base64")
        }
        guard let sig = Data(base64Encoded: value), sig.count == 64 else { throw .badSignature(what: what, reason: "signature is not 64 bytes of base64") }
        if !trusted.isEmpty, !trusted.contains(where: { $0.rawRepresentation == key.rawRepresentation }) {
            throw .untrustedKey(what: what, key: publicKey)
        }
        guard key.isValidSignature(sig, for: statement.bytes) else {
            throw .badSignature(what: what, reason: "the signature does not match the adapter's name, version, base model or content")
        }
    }
}
