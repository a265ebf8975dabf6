import AdapterCache
import Foundation

extension LocalModel {
    /// Loads an adapter given on the command line: a PEFT directory, or an artifact file
    /// (`edgectl adapter pack` output or a hand-made `.tar.zst`), bound to this model and held in
    /// `precision` (f16 for serving: half the RAM and the bytes read per token; the decoded f32 copy
    /// is freed once converted).
    public func loadAdapter(path: String, name: String? = nil, precision: LoRAPrecision = .f16) throws -> LoRABinding {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw EngineError.invalidRequest("adapter '\(path)' does not exist: give a PEFT directory or an adapter artifact file")
        }
        let adapter: LoRAAdapter = (isDir.boolValue
            ? try LoRAAdapterDecoder.load(directory: path)
            : try AdapterArtifact.open(path: path).decode()).converted(to: precision)
        return try LoRABinding(adapter: adapter, name: name ?? (path as NSString).lastPathComponent, hyperparameters: hyperparameters)
    }
}
