/// Decides whether a newly trained adapter version is served: its held-out loss must beat the
/// previous version's (or the base model's, for a first version) by `relativeMargin`.
public struct EvalGate: Codable, Sendable, Equatable {
    /// Required relative improvement, e.g. 0.02 = the new loss must be at least 2% lower.
    public var relativeMargin: Double = 0.02

    public init(relativeMargin: Double = 0.02) { self.relativeMargin = relativeMargin }

    public enum Verdict: Equatable, Sendable, Codable {
        case promote
        case reject(String)
    }

    public func decide(newLoss: Double, previousLoss: Double) -> Verdict {
        guard newLoss.isFinite else { return .reject("the new held-out loss is not finite") }
        let threshold = previousLoss * (1 - relativeMargin)
        if newLoss < threshold { return .promote }
        return .reject(String(format: "held-out loss %.5f does not beat the previous %.5f by %.1f%% (needs < %.5f)",
                              newLoss, previousLoss, relativeMargin * 100, threshold))
    }
}
