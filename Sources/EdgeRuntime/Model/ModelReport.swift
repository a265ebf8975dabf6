import AdapterCache
import Foundation

/// What `edgectl model info` reports about an opened model directory.
public struct ModelReport: Sendable {
    public let directory: String
    public let config: LlamaConfig
    /// Logical parameters (a tied lm_head counted once).
    public let parameterCount: Int
    /// Parameters held by the NF4 projections.
    public let quantisedParameterCount: Int
    /// Stored bytes per safetensors dtype, over every tensor in the file.
    public let bytesPerDType: [String: Int]
    /// Stored bits of the NF4 projections (codes + statistics + maps + quant_state) per projection weight.
    public let quantisedBitsPerWeight: Double
    /// All tensor bytes of the file, in bits per logical parameter.
    public let bitsPerWeight: Double
    public let fileBytes: Int
    /// sha256 of model.safetensors (what adapters are tied to).
    public let digest: String
    /// e.g. "bitsandbytes nf4, blocksize 64, double quant (nested blocksize 256)".
    public let quantization: String

    public init(model: NF4Model) {
        directory = model.directory
        config = model.config
        parameterCount = config.parameterCount
        var perDType: [String: Int] = [:]
        var quantisedBytes = 0
        let projectionPrefixes = Set(model.layers.flatMap { l in LlamaProjection.allCases.map { l[$0].name + ".weight" } })
        for t in model.file.tensors.values {
            perDType[t.dtype.rawValue, default: 0] += t.byteRange.count
            let base = t.name.hasSuffix(".weight") ? t.name : t.name.components(separatedBy: ".weight.").first.map { $0 + ".weight" } ?? t.name
            if projectionPrefixes.contains(base) { quantisedBytes += t.byteRange.count }
        }
        bytesPerDType = perDType
        quantisedParameterCount = model.layers.reduce(0) { acc, l in acc + LlamaProjection.allCases.reduce(0) { $0 + l[$1].elementCount } }
        quantisedBitsPerWeight = quantisedParameterCount > 0 ? Double(quantisedBytes * 8) / Double(quantisedParameterCount) : 0
        let totalBytes = perDType.values.reduce(0, +)
        bitsPerWeight = parameterCount > 0 ? Double(totalBytes * 8) / Double(parameterCount) : 0
        fileBytes = model.file.fileBytes.count
        digest = model.digest()
        if let q = model.layers.first?.q {
            quantization = "bitsandbytes nf4, blocksize \(q.blocksize)" + (q.isDoubleQuantised ? ", double quant (nested blocksize \(q.nestedBlocksize))" : "")
        } else {
            quantization = "none"
        }
    }

    public var json: OrderedJSON {
        let c = config
        var hyper: [(String, OrderedJSON)] = [
            ("hidden_size", .int(c.hiddenSize)), ("intermediate_size", .int(c.intermediateSize)),
            ("num_hidden_layers", .int(c.numHiddenLayers)), ("num_attention_heads", .int(c.numAttentionHeads)),
            ("num_key_value_heads", .int(c.numKeyValueHeads)), ("head_dim", .int(c.headDim)),
            ("vocab_size", .int(c.vocabSize)), ("max_position_embeddings", .int(c.maxPositionEmbeddings)),
            ("rms_norm_eps", .double(c.rmsNormEps)), ("rope_theta", .double(c.ropeTheta)),
            ("tie_word_embeddings", .bool(c.tieWordEmbeddings)),
        ]
        if let s = c.ropeScaling { hyper.append(("rope_scaling", .string(s.ropeType))) }
        return .object([
            ("directory", .string(directory)),
            ("architecture", .string(c.architectures.first ?? "LlamaForCausalLM")),
            ("model_type", .string(c.modelType)),
            ("hyperparameters", .object(hyper)),
            ("parameters", .int(parameterCount)),
            ("quantized_parameters", .int(quantisedParameterCount)),
            ("quantization", .string(quantization)),
            ("bytes_per_dtype", .object(bytesPerDType.keys.sorted().map { ($0, .int(bytesPerDType[$0]!)) })),
            ("file_bytes", .int(fileBytes)),
            ("bits_per_weight", .double((bitsPerWeight * 1000).rounded() / 1000)),
            ("quantized_bits_per_weight", .double((quantisedBitsPerWeight * 1000).rounded() / 1000)),
            ("digest", .string("sha256:" + digest)),
        ])
    }

    /// The human-readable report.
    public var text: String {
        let c = config
        func mb(_ b: Int) -> String { String(format: "%.1f MB", Double(b) / 1e6) }
        var lines = [
            "model         \(directory)",
            "architecture  \(c.architectures.first ?? "LlamaForCausalLM") (\(c.modelType))",
            "layers        \(c.numHiddenLayers), hidden \(c.hiddenSize), intermediate \(c.intermediateSize)",
            "attention     \(c.numAttentionHeads) heads, \(c.numKeyValueHeads) kv heads, head_dim \(c.headDim)",
            "vocabulary    \(c.vocabSize), context \(c.maxPositionEmbeddings), tied embeddings: \(c.tieWordEmbeddings ? "yes" : "no")",
            "rope          theta \(c.ropeTheta)\(c.ropeScaling.map { ", scaling \($0.ropeType)" } ?? ""), rms_norm_eps \(c.rmsNormEps)",
            "parameters    \(parameterCount) (\(quantisedParameterCount) in NF4 projections)",
            "quantization  \(quantization)",
        ]
        for k in bytesPerDType.keys.sorted() { lines.append("bytes \(k.padding(toLength: 8, withPad: " ", startingAt: 0))\(mb(bytesPerDType[k]!))") }
        lines.append(String(format: "bits/weight   %.3f overall, %.3f in NF4 projections", bitsPerWeight, quantisedBitsPerWeight))
        lines.append("digest        sha256:\(digest)")
        return lines.joined(separator: "\n")
    }
}
