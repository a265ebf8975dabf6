/// The seven linear projections of a Llama decoder layer, in the order the engine stores them.
public enum LlamaProjection: Int, CaseIterable, Sendable {
    case q, k, v, o, gate, up, down

    /// The module name in Hugging Face / PEFT keys (`self_attn.q_proj`, `mlp.down_proj`…).
    public var moduleName: String {
        switch self {
        case .q: return "q_proj"
        case .k: return "k_proj"
        case .v: return "v_proj"
        case .o: return "o_proj"
        case .gate: return "gate_proj"
        case .up: return "up_proj"
        case .down: return "down_proj"
        }
    }

    /// `self_attn` or `mlp`: the parent module in Hugging Face keys.
    public var blockName: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn"
        case .gate, .up, .down: return "mlp"
        }
    }

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
