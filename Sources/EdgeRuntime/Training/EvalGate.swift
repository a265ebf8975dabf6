/// Decides whether a newly trained adapter version is served: its held-out loss must beat the
/// previous version's (or the base model's, for a first version) by `relativeMargin`; with
/// `answerMetric` set, its greedy answers to the held-out prompts must also pass that metric for
/// at least `minimumAnswerRate` of them (a loss can fall while the answers are still unusable).
public struct EvalGate: Codable, Sendable, Equatable {
    /// Required relative improvement, e.g. 0.02 = the new loss must be at least 2% lower.
    public var relativeMargin: Double = 0.02
    /// nil: loss only (no generation after training).
    public var answerMetric: AnswerMetric?
    /// Fraction of held-out prompts whose greedy answer must pass `answerMetric`, 0…1.
    public var minimumAnswerRate: Double = 0.5

    public init(relativeMargin: Double = 0.02, answerMetric: AnswerMetric? = nil, minimumAnswerRate: Double = 0.5) {
        self.relativeMargin = relativeMargin
        self.answerMetric = answerMetric
        self.minimumAnswerRate = minimumAnswerRate
    }

    public enum Verdict: Equatable, Sendable, Codable {
        case promote
        case reject(String)
    }

    public func decide(newLoss: Double, previousLoss: Double, answers: AnswerScore? = nil) -> Verdict {
        guard newLoss.isFinite else { return .reject("the new held-out loss is not finite") }
        let threshold = previousLoss * (1 - relativeMargin)
        guard newLoss < threshold else {
            return .reject(String(format: "held-out loss %.5f does not beat the previous %.5f by %.1f%% (needs < %.5f)",
                                  newLoss, previousLoss, relativeMargin * 100, threshold))
        }
        if let metric = answerMetric {
            guard let answers else { return .reject("the held-out answers were not scored (\(metric.rawValue) is required)") }
            let rate = answers.rate(metric)
            if rate < minimumAnswerRate {
                return .reject(String(format: "held-out answers: %@; %@ passes for %.0f%% of prompts, %.0f%% required",
                                      answers.summary, metric.rawValue, rate * 100, minimumAnswerRate * 100))
            }
        }
        return .promote
    }
}
