import Crypto
import Foundation

/// ed25519 key files for signing adapters. A private key file holds a label line and the base64
/// of the 32-byte seed (mode 0600); the public key file (`.pub`) holds the base64 of the 32-byte
/// public key — the string that goes into the configuration's trusted keys.
public enum SigningKeys {
    static let privateLabel = "edge-runtime ed25519 private key"

    /// Creates `path` (private, 0600) and `path.pub`; refuses to overwrite. Returns the public key (base64).
    public static func generate(path: String) throws(AdapterError) -> String {
        let key = Curve25519.Signing.PrivateKey()
        guard !FileManager.default.fileExists(atPath: path) else { throw .io(path: path, reason: "already exists; refusing to overwrite a key") }
        let pub = key.publicKey.rawRepresentation.base64EncodedString()
        let body = "\(privateLabel)\n\(key.rawRepresentation.base64EncodedString())\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        let ok = body.utf8CString.withUnsafeBufferPointer { b in Foundation.write(fd, b.baseAddress, b.count - 1) == b.count - 1 }
        fsync(fd)
        close(fd)
        guard ok else { throw .io(path: path, reason: "write failed") }
        do { try (pub + "\n").write(toFile: path + ".pub", atomically: true, encoding: .utf8) } catch {
            throw .io(path: path + ".pub", reason: "\(error)")
        }
        return pub
    }

    public static func loadPrivate(path: String) throws(AdapterError) -> Curve25519.Signing.PrivateKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw .badKey(path: path, reason: "cannot read the file") }
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard let b64 = lines.last(where: { $0 != privateLabel }), let raw = Data(base64Encoded: b64), raw.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw) else {
            throw .badKey(path: path, reason: "expected the base64 of a 32-byte ed25519 seed")
        }
        return key
    }

    /// Parses a trusted public key: base64 of 32 raw bytes, or a `.pub` file's path.
    public static func publicKey(_ text: String) throws(AdapterError) -> Curve25519.Signing.PublicKey {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if FileManager.default.fileExists(atPath: s), let content = try? String(contentsOfFile: s, encoding: .utf8) {
            s = content.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let raw = Data(base64Encoded: s), raw.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw .badKey(path: text.prefix(80).description, reason: "a trusted key is the base64 of a 32-byte ed25519 public key (the .pub file)")
        }
        return key
    }
}
