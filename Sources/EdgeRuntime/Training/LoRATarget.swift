/// The seven Llama projections LoRA can adapt, with their PEFT module names.
public enum LoRATarget: String, CaseIterable, Sendable, Codable {
    case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj"
    case gate = "gate_proj", up = "up_proj", down = "down_proj"

    /// Path below `model.layers.{L}.` in Hugging Face Llama checkpoints.
    public var modulePath: String {
        switch self {
        case .q, .k, .v, .o: return "self_attn.\(rawValue)"
        case .gate, .up, .down: return "mlp.\(rawValue)"
        }
    }

    /// Parses "q_proj" or "q"; nil when unknown.
    public init?(name: String) {
        if let t = LoRATarget(rawValue: name) { self = t; return }
        if let t = LoRATarget(rawValue: name + "_proj") { self = t; return }
        return nil
    }
}
