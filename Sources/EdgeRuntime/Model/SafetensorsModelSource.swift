import AdapterCache
import Foundation

/// A Hugging Face model directory (config.json, model.safetensors or shards listed in
/// model.safetensors.index.json, f32/f16/bf16 weights, tokenizer files) as an import source.
final class SafetensorsModelSource: ImportSource {
    let path: String
    let config: LlamaConfig
    let tensors: [String: ImportTensor]
    private let files: [SafetensorsFile]

    /// Tokenizer and generation files copied verbatim when present.
    static let companionFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja", "chat_template.json"]

    init(directory: String) throws(ModelError) {
        path = directory
        config = try LlamaConfig.load(path: directory + "/config.json")
        guard FileManager.default.fileExists(atPath: directory + "/tokenizer.json") else {
            throw .missingFile(path: directory + "/tokenizer.json", what: "the model directory has no tokenizer.json (a SentencePiece tokenizer.model alone cannot be imported)")
        }
        var files: [SafetensorsFile] = []
        var owner: [String: SafetensorsFile] = [:]
        let single = directory + "/model.safetensors"
        let index = directory + "/model.safetensors.index.json"
        if FileManager.default.fileExists(atPath: single) {
            let f = try Self.open(single)
            files.append(f)
            for name in f.tensors.keys { owner[name] = f }
        } else if FileManager.default.fileExists(atPath: index) {
            let shards = try Self.shardMap(index)
            var opened: [String: SafetensorsFile] = [:]
            for (tensor, shard) in shards {
                guard !shard.contains("/"), !shard.hasPrefix(".") else {
                    throw .badConfig(path: index, key: "weight_map.\(tensor)", reason: "names '\(shard)', which is not a file in the directory")
                }
                if opened[shard] == nil {
                    let f = try Self.open(directory + "/" + shard)
                    opened[shard] = f
                    files.append(f)
                }
                let f = opened[shard]!
                guard f.tensors[tensor] != nil else { throw .missingTensor(path: f.path, tensor: tensor) }
                owner[tensor] = f
            }
        } else {
            throw .missingFile(path: single, what: "the model directory has neither model.safetensors nor model.safetensors.index.json")
        }
        self.files = files
        var map: [String: ImportTensor] = [:]
        for (name, shape, _) in LlamaTensorNames.required(config) {
            guard let f = owner[name] else { throw .missingTensor(path: files.first?.path ?? single, tensor: name) }
            let info = f.tensors[name]!
            guard [.f32, .f16, .bf16].contains(info.dtype) else {
                throw .badTensor(path: f.path, tensor: name, reason: "dtype \(info.dtype.rawValue) cannot be imported (F32, F16 or BF16)")
            }
            guard info.shape == shape else {
                throw .badTensor(path: f.path, tensor: name, reason: "shape \(info.shape) does not match \(shape) from config.json")
            }
            map[name] = ImportTensor(name: name, shape: shape) { () throws(ModelError) -> [Float] in
                do throws(SafetensorsError) { return try f.floats(name) } catch { throw .safetensors(error) }
            }
        }
        tensors = map
    }

    func writeTokenizer(into directory: String) throws(ModelError) {
        for name in Self.companionFiles where FileManager.default.fileExists(atPath: path + "/" + name) {
            try ModelFileIO.copyFile(from: path + "/" + name, to: directory + "/" + name)
        }
    }

    private static func open(_ file: String) throws(ModelError) -> SafetensorsFile {
        do { return try SafetensorsFile(path: file) } catch { throw .safetensors(error) }
    }

    private static func shardMap(_ index: String) throws(ModelError) -> [(String, String)] {
        struct Index: Decodable { let weight_map: [String: String] }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: index)) } catch { throw .io(path: index, reason: error.localizedDescription) }
        do {
            return try JSONDecoder().decode(Index.self, from: data).weight_map.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        } catch {
            throw .badConfig(path: index, key: "weight_map", reason: "is invalid: \(ModelError.describe(decoding: error))")
        }
    }
}
