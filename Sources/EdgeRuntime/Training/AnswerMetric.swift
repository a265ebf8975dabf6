import Foundation

/// How held-out answers are scored after training (the eval gate's optional second check).
/// - `exactMatch`: the greedy answer equals the reference answer (whitespace-trimmed).
/// - `jsonFields`: the greedy answer parses as a JSON object with exactly the reference object's
///   keys (values may differ) — "the adapter learned the output format". A reference that is not
///   a JSON object cannot be matched, so that row counts as a miss.
public enum AnswerMetric: String, Codable, Sendable, CaseIterable {
    case exactMatch = "exact_match"
    case jsonFields = "json_fields"
}

/// Counts from scoring greedy answers on held-out prompts.
public struct AnswerScore: Codable, Sendable, Equatable {
    public var prompts = 0
    public var exact = 0
    /// Answers that are a JSON object with the reference object's fields.
    public var jsonWithFields = 0

    public init(prompts: Int = 0, exact: Int = 0, jsonWithFields: Int = 0) {
        self.prompts = prompts
        self.exact = exact
        self.jsonWithFields = jsonWithFields
    }

    /// Fraction of prompts passing `metric` (0 when there were none).
    public func rate(_ metric: AnswerMetric) -> Double {
        guard prompts > 0 else { return 0 }
        return Double(metric == .exactMatch ? exact : jsonWithFields) / Double(prompts)
    }

    public var summary: String {
        "\(jsonWithFields)/\(prompts) valid JSON with the expected fields, \(exact)/\(prompts) exact"
    }

    /// Scores one answer against its reference and adds it to the counts.
    public mutating func add(answer: String, reference: String) {
        prompts += 1
        let a = answer.trimmingCharacters(in: .whitespacesAndNewlines)
        let r = reference.trimmingCharacters(in: .whitespacesAndNewlines)
        if a == r { exact += 1 }
        if let want = Self.objectKeys(r), let got = Self.objectKeys(a), want == got { jsonWithFields += 1 }
    }

    /// The key set of a JSON object text; nil when the text is not exactly one JSON object.
    static func objectKeys(_ text: String) -> Set<String>? {
        guard let value = try? JSONValue.parse(Array(text.utf8)), case let .object(pairs) = value else { return nil }
        return Set(pairs.map(\.0))
    }
}
