import Foundation

/// One chat turn of a training row.
public struct TrainingMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// Turns a conversation into token ids the way the model was trained to read it. The production
/// implementation renders the model's chat template and tokenizes it (`ChatTemplatePromptFormatter`).
public protocol TrainingPromptFormatter: Sendable {
    /// ids of template(messages, add_generation_prompt: true) — the context the answer follows.
    func promptIds(_ messages: [TrainingMessage]) throws -> [Int32]
    /// ids of the answer content followed by the end-of-turn token.
    func answerIds(_ content: String) throws -> [Int32]
    /// The id used for right padding.
    var padId: Int32 { get }
}

/// A tokenized example: the loss is taken on `answerIds` only.
public struct TrainingExample: Sendable, Equatable {
    public let line: Int            // 1-based line in its file
    public let promptIds: [Int32]
    public let answerIds: [Int32]
    public var tokenCount: Int { promptIds.count + answerIds.count }

    public init(line: Int, promptIds: [Int32], answerIds: [Int32]) {
        self.line = line; self.promptIds = promptIds; self.answerIds = answerIds
    }

    /// input = prompt + answer; labels = −100 on the prompt, the token itself on the answer
    /// (the trainer shifts: position t is scored against labels[t + 1]).
    public var sequence: (ids: [Int32], labels: [Int32]) {
        (promptIds + answerIds, Array(repeating: TrainingBatch.ignoreIndex, count: promptIds.count) + answerIds)
    }
}

/// JSONL training data: `{"messages": [{"role", "content"}, …]}` rows (the last message is the
/// assistant answer that is learned) or `{"instruction", "input", "output"}` rows (turned into a
/// user message and an assistant answer). Parsing is strict: every unusable row is reported with its
/// line number and why, instead of being silently dropped.
public struct TrainingDataset: Sendable {
    public let file: String
    public let examples: [TrainingExample]
    /// Rows that were skipped (only when loading with `skipBadRows`).
    public let skipped: [DatasetRowIssue]

    public static let knownRoles: Set<String> = ["system", "user", "assistant", "tool"]

    /// Parses JSONL rows into conversations; returns rows with their line numbers and the issues found.
    public static func parseRows(_ data: Data) -> (rows: [(line: Int, messages: [TrainingMessage])], issues: [DatasetRowIssue]) {
        var rows: [(Int, [TrainingMessage])] = []
        var issues: [DatasetRowIssue] = []
        let bytes = [UInt8](data)
        var lineNo = 0
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            if start == bytes.count && end == start { break }
            lineNo += 1
            var slice = bytes[start..<end]
            if slice.last == 0x0D { slice = slice.dropLast() }
            if lineNo == 1, slice.starts(with: [0xEF, 0xBB, 0xBF]) { slice = slice.dropFirst(3) }
            start = end + 1
            if slice.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }  // blank lines are allowed
            guard String(validating: slice, as: UTF8.self) != nil else {
                issues.append(.init(line: lineNo, reason: "not valid UTF-8; save the file as UTF-8"))
                continue
            }
            let object: Any
            do { object = try JSONSerialization.jsonObject(with: Data(slice), options: []) } catch {
                issues.append(.init(line: lineNo, reason: "invalid JSON (each line must be one JSON object)"))
                continue
            }
            guard let dict = object as? [String: Any] else {
                issues.append(.init(line: lineNo, reason: "a row must be a JSON object"))
                continue
            }
            switch conversation(from: dict) {
            case .success(let messages): rows.append((lineNo, messages))
            case .failure(let reason): issues.append(.init(line: lineNo, reason: reason.text))
            }
        }
        return (rows.map { (line: $0.0, messages: $0.1) }, issues)
    }

    struct RowProblem: Error { let text: String }

    static func conversation(from dict: [String: Any]) -> Result<[TrainingMessage], RowProblem> {
        if let raw = dict["messages"] {
            guard let list = raw as? [Any], !list.isEmpty else {
                return .failure(.init(text: "\"messages\" must be a non-empty array"))
            }
            var turns: [TrainingMessage] = []
            for (i, item) in list.enumerated() {
                guard let m = item as? [String: Any] else { return .failure(.init(text: "messages[\(i)] is not an object")) }
                guard let role = m["role"] as? String else { return .failure(.init(text: "messages[\(i)] has no \"role\"")) }
                guard knownRoles.contains(role) else {
                    return .failure(.init(text: "messages[\(i)] has unknown role \"\(role)\" (use system, user, assistant or tool)"))
                }
                guard let content = m["content"] as? String else {
                    return .failure(.init(text: "messages[\(i)] has no string \"content\""))
                }
                turns.append(TrainingMessage(role: role, content: content))
            }
            guard turns.last?.role == "assistant" else {
                return .failure(.init(text: "the last message must have role \"assistant\" (it is the answer to learn)"))
            }
            guard turns.dropLast().contains(where: { $0.role == "user" }) else {
                return .failure(.init(text: "no \"user\" message before the assistant answer"))
            }
            guard !turns.last!.content.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                return .failure(.init(text: "the assistant answer is empty"))
            }
            return .success(turns)
        }
        if dict["instruction"] != nil || dict["output"] != nil {
            guard let instruction = dict["instruction"] as? String else {
                return .failure(.init(text: "\"instruction\" is missing or not a string"))
            }
            guard let output = dict["output"] as? String else { return .failure(.init(text: "\"output\" is missing or not a string")) }
            if let input = dict["input"], !(input is String), !(input is NSNull) {
                return .failure(.init(text: "\"input\" must be a string"))
            }
            let input = (dict["input"] as? String) ?? ""
            guard !instruction.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                return .failure(.init(text: "\"instruction\" is empty"))
            }
            guard !output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return .failure(.init(text: "\"output\" is empty")) }
            let user = input.isEmpty ? instruction : instruction + "\n\n" + input
            return .success([TrainingMessage(role: "user", content: user), TrainingMessage(role: "assistant", content: output)])
        }
        return .failure(.init(text: "expected {\"messages\": [...]} or {\"instruction\", \"input\", \"output\"}"))
    }

    /// Parses and tokenizes a JSONL file's bytes. A row longer than maxLength tokens is a bad row.
    /// With `skipBadRows` false (the default) any bad row fails the whole file, listing all of them.
    public init(data: Data, file: String, formatter: any TrainingPromptFormatter, maxLength: Int,
                skipBadRows: Bool = false) throws(TrainingError) {
        let (rows, parseIssues) = Self.parseRows(data)
        var issues = parseIssues
        var examples: [TrainingExample] = []
        for row in rows {
            do {
                let prompt = try formatter.promptIds(Array(row.messages.dropLast()))
                let answer = try formatter.answerIds(row.messages.last!.content)
                let ex = TrainingExample(line: row.line, promptIds: prompt, answerIds: answer)
                if ex.tokenCount > maxLength {
                    issues.append(.init(line: row.line, reason: "too long: \(ex.tokenCount) tokens, the limit (max length) is \(maxLength)"))
                    continue
                }
                examples.append(ex)
            } catch {
                issues.append(.init(line: row.line, reason: "cannot be rendered with the chat template: \(error)"))
            }
        }
        issues.sort { $0.line < $1.line }
        if !issues.isEmpty && !skipBadRows { throw .badRows(file: file, rows: issues) }
        self.file = file
        self.examples = examples
        self.skipped = issues
    }

    public init(file: String, examples: [TrainingExample]) {
        self.file = file; self.examples = examples; self.skipped = []
    }

    /// Carves a held-out set off this dataset with a fixed seed: returns (train, held-out).
    /// At least one held-out example; at least `minimumTrain` remain for training.
    public func split(heldOutFraction: Double, seed: UInt64, minimumTrain: Int) throws(TrainingError) -> (TrainingDataset, TrainingDataset) {
        guard heldOutFraction > 0, heldOutFraction < 1 else {
            throw .invalidHyperparameter(name: "validation_fraction", reason: "\(heldOutFraction) must be between 0 and 1")
        }
        let nHeld = max(1, Int((Double(examples.count) * heldOutFraction).rounded()))
        guard examples.count - nHeld >= minimumTrain else {
            throw .datasetTooSmall(file: file, usable: examples.count, minimum: minimumTrain + nHeld,
                                   reason: "\(nHeld) held out for validation leaves fewer than \(minimumTrain) to train on")
        }
        var rng = SplitMix64(seed: seed ^ 0x5EED_0F_5EED)
        var order = Array(examples.indices)
        order.shuffle(using: &rng)
        let held = Set(order.prefix(nHeld))
        let train = examples.indices.filter { !held.contains($0) }.map { examples[$0] }
        let heldOut = examples.indices.filter { held.contains($0) }.map { examples[$0] }
        return (TrainingDataset(file: file, examples: train), TrainingDataset(file: file + " (held out)", examples: heldOut))
    }

    /// Refuses a dataset with fewer than `minimum` examples.
    public func requireAtLeast(_ minimum: Int, purpose: String) throws(TrainingError) {
        guard examples.count >= minimum else {
            throw .datasetTooSmall(file: file, usable: examples.count, minimum: minimum, reason: purpose)
        }
    }

    /// Batches of `batchSize` examples in order (the last one may be smaller), right-padded to the
    /// longest example of the batch. `order` permutes the examples (e.g. a seeded shuffle per epoch).
    public func batches(batchSize: Int, padId: Int32, order: [Int]? = nil) throws(TrainingError) -> [TrainingBatch] {
        let idx = order ?? Array(examples.indices)
        var out: [TrainingBatch] = []
        var i = 0
        while i < idx.count {
            let group = idx[i..<min(i + batchSize, idx.count)].map { examples[$0].sequence }
            out.append(try TrainingBatch(sequences: group, padId: padId))
            i += batchSize
        }
        return out
    }

    /// The example order of `epoch`: a seeded permutation, or the file order when not shuffling.
    public func order(epoch: Int, seed: UInt64, shuffle: Bool) -> [Int] {
        guard shuffle else { return Array(examples.indices) }
        var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9)
        var o = Array(examples.indices)
        o.shuffle(using: &rng)
        return o
    }
}
