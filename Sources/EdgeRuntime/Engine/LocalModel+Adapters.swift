import AdapterCache
import Foundation

extension LocalModel {
    /// Loads an adapter given on the command line: a PEFT directory, or an artifact file
    /// (`edgectl adapter pack` output or a hand-made `.tar.zst`), bound to this model.
    public func loadAdapter(path: String, name: String? = nil) throws -> LoRABinding {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw EngineError.invalidRequest("adapter '\(path)' does not exist: give a PEFT directory or an adapter artifact file")
        }
        let adapter: LoRAAdapter = isDir.boolValue
            ? try LoRAAdapterDecoder.load(directory: path)
            : try AdapterArtifact.open(path: path).decode()
        return try LoRABinding(adapter: adapter, name: name ?? (path as NSString).lastPathComponent, hyperparameters: hyperparameters)
    }
}
