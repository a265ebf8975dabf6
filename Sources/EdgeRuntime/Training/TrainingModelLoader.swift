import AdapterCache
import Foundation
import Kernels

/// Opens a model directory (config.json + model.safetensors, DESIGN.md §2) as a `TrainingBaseModel`:
/// NF4 projections stay in the mapped file; embeddings and norms are converted to f32.
public enum TrainingModelLoader {
    public static func load(directory: String) throws(TrainingError) -> TrainingBaseModel {
        let configPath = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw .unreadableFile(path: configPath, reason: "missing or unreadable; is this a model directory made by `edgectl model import`?")
        }
        let shape = try shape(fromConfig: data, path: configPath)
        let tied = ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any])?["tie_word_embeddings"] as? Bool
        let weightsPath = directory + "/model.safetensors"
        let file: SafetensorsFile
        do { file = try SafetensorsFile(path: weightsPath) } catch { throw .unreadableFile(path: weightsPath, reason: error.description) }
        func floats(_ key: String) throws(TrainingError) -> [Float] {
            guard file.tensors[key] != nil else { throw .missingTensor(file: weightsPath, key: key) }
            do { return try file.floats(key) } catch { throw .io(path: weightsPath, reason: error.description) }
        }
        var layers: [TrainingBaseModel.Layer] = []
        for l in 0..<shape.layers {
            var projections: [LoRATarget: any FrozenLinear] = [:]
            for t in LoRATarget.allCases {
                let d = shape.dims(of: t)
                projections[t] = try projection(file, key: "model.layers.\(l).\(t.modulePath).weight", out: d.out, in: d.in)
            }
            layers.append(.init(inputNorm: try floats("model.layers.\(l).input_layernorm.weight"),
                                postAttentionNorm: try floats("model.layers.\(l).post_attention_layernorm.weight"),
                                projections: projections))
        }
        // f32 [vocab, hidden] tensors are used in place in the mapping; others are converted once.
        var owners: [AnyObject] = [file]
        func matrix(_ key: String) throws(TrainingError) -> UnsafePointer<Float> {
            guard let info = file.tensors[key] else { throw .missingTensor(file: weightsPath, key: key) }
            guard info.shape == [shape.vocab, shape.hidden] else {
                throw .shapeMismatch(what: key, expected: [shape.vocab, shape.hidden], found: info.shape)
            }
            if info.dtype == .f32, let raw = try? file.bytes(of: key), Int(bitPattern: raw.baseAddress) % 4 == 0 {
                return raw.baseAddress!.assumingMemoryBound(to: Float.self)
            }
            let copy = TrainBuffer(try floats(key))
            owners.append(copy)
            return UnsafePointer(copy.pointer)
        }
        let embedding = try matrix("model.embed_tokens.weight")
        let lmHead: UnsafePointer<Float>? = file.tensors["lm_head.weight"] != nil && tied != true ? try matrix("lm_head.weight") : nil
        return try TrainingBaseModel(shape: shape, embedding: embedding, lmHead: lmHead, finalNorm: try floats("model.norm.weight"),
                                     layers: layers, owners: owners)
    }

    /// Reads the Llama dimensions from a Hugging Face config.json (transformers 4.x and 5.x keys).
    public static func shape(fromConfig data: Data, path: String) throws(TrainingError) -> TrainingModelShape {
        guard let c = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw .unreadableFile(path: path, reason: "not a JSON object")
        }
        func int(_ k: String) throws(TrainingError) -> Int {
            guard let v = c[k] as? Int else { throw .unreadableFile(path: path, reason: "key \"\(k)\" is missing or not an integer") }
            return v
        }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        let kv = (c["num_key_value_heads"] as? Int) ?? heads
        let headDim = (c["head_dim"] as? Int) ?? hidden / max(heads, 1)
        let eps = (c["rms_norm_eps"] as? Double) ?? 1e-6
        let ropeParams = c["rope_parameters"] as? [String: Any]
        let theta = (c["rope_theta"] as? Double) ?? (ropeParams?["rope_theta"] as? Double) ?? 10_000
        let scaling = (c["rope_scaling"] as? [String: Any]) ?? ropeParams
        if let kind = (scaling?["rope_type"] ?? scaling?["type"]) as? String, kind != "default" {
            throw .modelUnsupported(reason: "rope scaling \"\(kind)\" is not supported by the trainer (\(path))")
        }
        return TrainingModelShape(hidden: hidden, intermediate: try int("intermediate_size"), layers: try int("num_hidden_layers"),
                                  heads: heads, kvHeads: kv, headDim: headDim, vocab: try int("vocab_size"),
                                  rmsEps: Float(eps), ropeTheta: theta)
    }

    static func projection(_ file: SafetensorsFile, key: String, out: Int, in: Int) throws(TrainingError) -> any FrozenLinear {
        guard let info = file.tensors[key] else { throw .missingTensor(file: file.path, key: key) }
        func get(_ k: String) throws(TrainingError) -> [Float] {
            guard file.tensors[k] != nil else { throw .missingTensor(file: file.path, key: k) }
            do { return try file.floats(k) } catch { throw .io(path: file.path, reason: error.description) }
        }
        if info.dtype != .u8 {
            guard info.shape == [out, `in`] else { throw .shapeMismatch(what: key, expected: [out, `in`], found: info.shape) }
            return DenseFrozenLinear(weight: try get(key), outFeatures: out, inFeatures: `in`)
        }
        // NF4 (NF4.md §6)
        let stateKey = key + ".quant_state.bitsandbytes__nf4"
        guard let stateBytes = try? file.bytes(of: stateKey),
              let state = (try? JSONSerialization.jsonObject(with: Data(stateBytes))) as? [String: Any] else {
            throw .missingTensor(file: file.path, key: stateKey)
        }
        guard (state["quant_type"] as? String) == "nf4" else {
            throw .modelUnsupported(reason: "\(key) is quantised as \(state["quant_type"] ?? "?"), only nf4 is supported")
        }
        let blocksize = (state["blocksize"] as? Int) ?? 64
        if let s = state["shape"] as? [Int], s != [out, `in`] { throw .shapeMismatch(what: key, expected: [out, `in`], found: s) }
        guard info.elementCount == (out * `in` + 1) / 2, let packed = try? file.bytes(of: key) else {
            throw .shapeMismatch(what: key, expected: [(out * `in` + 1) / 2, 1], found: info.shape)
        }
        let code = try get(key + ".quant_map")
        let nb = (out * `in` + blocksize - 1) / blocksize
        var absmax: [Float]
        let amInfo = file.tensors[key + ".absmax"]
        if amInfo?.dtype == .u8 {
            let q8 = try! file.bytes(of: key + ".absmax")
            guard q8.count == nb else { throw .shapeMismatch(what: key + ".absmax", expected: [nb], found: [q8.count]) }
            let nested = try get(key + ".nested_absmax"), map = try get(key + ".nested_quant_map")
            let nbs = (state["nested_blocksize"] as? Int) ?? 256
            guard map.count == 256, nested.count == (nb + nbs - 1) / nbs else {
                throw .shapeMismatch(what: key + ".nested_absmax", expected: [(nb + nbs - 1) / nbs], found: [nested.count])
            }
            let offset = Float((state["nested_offset"] as? Double) ?? 0)
            absmax = [Float](repeating: 0, count: nb)
            et_nf4_decode_absmax(q8.bindMemory(to: UInt8.self).baseAddress!, nested, map, offset, nb, nbs, &absmax)
        } else {
            absmax = try get(key + ".absmax")
        }
        return try NF4FrozenLinear(packed: packed.bindMemory(to: UInt8.self).baseAddress!, absmax: absmax, code: code,
                                   blocksize: blocksize, outFeatures: out, inFeatures: `in`, owner: file)
    }
}
