/// The dimensions of a Llama decoder the trainer needs. Built from the model's config.
public struct TrainingModelShape: Sendable, Equatable {
    public var hidden: Int
    public var intermediate: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocab: Int
    public var rmsEps: Float
    public var ropeTheta: Double

    public init(hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                vocab: Int, rmsEps: Float, ropeTheta: Double) {
        self.hidden = hidden; self.intermediate = intermediate; self.layers = layers
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.vocab = vocab
        self.rmsEps = rmsEps; self.ropeTheta = ropeTheta
    }

    /// (out, in) of a projection.
    public func dims(of target: LoRATarget) -> (out: Int, in: Int) {
        switch target {
        case .q: return (heads * headDim, hidden)
        case .k, .v: return (kvHeads * headDim, hidden)
        case .o: return (hidden, heads * headDim)
        case .gate, .up: return (intermediate, hidden)
        case .down: return (hidden, intermediate)
        }
    }

    func validate() throws(TrainingError) {
        guard hidden > 0, intermediate > 0, layers > 0, heads > 0, kvHeads > 0, headDim > 0, vocab > 0 else {
            throw .modelUnsupported(reason: "a dimension in the config is zero or negative")
        }
        guard heads % kvHeads == 0 else {
            throw .modelUnsupported(reason: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
        }
        guard headDim % 2 == 0 else { throw .modelUnsupported(reason: "head_dim \(headDim) is odd; RoPE needs pairs") }
    }
}

/// The frozen base a LoRA is trained over: f32 embeddings and norms, frozen projections, and the
/// output head (the embedding itself when tied). Immutable after construction.
public final class TrainingBaseModel: @unchecked Sendable {
    public struct Layer: Sendable {
        public let inputNorm: [Float]          // [hidden]
        public let postAttentionNorm: [Float]  // [hidden]
        public let projections: [LoRATarget: any FrozenLinear]
        public init(inputNorm: [Float], postAttentionNorm: [Float], projections: [LoRATarget: any FrozenLinear]) {
            self.inputNorm = inputNorm; self.postAttentionNorm = postAttentionNorm; self.projections = projections
        }
    }

    public let shape: TrainingModelShape
    let embedding: UnsafePointer<Float>   // [vocab, hidden]
    let lmHead: UnsafePointer<Float>      // [vocab, hidden]; the same memory as embedding when tied
    public let finalNorm: [Float]   // [hidden]
    public let layers: [Layer]
    /// Kept alive for as long as pointers point into it (the mapped model file, f32 copies).
    let owners: [AnyObject]

    public convenience init(shape: TrainingModelShape, embedding: [Float], lmHead: [Float]?, finalNorm: [Float],
                            layers: [Layer], owner: AnyObject? = nil) throws(TrainingError) {
        guard embedding.count == shape.vocab * shape.hidden else {
            throw .shapeMismatch(what: "embed_tokens", expected: [shape.vocab, shape.hidden], found: [embedding.count])
        }
        if let lmHead, lmHead.count != shape.vocab * shape.hidden {
            throw .shapeMismatch(what: "lm_head", expected: [shape.vocab, shape.hidden], found: [lmHead.count])
        }
        let e = TrainBuffer(embedding)
        let h = lmHead.map { TrainBuffer($0) }
        try self.init(shape: shape, embedding: UnsafePointer(e.pointer), lmHead: h.map { UnsafePointer($0.pointer) },
                      finalNorm: finalNorm, layers: layers, owners: [e] + (h.map { [$0] } ?? []) + (owner.map { [$0] } ?? []))
    }

    /// Zero-copy form: embedding / lmHead point at [vocab, hidden] f32 memory kept alive by `owners`
    /// (e.g. the mapped model file), so the largest tensor is not duplicated in RAM.
    public init(shape: TrainingModelShape, embedding: UnsafePointer<Float>, lmHead: UnsafePointer<Float>?, finalNorm: [Float],
                layers: [Layer], owners: [AnyObject]) throws(TrainingError) {
        try shape.validate()
        guard finalNorm.count == shape.hidden else {
            throw .shapeMismatch(what: "model.norm", expected: [shape.hidden], found: [finalNorm.count])
        }
        guard layers.count == shape.layers else {
            throw .modelUnsupported(reason: "config says \(shape.layers) layers, \(layers.count) were given")
        }
        for (i, layer) in layers.enumerated() {
            guard layer.inputNorm.count == shape.hidden, layer.postAttentionNorm.count == shape.hidden else {
                throw .shapeMismatch(what: "layers.\(i) norms", expected: [shape.hidden], found: [layer.inputNorm.count])
            }
            for t in LoRATarget.allCases {
                guard let p = layer.projections[t] else {
                    throw .modelUnsupported(reason: "layers.\(i).\(t.modulePath) is missing")
                }
                let d = shape.dims(of: t)
                guard p.outFeatures == d.out, p.inFeatures == d.in else {
                    throw .shapeMismatch(what: "layers.\(i).\(t.modulePath)", expected: [d.out, d.in], found: [p.outFeatures, p.inFeatures])
                }
            }
        }
        self.shape = shape
        self.embedding = embedding
        self.lmHead = lmHead ?? embedding
        self.finalNorm = finalNorm
        self.layers = layers
        self.owners = owners
    }
}
