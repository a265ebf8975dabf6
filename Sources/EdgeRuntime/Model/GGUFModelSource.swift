import Foundation

/// A llama-architecture GGUF file as an import source: hyper-parameters from `llama.*`, tensors
/// renamed to Hugging Face names and dequantised to f32, `attn_q`/`attn_k` rows un-permuted back to
/// Hugging Face order, tokenizer converted from `tokenizer.ggml.*`.
final class GGUFModelSource: ImportSource {
    let path: String
    let gguf: GGUFFile
    let config: LlamaConfig
    let tensors: [String: ImportTensor]
    private let tokenizer: GGUFTokenizerConverter

    init(path: String) throws(ModelError) {
        self.path = path
        gguf = try GGUFFile(path: path)
        let arch = gguf.architecture ?? ""
        guard arch == "llama" else {
            throw .unsupportedArchitecture(path: path, architecture: arch.isEmpty ? "(general.architecture missing)" : arch)
        }
        tokenizer = try GGUFTokenizerConverter(gguf: gguf)
        config = try Self.config(gguf, tokenizer: tokenizer)
        if gguf.tensor("rope_freqs.weight") != nil {
            throw .badGGUF(path: path, reason: "it stores RoPE frequency factors (rope_freqs, Llama 3.1 scaling) that cannot be mapped back to a Hugging Face config; import the Hugging Face safetensors directory instead")
        }
        var map: [String: ImportTensor] = [:]
        for (hfName, shape, _) in LlamaTensorNames.required(config) {
            let ggufName = Self.ggufName(hf: hfName)
            guard let info = gguf.tensor(ggufName) else { throw .missingTensor(path: path, tensor: ggufName) }
            guard info.shape == shape else {
                throw .badTensor(path: path, tensor: ggufName, reason: "shape \(info.shape) (ggml dims \(info.dims)) does not match \(shape) from the llama.* hyper-parameters")
            }
            guard info.type.isSupported else { throw .unsupportedTensorType(path: path, tensor: ggufName, type: info.type.name) }
            var heads: Int?
            if hfName.hasSuffix("self_attn.q_proj.weight") { heads = config.numAttentionHeads }
            if hfName.hasSuffix("self_attn.k_proj.weight") { heads = config.numKeyValueHeads }
            let file = gguf
            map[hfName] = ImportTensor(name: hfName, shape: shape) { () throws(ModelError) -> [Float] in
                let values = try file.dequantize(info)
                guard let heads else { return values }
                return LlamaPermutation.reversePermute(values, rows: shape[0], cols: shape[1], heads: heads)
            }
        }
        tensors = map
    }

    func writeTokenizer(into directory: String) throws(ModelError) {
        try ModelFileIO.writeText(tokenizer.tokenizerJSON().serialized(), to: directory + "/tokenizer.json")
        try ModelFileIO.writeText(tokenizer.tokenizerConfigJSON(modelMaxLength: config.maxPositionEmbeddings).serialized(),
                                  to: directory + "/tokenizer_config.json")
    }

    /// `blk.N.attn_q.weight` ↔ `model.layers.N.self_attn.q_proj.weight`, etc.
    static func ggufName(hf: String) -> String {
        switch hf {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = hf.split(separator: ".")
        // model.layers.N.<module...>.weight
        let layer = parts[2]
        let module = parts[3..<(parts.count - 1)].joined(separator: ".")
        let names = ["input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                     "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                     "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"]
        return "blk.\(layer).\(names[module] ?? module).weight"
    }

    static func config(_ gguf: GGUFFile, tokenizer: GGUFTokenizerConverter) throws(ModelError) -> LlamaConfig {
        let path = gguf.path
        let md = gguf.metadata
        func int(_ key: String, default value: Int? = nil) throws(ModelError) -> Int {
            guard let v = md[key] else {
                if let value { return value }
                throw .badMetadata(path: path, key: key, reason: "is missing")
            }
            guard let i = v.integer, i > 0, i <= Int64(Int32.max) else { throw .badMetadata(path: path, key: key, reason: "must be a positive integer (found \(v))") }
            return Int(i)
        }
        func number(_ key: String, default value: Double) throws(ModelError) -> Double {
            guard let v = md[key] else { return value }
            // fp32 values keep the decimal a person wrote (1e-05), not their float64 expansion.
            if case .float32(let f) = v { return Double(f.description) ?? Double(f) }
            guard let d = v.number, d.isFinite, d > 0 else { throw .badMetadata(path: path, key: key, reason: "must be a positive number (found \(v))") }
            return d
        }
        let hidden = try int("llama.embedding_length")
        let heads = try int("llama.attention.head_count")
        let kvHeads = try int("llama.attention.head_count_kv", default: heads)
        guard hidden % heads == 0 || md["llama.attention.key_length"] != nil else {
            throw .badMetadata(path: path, key: "llama.embedding_length", reason: "\(hidden) is not a multiple of the head count \(heads)")
        }
        guard heads % kvHeads == 0 else {
            throw .badMetadata(path: path, key: "llama.attention.head_count_kv", reason: "\(kvHeads) does not divide the head count \(heads)")
        }
        let headDim = try int("llama.attention.key_length", default: hidden / heads)
        if let v = md["llama.attention.value_length"], v.integer != Int64(headDim) {
            throw .badMetadata(path: path, key: "llama.attention.value_length", reason: "differs from the key length \(headDim); not a Llama layout")
        }
        if let r = md["llama.rope.dimension_count"], r.integer != Int64(headDim) {
            throw .badMetadata(path: path, key: "llama.rope.dimension_count", reason: "\(r) differs from the head size \(headDim); partial rotary embeddings are not Llama")
        }
        var scaling: LlamaConfig.RopeScaling?
        if let type = md["llama.rope.scaling.type"]?.string, type != "none" {
            guard type == "linear", let f = md["llama.rope.scaling.factor"]?.number, f > 0 else {
                throw .badMetadata(path: path, key: "llama.rope.scaling.type", reason: "'\(type)' is not supported (only linear with a factor)")
            }
            scaling = .init(ropeType: "linear", factor: f)
        }
        if md["llama.expert_count"]?.integer ?? 0 > 0 {
            throw .unsupportedArchitecture(path: path, architecture: "llama with experts (mixture of experts)")
        }
        let vocab = try int("llama.vocab_size", default: tokenizer.tokens.count)
        guard vocab == tokenizer.tokens.count else {
            throw .badMetadata(path: path, key: "llama.vocab_size", reason: "is \(vocab) but tokenizer.ggml.tokens has \(tokenizer.tokens.count) tokens")
        }
        return LlamaConfig(
            hiddenSize: hidden, intermediateSize: try int("llama.feed_forward_length"), numHiddenLayers: try int("llama.block_count"),
            numAttentionHeads: heads, numKeyValueHeads: kvHeads, headDim: headDim,
            rmsNormEps: try number("llama.attention.layer_norm_rms_epsilon", default: 1e-5),
            ropeTheta: try number("llama.rope.freq_base", default: 10000), ropeScaling: scaling,
            maxPositionEmbeddings: try int("llama.context_length", default: 2048), vocabSize: vocab,
            tieWordEmbeddings: gguf.tensor("output.weight") == nil,
            bosTokenID: tokenizer.bosID, eosTokenIDs: tokenizer.eosID.map { [$0] } ?? [], padTokenID: tokenizer.padID)
    }
}

/// llama.cpp's converter permutes the rows of `attn_q` / `attn_k` so that RoPE rotates adjacent pairs;
/// Hugging Face rotates the two halves of each head. Within a head of `d` rows, GGUF row `2i + j`
/// (i < d/2, j < 2) is Hugging Face row `j·d/2 + i` — transformers' `reverse_permute`:
/// `w.reshape(heads, d/2, 2, in).swapaxes(1, 2).reshape(out, in)`.
public enum LlamaPermutation {
    public static func reversePermute(_ w: [Float], rows: Int, cols: Int, heads: Int) -> [Float] {
        precondition(rows % (2 * heads) == 0 && w.count == rows * cols, "rows \(rows) do not split into \(heads) heads of pairs")
        let d = rows / heads, half = d / 2
        var out = [Float](repeating: 0, count: w.count)
        w.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for i in 0..<half {
                        for j in 0..<2 {
                            let from = (h * d + 2 * i + j) * cols
                            let to = (h * d + j * half + i) * cols
                            dst.baseAddress!.advanced(by: to).update(from: src.baseAddress!.advanced(by: from), count: cols)
                        }
                    }
                }
            }
        }
        return out
    }

    /// llama.cpp's forward permutation (Hugging Face → GGUF row order), the inverse of the above.
    public static func permute(_ w: [Float], rows: Int, cols: Int, heads: Int) -> [Float] {
        precondition(rows % (2 * heads) == 0 && w.count == rows * cols, "rows \(rows) do not split into \(heads) heads of pairs")
        let d = rows / heads, half = d / 2
        var out = [Float](repeating: 0, count: w.count)
        for h in 0..<heads {
            for i in 0..<half {
                for j in 0..<2 {
                    let from = (h * d + j * half + i) * cols
                    let to = (h * d + 2 * i + j) * cols
                    for c in 0..<cols { out[to + c] = w[from + c] }
                }
            }
        }
        return out
    }
}
