import AdapterCache
import Crypto
import Foundation

/// The seven NF4 projections of a Llama decoder layer, by Hugging Face module name.
public enum LlamaProjection: String, CaseIterable, Sendable {
    case q = "self_attn.q_proj", k = "self_attn.k_proj", v = "self_attn.v_proj", o = "self_attn.o_proj"
    case gate = "mlp.gate_proj", up = "mlp.up_proj", down = "mlp.down_proj"
}

/// The weights of one decoder layer, as views into the mapping.
public struct LlamaLayerWeights: Sendable {
    public let inputLayernorm: TensorView
    public let q, k, v, o: NF4MatrixView
    public let gate, up, down: NF4MatrixView
    public let postAttentionLayernorm: TensorView

    public subscript(_ p: LlamaProjection) -> NF4MatrixView {
        switch p {
        case .q: q
        case .k: k
        case .v: v
        case .o: o
        case .gate: gate
        case .up: up
        case .down: down
        }
    }
}

/// An NF4 Llama model directory (DESIGN.md §2), opened for inference: `model.safetensors` is mapped
/// read-only and shared once, validated completely against `config.json` before anything uses it, and
/// exposed as typed zero-copy views. The 4-bit weights are never copied.
///
/// Immutable after init; safe to share across threads. The views are valid while this object lives.
public final class NF4Model: @unchecked Sendable {
    public let directory: String
    public let config: LlamaConfig
    /// The mapped, header-validated container.
    public let file: SafetensorsFile
    public let embedTokens: TensorView
    public let norm: TensorView
    /// The output projection: the embedding itself when the config ties them.
    public let lmHead: TensorView
    public let layers: [LlamaLayerWeights]

    public var modelPath: String { directory + "/model.safetensors" }

    /// Opens `directory` (config.json + model.safetensors) and validates everything.
    public init(directory: String) throws(ModelError) {
        self.directory = directory
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw .missingFile(path: directory, what: "no model directory here (expected config.json and model.safetensors)")
        }
        let config = try LlamaConfig.load(path: directory + "/config.json")
        if let q = config.quantization, !(q.quantMethod == "bitsandbytes" && q.loadIn4bit && q.quantType == "nf4") {
            throw .badConfig(path: directory + "/config.json", key: "quantization_config",
                             reason: "describes \(q.quantMethod) \(q.loadIn4bit ? "4-bit" : "") \(q.quantType), not bitsandbytes NF4; import the model with `edgectl model import`")
        }
        self.config = config
        let path = directory + "/model.safetensors"
        guard FileManager.default.fileExists(atPath: path) else {
            throw .missingFile(path: path, what: "the model directory has no model.safetensors")
        }
        do { file = try SafetensorsFile(path: path) } catch { throw .safetensors(error) }
        let v = Validator(file: file, path: path)
        embedTokens = try v.plain("model.embed_tokens.weight", shape: [config.vocabSize, config.hiddenSize])
        norm = try v.plain("model.norm.weight", shape: [config.hiddenSize])
        lmHead = config.tieWordEmbeddings ? embedTokens : try v.plain("lm_head.weight", shape: [config.vocabSize, config.hiddenSize])
        var layers: [LlamaLayerWeights] = []
        layers.reserveCapacity(config.numHiddenLayers)
        for l in 0..<config.numHiddenLayers {
            let prefix = "model.layers.\(l)."
            var m: [LlamaProjection: NF4MatrixView] = [:]
            for (p, (_, shape)) in zip(LlamaProjection.allCases, config.projections) {
                m[p] = try v.nf4(prefix + p.rawValue, shape: shape)
            }
            layers.append(LlamaLayerWeights(
                inputLayernorm: try v.plain(prefix + "input_layernorm.weight", shape: [config.hiddenSize]),
                q: m[.q]!, k: m[.k]!, v: m[.v]!, o: m[.o]!, gate: m[.gate]!, up: m[.up]!, down: m[.down]!,
                postAttentionLayernorm: try v.plain(prefix + "post_attention_layernorm.weight", shape: [config.hiddenSize])))
        }
        self.layers = layers
    }

    /// The NF4 view of `projection` in `layer` (e.g. `model.projection(layer: 3, .q)`).
    public func projection(layer: Int, _ projection: LlamaProjection) -> NF4MatrixView { layers[layer][projection] }

    /// sha256 of model.safetensors, lowercase hex: the digest adapters are tied to.
    public func digest() -> String { Self.sha256Hex(file.fileBytes) }

    static func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var hasher = SHA256()
        // Chunked so a huge mapping is hashed without materialising anything.
        var offset = 0
        let chunk = 64 << 20
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            offset = end
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Checks one tensor group at a time against the config; every failure names the tensor.
    private struct Validator {
        let file: SafetensorsFile
        let path: String

        func info(_ name: String) throws(ModelError) -> SafetensorsTensorInfo {
            guard let i = file.tensors[name] else { throw .missingTensor(path: path, tensor: name) }
            return i
        }

        func bytes(_ name: String) throws(ModelError) -> UnsafeRawBufferPointer {
            do { return try file.bytes(of: name) } catch { throw .safetensors(error) }
        }

        func f32(_ name: String, count: Int) throws(ModelError) -> UnsafePointer<Float> {
            let i = try info(name)
            guard i.dtype == .f32, i.elementCount == count, i.shape.count == 1 else {
                throw .badTensor(path: path, tensor: name, reason: "expected F32 [\(count)], found \(i.dtype.rawValue) \(i.shape)")
            }
            let b = try bytes(name)
            guard Int(bitPattern: b.baseAddress) % 4 == 0 else {
                throw .badTensor(path: path, tensor: name, reason: "its F32 data is not 4-byte aligned in the file; re-import the model")
            }
            return b.baseAddress!.assumingMemoryBound(to: Float.self)
        }

        func u8(_ name: String, count: Int, shapes: [[Int]]) throws(ModelError) -> UnsafePointer<UInt8> {
            let i = try info(name)
            guard i.dtype == .u8, shapes.contains(i.shape) else {
                throw .badTensor(path: path, tensor: name, reason: "expected U8 \(shapes[0]), found \(i.dtype.rawValue) \(i.shape)")
            }
            let b = try bytes(name)
            return b.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        }

        func plain(_ name: String, shape: [Int]) throws(ModelError) -> TensorView {
            let i = try info(name)
            guard let dtype = TensorView.DType(rawValue: i.dtype.rawValue) else {
                throw .badTensor(path: path, tensor: name, reason: "dtype \(i.dtype.rawValue) is not F32, F16 or BF16")
            }
            guard i.shape == shape else {
                throw .badTensor(path: path, tensor: name, reason: "shape \(i.shape) does not match \(shape) from config.json")
            }
            let b = try bytes(name)
            guard Int(bitPattern: b.baseAddress) % i.dtype.byteSize == 0 else {
                throw .badTensor(path: path, tensor: name, reason: "its data is not \(i.dtype.byteSize)-byte aligned in the file; re-import the model")
            }
            return TensorView(name: name, dtype: dtype, shape: shape, raw: b)
        }

        func nf4(_ module: String, shape: [Int]) throws(ModelError) -> NF4MatrixView {
            let w = module + ".weight"
            let stateName = w + ".quant_state.bitsandbytes__nf4"
            guard file.tensors[w] != nil else { throw .missingTensor(path: path, tensor: w) }
            guard file.tensors[stateName] != nil else {
                throw .badTensor(path: path, tensor: w, reason: "has no \(stateName); it is not a bitsandbytes NF4 weight")
            }
            let stateInfo = try info(stateName)
            guard stateInfo.dtype == .u8, stateInfo.shape.count == 1 else {
                throw .badQuantState(path: path, tensor: stateName, reason: "must be a 1-D U8 tensor of JSON bytes")
            }
            let state = try NF4QuantState.decode(try bytes(stateName), path: path, tensor: stateName)
            guard state.shape == shape else {
                throw .badQuantState(path: path, tensor: w, reason: "quant_state shape \(state.shape) does not match \(shape) from config.json")
            }
            let n = shape.reduce(1, *)
            let nb = (n + state.blocksize - 1) / state.blocksize
            let packedCount = (n + 1) / 2
            let packed = try u8(w, count: packedCount, shapes: [[packedCount, 1], [packedCount]])
            let quantMap = try f32(w + ".quant_map", count: 16)
            let absmaxInfo = try info(w + ".absmax")
            if let nested = state.nested {
                guard absmaxInfo.dtype == .u8 else {
                    throw .badQuantState(path: path, tensor: w + ".absmax", reason: "quant_state says double quantisation, so absmax must be U8 codes (found \(absmaxInfo.dtype.rawValue))")
                }
                let q8 = try u8(w + ".absmax", count: nb, shapes: [[nb]])
                let nn = (nb + nested.blocksize - 1) / nested.blocksize
                let nestedAbsmax = try f32(w + ".nested_absmax", count: nn)
                let map = try f32(w + ".nested_quant_map", count: 256)
                return NF4MatrixView(name: module, packed: packed, absmaxF32: nil, absmaxQ8: q8, nestedAbsmax: nestedAbsmax, dqMap: map,
                                     quantMap: quantMap, offset: Float(nested.offset), rows: shape[0], cols: shape[1],
                                     blocksize: Int32(state.blocksize), nestedBlocksize: Int32(nested.blocksize))
            }
            guard absmaxInfo.dtype == .f32 else {
                throw .badQuantState(path: path, tensor: w + ".absmax", reason: "quant_state has no nested fields, so absmax must be F32 (found \(absmaxInfo.dtype.rawValue))")
            }
            let absmax = try f32(w + ".absmax", count: nb)
            return NF4MatrixView(name: module, packed: packed, absmaxF32: absmax, absmaxQ8: nil, nestedAbsmax: nil, dqMap: nil,
                                 quantMap: quantMap, offset: 0, rows: shape[0], cols: shape[1],
                                 blocksize: Int32(state.blocksize), nestedBlocksize: 0)
        }
    }
}
