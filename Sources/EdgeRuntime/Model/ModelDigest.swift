import AdapterCache
import Foundation

/// The identity adapters are tied to: the sha256 of a model directory's `model.safetensors`
/// (DESIGN.md §2). `edgectl model info`, `edgectl adapter pack --base-model` and the daemon all ask
/// here, so an adapter packed against a model is accepted by the daemon serving that same file.
///
/// Hashing 170 MB takes ~0.4 s, too slow for every daemon start, so the result is kept beside the
/// file in `model.safetensors.sha256` together with the file's size and modification time; it is
/// reused only while both still match, and recomputed (and rewritten, when the directory is
/// writable) otherwise. A stale or hand-edited sidecar therefore never yields a wrong digest for
/// a changed file.
public enum ModelDigest {
    public static let sidecarName = "model.safetensors.sha256"

    /// `path` is a model directory or a `.safetensors` file.
    public static func of(path: String) throws(AdapterError) -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw AdapterError.io(path: path, reason: "no such file or directory")
        }
        let file = isDir.boolValue ? (path as NSString).appendingPathComponent("model.safetensors") : path
        let sidecar = ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(sidecarName)
        guard let stamp = stamp(of: file) else { throw AdapterError.io(path: file, reason: String(cString: strerror(errno))) }
        if let saved = try? String(contentsOfFile: sidecar, encoding: .utf8) {
            let fields = saved.split(whereSeparator: \.isWhitespace).map(String.init)
            if fields.count == 3, fields[1] == stamp.size, fields[2] == stamp.mtime, FileDigest.isHexDigest(fields[0]) {
                return fields[0]
            }
        }
        let digest = try FileDigest.sha256(file: file)
        // Best effort: a read-only model directory simply costs a hash per start.
        let tmp = sidecar + ".tmp-\(getpid())"
        if FileManager.default.createFile(atPath: tmp, contents: Data("\(digest) \(stamp.size) \(stamp.mtime)\n".utf8)) {
            if rename(tmp, sidecar) != 0 { unlink(tmp) }
        }
        return digest
    }

    private static func stamp(of file: String) -> (size: String, mtime: String)? {
        var st = stat()
        guard stat(file, &st) == 0 else { return nil }
        return (String(st.st_size), "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)")
    }
}
