import AdapterCache
import Foundation

/// A Hugging Face Llama `config.json`, read as both transformers generations write it: 4.x keeps
/// `rope_theta` and `rope_scaling` at the top level, 5.x nests them in `rope_parameters`; 5.x also says
/// `dtype` where 4.x says `torch_dtype`. A missing `head_dim` means hidden_size / num_attention_heads.
public struct LlamaConfig: Sendable, Equatable {
    public var architectures: [String]
    public var modelType: String
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling?
    public var maxPositionEmbeddings: Int
    public var vocabSize: Int
    public var tieWordEmbeddings: Bool
    public var bosTokenID: Int?
    /// One id, or several (Llama 3 instruct models list more than one).
    public var eosTokenIDs: [Int]
    public var padTokenID: Int?
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var hiddenAct: String
    /// "float32", "float16" or "bfloat16" (the dtype of the unquantised weights).
    public var torchDtype: String
    /// bitsandbytes settings when the model is quantised (the `quantization_config` object).
    public var quantization: Quantization?

    /// RoPE frequency scaling (`rope_scaling` in 4.x, the non-default part of `rope_parameters` in 5.x).
    public struct RopeScaling: Sendable, Equatable {
        /// "linear", "dynamic", "llama3", "yarn", ...
        public var ropeType: String
        public var factor: Double?
        public var lowFreqFactor: Double?
        public var highFreqFactor: Double?
        public var originalMaxPositionEmbeddings: Int?

        public init(ropeType: String, factor: Double? = nil, lowFreqFactor: Double? = nil, highFreqFactor: Double? = nil, originalMaxPositionEmbeddings: Int? = nil) {
            self.ropeType = ropeType
            self.factor = factor
            self.lowFreqFactor = lowFreqFactor
            self.highFreqFactor = highFreqFactor
            self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        }
    }

    public struct Quantization: Sendable, Equatable {
        public var quantMethod: String
        public var loadIn4bit: Bool
        public var quantType: String
        public var useDoubleQuant: Bool
        public var computeDtype: String?
        public var quantStorage: String?
    }

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int, numAttentionHeads: Int, numKeyValueHeads: Int,
                headDim: Int? = nil, rmsNormEps: Double, ropeTheta: Double, ropeScaling: RopeScaling? = nil,
                maxPositionEmbeddings: Int, vocabSize: Int, tieWordEmbeddings: Bool, bosTokenID: Int?, eosTokenIDs: [Int],
                padTokenID: Int? = nil, torchDtype: String = "float32") {
        architectures = ["LlamaForCausalLM"]
        modelType = "llama"
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.vocabSize = vocabSize
        self.tieWordEmbeddings = tieWordEmbeddings
        self.bosTokenID = bosTokenID
        self.eosTokenIDs = eosTokenIDs
        self.padTokenID = padTokenID
        attentionBias = false
        mlpBias = false
        hiddenAct = "silu"
        self.torchDtype = torchDtype
        quantization = nil
    }

    // MARK: - Derived sizes

    public var qDim: Int { numAttentionHeads * headDim }
    public var kvDim: Int { numKeyValueHeads * headDim }

    /// The seven decoder projections, with their HF module suffix and `[out, in]` shape.
    public var projections: [(name: String, shape: [Int])] {
        [("self_attn.q_proj", [qDim, hiddenSize]), ("self_attn.k_proj", [kvDim, hiddenSize]),
         ("self_attn.v_proj", [kvDim, hiddenSize]), ("self_attn.o_proj", [hiddenSize, qDim]),
         ("mlp.gate_proj", [intermediateSize, hiddenSize]), ("mlp.up_proj", [intermediateSize, hiddenSize]),
         ("mlp.down_proj", [hiddenSize, intermediateSize])]
    }

    /// Parameters of the unquantised model (embeddings, projections, norms, lm_head when untied).
    public var parameterCount: Int {
        let perLayer = projections.reduce(0) { $0 + $1.shape[0] * $1.shape[1] } + 2 * hiddenSize
        return vocabSize * hiddenSize * (tieWordEmbeddings ? 1 : 2) + numHiddenLayers * perLayer + hiddenSize
    }

    // MARK: - Reading

    /// Reads and validates `config.json` at `path`.
    public static func load(path: String) throws(ModelError) -> LlamaConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            if !FileManager.default.fileExists(atPath: path) { throw .missingFile(path: path, what: "a model directory needs config.json (a Hugging Face Llama config)") }
            throw .io(path: path, reason: error.localizedDescription)
        }
        return try decode(data, path: path)
    }

    public static func decode(_ data: Data, path: String) throws(ModelError) -> LlamaConfig {
        guard String(data: data, encoding: .utf8) != nil else { throw .badConfig(path: path, key: "(file)", reason: "is not valid UTF-8") }
        let raw: Raw
        do { raw = try JSONDecoder().decode(Raw.self, from: data) } catch {
            let key: String
            switch error {
            case DecodingError.keyNotFound(let k, let c): key = (c.codingPath + [k]).map(\.stringValue).joined(separator: ".")
            case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c): key = c.codingPath.map(\.stringValue).joined(separator: ".")
            default: key = "(file)"
            }
            throw .badConfig(path: path, key: key.isEmpty ? "(file)" : key, reason: "is invalid: \(ModelError.describe(decoding: error))")
        }
        return try raw.validated(path: path)
    }

    private struct Raw: Decodable {
        var architectures: [String]?
        var model_type: String?
        var hidden_size: Int
        var intermediate_size: Int
        var num_hidden_layers: Int
        var num_attention_heads: Int
        var num_key_value_heads: Int?
        var head_dim: Int?
        var rms_norm_eps: Double?
        var rope_theta: Double?
        var rope_scaling: RawRope?
        var rope_parameters: RawRope?
        var max_position_embeddings: Int?
        var vocab_size: Int
        var tie_word_embeddings: Bool?
        var bos_token_id: Int?
        var eos_token_id: IntOrList?
        var pad_token_id: Int?
        var attention_bias: Bool?
        var mlp_bias: Bool?
        var hidden_act: String?
        var torch_dtype: String?
        var dtype: String?
        var quantization_config: RawQuant?

        struct RawRope: Decodable {
            var rope_type: String?
            var type: String?
            var rope_theta: Double?
            var factor: Double?
            var low_freq_factor: Double?
            var high_freq_factor: Double?
            var original_max_position_embeddings: Int?
        }

        struct RawQuant: Decodable {
            var quant_method: String?
            var load_in_4bit: Bool?
            var bnb_4bit_quant_type: String?
            var bnb_4bit_use_double_quant: Bool?
            var bnb_4bit_compute_dtype: String?
            var bnb_4bit_quant_storage: String?
        }

        enum IntOrList: Decodable {
            case one(Int), many([Int])
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let i = try? c.decode(Int.self) { self = .one(i) } else { self = .many(try c.decode([Int].self)) }
            }
            var ids: [Int] { switch self { case .one(let i): [i]; case .many(let l): l } }
        }

        func validated(path: String) throws(ModelError) -> LlamaConfig {
            let modelType = model_type ?? "llama"
            guard modelType == "llama" else {
                throw .unsupportedArchitecture(path: path, architecture: "model_type \(modelType)")
            }
            if let architectures, !architectures.isEmpty, !architectures.contains("LlamaForCausalLM") {
                throw .unsupportedArchitecture(path: path, architecture: architectures.joined(separator: ", "))
            }
            func positive(_ v: Int, _ key: String) throws(ModelError) {
                guard v > 0 else { throw .badConfig(path: path, key: key, reason: "must be a positive integer (found \(v))") }
            }
            try positive(hidden_size, "hidden_size")
            try positive(intermediate_size, "intermediate_size")
            try positive(num_hidden_layers, "num_hidden_layers")
            try positive(num_attention_heads, "num_attention_heads")
            try positive(vocab_size, "vocab_size")
            let kvHeads = num_key_value_heads ?? num_attention_heads
            try positive(kvHeads, "num_key_value_heads")
            guard num_attention_heads % kvHeads == 0 else {
                throw .badConfig(path: path, key: "num_key_value_heads", reason: "\(kvHeads) does not divide num_attention_heads \(num_attention_heads)")
            }
            if head_dim == nil, hidden_size % num_attention_heads != 0 {
                throw .badConfig(path: path, key: "head_dim", reason: "is missing and hidden_size \(hidden_size) is not a multiple of num_attention_heads \(num_attention_heads)")
            }
            let headDim = head_dim ?? hidden_size / num_attention_heads
            try positive(headDim, "head_dim")
            guard headDim % 2 == 0 else { throw .badConfig(path: path, key: "head_dim", reason: "must be even for RoPE (found \(headDim))") }
            let eps = rms_norm_eps ?? 1e-6
            guard eps > 0, eps.isFinite else { throw .badConfig(path: path, key: "rms_norm_eps", reason: "must be a positive number") }
            let theta = rope_parameters?.rope_theta ?? rope_theta ?? 10000
            guard theta > 0, theta.isFinite else { throw .badConfig(path: path, key: "rope_theta", reason: "must be a positive number") }
            var scaling: RopeScaling?
            for (key, rope) in [("rope_parameters", rope_parameters), ("rope_scaling", rope_scaling)] {
                guard scaling == nil, let rope else { continue }
                let type = rope.rope_type ?? rope.type ?? "default"
                if type == "default" { continue }
                if type == "llama3" {
                    guard let f = rope.factor, f > 0, rope.low_freq_factor != nil, rope.high_freq_factor != nil,
                          let o = rope.original_max_position_embeddings, o > 0 else {
                        throw .badConfig(path: path, key: key, reason: "llama3 rope scaling needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
                    }
                }
                scaling = RopeScaling(ropeType: type, factor: rope.factor, lowFreqFactor: rope.low_freq_factor,
                                      highFreqFactor: rope.high_freq_factor, originalMaxPositionEmbeddings: rope.original_max_position_embeddings)
            }
            let dtypeName = torch_dtype ?? dtype ?? "float32"
            guard ["float32", "float16", "bfloat16"].contains(dtypeName) else {
                throw .badConfig(path: path, key: torch_dtype != nil ? "torch_dtype" : "dtype", reason: "'\(dtypeName)' is not float32, float16 or bfloat16")
            }
            if let hidden_act, hidden_act != "silu" {
                throw .badConfig(path: path, key: "hidden_act", reason: "'\(hidden_act)' is not supported (Llama uses silu)")
            }
            var c = LlamaConfig(hiddenSize: hidden_size, intermediateSize: intermediate_size, numHiddenLayers: num_hidden_layers,
                                numAttentionHeads: num_attention_heads, numKeyValueHeads: kvHeads, headDim: headDim, rmsNormEps: eps,
                                ropeTheta: theta, ropeScaling: scaling, maxPositionEmbeddings: max_position_embeddings ?? 2048,
                                vocabSize: vocab_size, tieWordEmbeddings: tie_word_embeddings ?? false, bosTokenID: bos_token_id,
                                eosTokenIDs: eos_token_id?.ids ?? [], padTokenID: pad_token_id, torchDtype: dtypeName)
            c.architectures = architectures ?? ["LlamaForCausalLM"]
            c.attentionBias = attention_bias ?? false
            c.mlpBias = mlp_bias ?? false
            if c.attentionBias || c.mlpBias {
                throw .badConfig(path: path, key: c.attentionBias ? "attention_bias" : "mlp_bias", reason: "is true; biased Llama projections are not supported")
            }
            if let q = quantization_config {
                c.quantization = Quantization(quantMethod: q.quant_method ?? "", loadIn4bit: q.load_in_4bit ?? false,
                                              quantType: q.bnb_4bit_quant_type ?? "fp4", useDoubleQuant: q.bnb_4bit_use_double_quant ?? false,
                                              computeDtype: q.bnb_4bit_compute_dtype, quantStorage: q.bnb_4bit_quant_storage)
            }
            return c
        }
    }

    // MARK: - Writing

    /// The `quantization_config` NF4.md §6 prescribes (bitsandbytes NF4, double quantisation).
    public static let nf4QuantizationConfig: OrderedJSON = .object([
        ("quant_method", .string("bitsandbytes")), ("load_in_4bit", .bool(true)), ("load_in_8bit", .bool(false)),
        ("bnb_4bit_quant_type", .string("nf4")), ("bnb_4bit_use_double_quant", .bool(true)),
        ("bnb_4bit_compute_dtype", .string("float32")), ("bnb_4bit_quant_storage", .string("uint8")),
        ("llm_int8_threshold", .double(6.0)), ("llm_int8_skip_modules", .null),
        ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
        ("_load_in_4bit", .bool(true)), ("_load_in_8bit", .bool(false)),
    ])

    /// config.json as written by the importer: keys sorted as transformers sorts them, rope settings in
    /// both the 4.x (`rope_theta`, `rope_scaling`) and 5.x (`rope_parameters`) spellings.
    public func jsonObject(quantizationConfig: OrderedJSON?) -> OrderedJSON {
        var m: [(String, OrderedJSON)] = [
            ("architectures", .array(architectures.map(OrderedJSON.string))),
            ("attention_bias", .bool(attentionBias)),
            ("attention_dropout", .double(0.0)),
            ("bos_token_id", bosTokenID.map(OrderedJSON.int) ?? .null),
            ("eos_token_id", eosTokenIDs.count == 1 ? .int(eosTokenIDs[0]) : (eosTokenIDs.isEmpty ? .null : .array(eosTokenIDs.map(OrderedJSON.int)))),
            ("head_dim", .int(headDim)),
            ("hidden_act", .string(hiddenAct)),
            ("hidden_size", .int(hiddenSize)),
            ("initializer_range", .double(0.02)),
            ("intermediate_size", .int(intermediateSize)),
            ("max_position_embeddings", .int(maxPositionEmbeddings)),
            ("mlp_bias", .bool(mlpBias)),
            ("model_type", .string(modelType)),
            ("num_attention_heads", .int(numAttentionHeads)),
            ("num_hidden_layers", .int(numHiddenLayers)),
            ("num_key_value_heads", .int(numKeyValueHeads)),
        ]
        if let padTokenID { m.append(("pad_token_id", .int(padTokenID))) }
        m.append(("pretraining_tp", .int(1)))
        if let quantizationConfig { m.append(("quantization_config", quantizationConfig)) }
        m.append(("rms_norm_eps", .double(rmsNormEps)))
        var ropeParameters: [(String, OrderedJSON)] = [("rope_theta", .double(ropeTheta)), ("rope_type", .string(ropeScaling?.ropeType ?? "default"))]
        var scalingJSON: OrderedJSON = .null
        if let s = ropeScaling {
            var fields: [(String, OrderedJSON)] = []
            if let f = s.factor { fields.append(("factor", .double(f))) }
            if let h = s.highFreqFactor { fields.append(("high_freq_factor", .double(h))) }
            if let l = s.lowFreqFactor { fields.append(("low_freq_factor", .double(l))) }
            if let o = s.originalMaxPositionEmbeddings { fields.append(("original_max_position_embeddings", .int(o))) }
            scalingJSON = .object(fields + [("rope_type", .string(s.ropeType))])
            ropeParameters = fields + ropeParameters
        }
        m.append(("rope_parameters", .object(ropeParameters)))
        m.append(("rope_scaling", scalingJSON))
        m.append(("rope_theta", .double(ropeTheta)))
        m.append(("tie_word_embeddings", .bool(tieWordEmbeddings)))
        m.append(("torch_dtype", .string(torchDtype)))
        m.append(("use_cache", .bool(true)))
        m.append(("vocab_size", .int(vocabSize)))
        return .object(m)
    }
}
