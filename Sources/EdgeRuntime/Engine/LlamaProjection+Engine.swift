// `LlamaProjection` itself (the seven projections by Hugging Face module path) is declared by the
// model loader (Model/NF4Model.swift); this is what the engine adds to it.

extension LlamaProjection {
    /// Position in `allCases` (0..<7): the index of per-layer tables.
    public var index: Int {
        switch self {
        case .q: 0
        case .k: 1
        case .v: 2
        case .o: 3
        case .gate: 4
        case .up: 5
        case .down: 6
        }
    }

    /// The module name in Hugging Face / PEFT keys (`q_proj`, `down_proj`…).
    public var moduleName: String { String(rawValue.split(separator: ".").last!) }

    /// `self_attn` or `mlp`: the parent module in Hugging Face keys.
    public var blockName: String { String(rawValue.split(separator: ".").first!) }

    public init?(moduleName: String) {
        guard let p = Self.allCases.first(where: { $0.moduleName == moduleName }) else { return nil }
        self = p
    }

    /// (out_features, in_features) of this projection for a model shape.
    public func shape(_ hp: LlamaHyperparameters) -> (rows: Int, cols: Int) {
        switch self {
        case .q: return (hp.qDim, hp.hiddenSize)
        case .k, .v: return (hp.kvDim, hp.hiddenSize)
        case .o: return (hp.hiddenSize, hp.qDim)
        case .gate, .up: return (hp.intermediateSize, hp.hiddenSize)
        case .down: return (hp.hiddenSize, hp.intermediateSize)
        }
    }
}
