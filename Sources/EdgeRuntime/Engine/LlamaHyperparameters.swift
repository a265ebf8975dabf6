import Foundation

/// The shape of a Llama-family decoder as the engine needs it, independent of how config.json was
/// spelled (transformers 4.x `rope_theta`/`rope_scaling` or 5.x `rope_parameters`).
public struct LlamaHyperparameters: Sendable, Equatable {
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var vocabularySize: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    public var ropeScaling: RopeScaling?
    /// Longest sequence the KV cache will hold (max_position_embeddings unless configured lower).
    public var contextLength: Int
    public var tieWordEmbeddings: Bool

    /// RoPE frequency scaling variants transformers applies to Llama models.
    public enum RopeScaling: Sendable, Equatable {
        /// Positions divided by `factor` (equivalently every frequency).
        case linear(factor: Float)
        /// Llama 3.x: low frequencies divided by `factor`, high ones kept, smooth in between.
        case llama3(factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int)
    }

    public init(
        hiddenSize: Int, intermediateSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
        headDim: Int? = nil, vocabularySize: Int, rmsNormEps: Float, ropeTheta: Float,
        ropeScaling: RopeScaling? = nil, contextLength: Int, tieWordEmbeddings: Bool
    ) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.layerCount = layerCount
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDim = headDim ?? (headCount > 0 ? hiddenSize / headCount : 0)
        self.vocabularySize = vocabularySize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling
        self.contextLength = contextLength
        self.tieWordEmbeddings = tieWordEmbeddings
    }

    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    /// KV cache bytes one position costs (f32 keys and values over all layers).
    public var kvBytesPerPosition: Int { layerCount * 2 * kvDim * MemoryLayout<Float>.size }

    /// Checks the numbers are consistent before anything is allocated from them.
    public func validate(path: String) throws(EngineError) {
        func bad(_ r: String) -> EngineError { .badModel(path: path, reason: r) }
        for (name, v) in [("hidden_size", hiddenSize), ("intermediate_size", intermediateSize), ("num_hidden_layers", layerCount),
                          ("num_attention_heads", headCount), ("num_key_value_heads", kvHeadCount), ("head_dim", headDim),
                          ("vocab_size", vocabularySize), ("context length", contextLength)] where v <= 0 {
            throw bad("config.json: \(name) is \(v), must be positive")
        }
        guard headCount % kvHeadCount == 0 else { throw bad("config.json: num_attention_heads \(headCount) is not a multiple of num_key_value_heads \(kvHeadCount)") }
        guard headDim % 2 == 0 else { throw bad("config.json: head_dim \(headDim) must be even for RoPE") }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw bad("config.json: rms_norm_eps \(rmsNormEps) must be positive") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw bad("config.json: rope_theta \(ropeTheta) must be positive") }
    }

    /// RoPE inverse frequencies [headDim / 2], computed in fp32 the way transformers does (including
    /// its rope-scaling variants), so angles match the reference bit for bit in the common case.
    public func ropeInverseFrequencies() -> [Float] {
        let half = headDim / 2
        var inv = (0..<half).map { j -> Float in 1 / powf(ropeTheta, Float(2 * j) / Float(headDim)) }
        switch ropeScaling {
        case nil:
            break
        case .linear(let factor):
            inv = inv.map { $0 / factor }
        case .llama3(let factor, let low, let high, let original):
            let lowWavelen = Float(original) / low
            let highWavelen = Float(original) / high
            inv = inv.map { f in
                let wavelen = 2 * Float.pi / f
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return f / factor }
                let smooth = (Float(original) / wavelen - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        }
        return inv
    }
}
