/// The seven linear projections of a Llama decoder layer that LoRA may adapt, named as Hugging Face
/// names the modules. `rawValue` is the module name; `parent` the submodule holding it.
public enum LoRAProjection: String, CaseIterable, Sendable, Codable, Comparable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// `self_attn` for the attention projections, `mlp` for the feed-forward ones.
    public var parent: String {
        switch self {
        case .q, .k, .v, .o: "self_attn"
        case .gate, .up, .down: "mlp"
        }
    }

    /// Position in `allCases` (0..<7), used to index per-layer tables.
    public var ordinal: Int {
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

    public static func < (a: LoRAProjection, b: LoRAProjection) -> Bool { a.ordinal < b.ordinal }
}
