import AdapterCache
import Foundation
import Kernels

extension LlamaHyperparameters {
    /// Reads a Hugging Face Llama `config.json` as both transformers generations write it.
    /// `contextLength` caps max_position_embeddings (0 = use the config's).
    public init(configJSON data: Data, path: String, contextLength: Int = 0) throws(EngineError) {
        func bad(_ r: String) -> EngineError { .badModel(path: path, reason: r) }
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw bad("config.json is not a JSON object")
        }
        if let type = obj["model_type"] as? String, !["llama", "mistral", "qwen2"].contains(type) {
            throw bad("config.json: model_type '\(type)' is not a Llama-family decoder")
        }
        func int(_ key: String, default d: Int? = nil) throws(EngineError) -> Int {
            if let v = obj[key] as? NSNumber { return v.intValue }
            if let d, obj[key] == nil || obj[key] is NSNull { return d }
            throw bad("config.json: '\(key)' is missing or not a number")
        }
        func float(_ dict: [String: Any], _ key: String) -> Float? { (dict[key] as? NSNumber).map { $0.floatValue } }
        let heads = try int("num_attention_heads")
        let hidden = try int("hidden_size")
        let ropeParams = obj["rope_parameters"] as? [String: Any]
        let scalingDict = (obj["rope_scaling"] as? [String: Any]) ?? ropeParams
        var theta = float(obj, "rope_theta") ?? ropeParams.flatMap { float($0, "rope_theta") } ?? 10000
        if theta <= 0 { theta = 10000 }
        var scaling: RopeScaling? = nil
        if let s = scalingDict, let type = (s["rope_type"] as? String) ?? (s["type"] as? String) {
            switch type {
            case "default": scaling = nil
            case "linear":
                guard let f = float(s, "factor") else { throw bad("config.json: rope scaling 'linear' needs 'factor'") }
                scaling = .linear(factor: f)
            case "llama3":
                guard let f = float(s, "factor"), let lo = float(s, "low_freq_factor"), let hi = float(s, "high_freq_factor"),
                      let orig = (s["original_max_position_embeddings"] as? NSNumber)?.intValue
                else { throw bad("config.json: rope scaling 'llama3' needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings") }
                scaling = .llama3(factor: f, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: orig)
            default:
                throw bad("config.json: rope scaling type '\(type)' is not supported (default, linear and llama3 are)")
            }
        }
        let maxPositions = try int("max_position_embeddings", default: 2048)
        self.init(
            hiddenSize: hidden, intermediateSize: try int("intermediate_size"), layerCount: try int("num_hidden_layers"),
            headCount: heads, kvHeadCount: try int("num_key_value_heads", default: heads),
            headDim: (obj["head_dim"] as? NSNumber)?.intValue, vocabularySize: try int("vocab_size"),
            rmsNormEps: float(obj, "rms_norm_eps") ?? 1e-6, ropeTheta: theta, ropeScaling: scaling,
            contextLength: contextLength > 0 ? min(contextLength, maxPositions) : maxPositions,
            tieWordEmbeddings: (obj["tie_word_embeddings"] as? Bool) ?? false)
        try validate(path: path + "/config.json")
    }
}

extension LlamaWeights {
    /// Loads a model directory (config.json + model.safetensors with bitsandbytes NF4 projections,
    /// NF4.md): maps the safetensors file once and points the NF4 descriptors into it.
    public static func load(directory: String, contextLength: Int = 0) throws(EngineError) -> LlamaWeights {
        let configPath = directory + "/config.json"
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw .badModel(path: directory, reason: "config.json is missing or unreadable")
        }
        let hp = try LlamaHyperparameters(configJSON: configData, path: directory, contextLength: contextLength)
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: directory + "/model.safetensors") } catch {
            throw .badModel(path: directory, reason: error.description)
        }
        return try load(file: file, hyperparameters: hp, path: directory)
    }

    /// Builds the weights from an already-validated safetensors file in Hugging Face Llama naming.
    public static func load(file: SafetensorsFile, hyperparameters hp: LlamaHyperparameters, path: String) throws(EngineError) -> LlamaWeights {
        var owners: [AnyObject] = [file]
        func bad(_ r: String) -> EngineError { .badModel(path: path, reason: r) }
        func floats(_ name: String, count: Int) throws(EngineError) -> FloatBuffer {
            guard let info = file.tensors[name] else { throw bad("tensor '\(name)' is missing from model.safetensors") }
            guard info.dtype.isFloat else { throw bad("tensor '\(name)' has dtype \(info.dtype.rawValue), expected a float type") }
            guard info.elementCount == count else { throw bad("tensor '\(name)' has \(info.elementCount) values (shape \(info.shape)), expected \(count)") }
            let raw: UnsafeRawBufferPointer
            do { raw = try file.bytes(of: name) } catch { throw bad(error.description) }
            // Aligned f32 (the embedding of an imported model): use the mapping as it is.
            if info.dtype == .f32, let base = raw.baseAddress, Int(bitPattern: base) % 4 == 0, raw.count >= count * 4 {
                return FloatBuffer(borrowing: base.assumingMemoryBound(to: Float.self), count: count, owner: file)
            }
            let buffer = FloatBuffer(count: count, zeroed: false)
            switch info.dtype {
            case .f32:
                raw.withMemoryRebound(to: UInt8.self) { src in
                    UnsafeMutableRawPointer(buffer.pointer).copyMemory(from: src.baseAddress!, byteCount: count * 4)
                }
            case .f16, .bf16:
                // The mapping may leave 2-byte values unaligned: copy to aligned storage first.
                let tmp = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
                defer { tmp.deallocate() }
                UnsafeMutableRawPointer(tmp).copyMemory(from: raw.baseAddress!, byteCount: count * 2)
                if info.dtype == .f16 { ek_f16_to_f32(tmp, buffer.pointer, Int64(count)) } else { ek_bf16_to_f32(tmp, buffer.pointer, Int64(count)) }
            default:
                guard let values = FloatConversion.toFloat32(raw, dtype: info.dtype) else { throw bad("tensor '\(name)' cannot be read as floats") }
                values.withUnsafeBufferPointer { buffer.pointer.update(from: $0.baseAddress!, count: count) }
            }
            return buffer
        }
        func nf4(_ name: String, rows: Int, cols: Int) throws(EngineError) -> ek_nf4_matrix {
            guard let packedInfo = file.tensors[name] else { throw bad("tensor '\(name)' is missing from model.safetensors") }
            guard packedInfo.dtype == .u8 else { throw bad("tensor '\(name)' is \(packedInfo.dtype.rawValue), expected U8 packed NF4 codes") }
            let stateName = name + ".quant_state.bitsandbytes__nf4"
            guard let stateBytes = try? file.bytes(of: stateName),
                  let state = (try? JSONSerialization.jsonObject(with: Data(stateBytes))) as? [String: Any]
            else { throw bad("tensor '\(stateName)' is missing or not JSON") }
            guard (state["quant_type"] as? String) == "nf4" else { throw bad("\(stateName): quant_type must be 'nf4'") }
            let shape = (state["shape"] as? [NSNumber])?.map(\.intValue) ?? []
            guard shape == [rows, cols] else { throw bad("\(stateName): shape \(shape) differs from [\(rows), \(cols)] expected from config.json") }
            let blocksize = (state["blocksize"] as? NSNumber)?.intValue ?? 64
            let numel = rows * cols
            guard packedInfo.elementCount == (numel + 1) / 2 else {
                throw bad("tensor '\(name)' has \(packedInfo.elementCount) bytes, expected \((numel + 1) / 2) for [\(rows), \(cols)]")
            }
            guard blocksize > 0 else { throw bad("\(stateName): blocksize \(blocksize) is invalid") }
            let blocks = (numel + blocksize - 1) / blocksize
            var m = ek_nf4_matrix()
            do {
                m.packed = try file.bytes(of: name).baseAddress!.assumingMemoryBound(to: UInt8.self)
                m.rows = Int64(rows)
                m.cols = Int64(cols)
                m.blocksize = Int32(blocksize)
                guard let absInfo = file.tensors[name + ".absmax"] else { throw bad("tensor '\(name).absmax' is missing") }
                guard absInfo.elementCount == blocks else { throw bad("tensor '\(name).absmax' has \(absInfo.elementCount) values, expected \(blocks)") }
                if absInfo.dtype == .u8 {
                    let nestedBlock = (state["nested_blocksize"] as? NSNumber)?.intValue ?? 256
                    guard nestedBlock > 0 else { throw bad("\(stateName): nested_blocksize \(nestedBlock) is invalid") }
                    guard let offset = (state["nested_offset"] as? NSNumber)?.doubleValue else { throw bad("\(stateName): nested_offset is missing") }
                    let nested = try floats(name + ".nested_absmax", count: (blocks + nestedBlock - 1) / nestedBlock)
                    let map = try floats(name + ".nested_quant_map", count: 256)
                    owners.append(nested)
                    owners.append(map)
                    m.absmax_q8 = try file.bytes(of: name + ".absmax").baseAddress!.assumingMemoryBound(to: UInt8.self)
                    m.nested_absmax = UnsafePointer(nested.pointer)
                    m.dq_map = UnsafePointer(map.pointer)
                    m.offset = Float(offset)
                    m.nested_blocksize = Int32(nestedBlock)
                } else {
                    let absmax = try floats(name + ".absmax", count: blocks)
                    owners.append(absmax)
                    m.absmax_f32 = UnsafePointer(absmax.pointer)
                    m.nested_blocksize = 256
                }
            } catch let e as EngineError {
                throw e
            } catch {
                throw bad("\(name): \(error)")
            }
            return m
        }

        let embedding = try floats("model.embed_tokens.weight", count: hp.vocabularySize * hp.hiddenSize)
        let finalNorm = try floats("model.norm.weight", count: hp.hiddenSize)
        let head: OutputHead
        if file.tensors["lm_head.weight"] == nil || hp.tieWordEmbeddings {
            guard hp.tieWordEmbeddings || file.tensors["lm_head.weight"] != nil else {
                throw bad("lm_head.weight is missing and config.json does not tie it to the embeddings")
            }
            head = .dense(embedding)
        } else if file.tensors["lm_head.weight.quant_state.bitsandbytes__nf4"] != nil {
            head = .nf4(try nf4("lm_head.weight", rows: hp.vocabularySize, cols: hp.hiddenSize))
        } else {
            head = .dense(try floats("lm_head.weight", count: hp.vocabularySize * hp.hiddenSize))
        }
        var layers: [Layer] = []
        for i in 0..<hp.layerCount {
            let prefix = "model.layers.\(i)"
            var projections: [ek_nf4_matrix] = []
            for p in LlamaProjection.allCases {
                let (r, c) = p.shape(hp)
                projections.append(try nf4("\(prefix).\(p.blockName).\(p.moduleName).weight", rows: r, cols: c))
            }
            layers.append(Layer(
                attentionNorm: try floats("\(prefix).input_layernorm.weight", count: hp.hiddenSize),
                mlpNorm: try floats("\(prefix).post_attention_layernorm.weight", count: hp.hiddenSize),
                projections: projections))
        }
        return try LlamaWeights(path: path, hyperparameters: hp, embedding: embedding, outputHead: head,
                                finalNorm: finalNorm, layers: layers, owners: owners)
    }
}
