/// One micro-batch as the trainer consumes it: B sequences right-padded to T tokens.
/// Labels use −100 for positions that are not scored (prompt and padding), as Hugging Face does;
/// the token at t is scored against labels[t + 1] (the causal shift happens in the trainer).
public struct TrainingBatch: Sendable, Equatable {
    public let batchSize: Int
    public let seqLen: Int
    public let inputIds: [Int32]     // [B·T]
    public let labels: [Int32]       // [B·T]
    public let validLengths: [Int]   // [B] tokens before the padding (attention_mask sum)

    public static let ignoreIndex: Int32 = -100

    public init(batchSize: Int, seqLen: Int, inputIds: [Int32], labels: [Int32], validLengths: [Int]) throws(TrainingError) {
        guard batchSize > 0, seqLen > 1 else {
            throw .invalidHyperparameter(name: "batch", reason: "needs at least one sequence of at least 2 tokens")
        }
        guard inputIds.count == batchSize * seqLen, labels.count == batchSize * seqLen, validLengths.count == batchSize else {
            throw .shapeMismatch(what: "batch", expected: [batchSize, seqLen], found: [inputIds.count, labels.count, validLengths.count])
        }
        guard validLengths.allSatisfy({ $0 >= 1 && $0 <= seqLen }) else {
            throw .invalidHyperparameter(name: "attention_mask", reason: "every sequence needs 1…\(seqLen) real tokens")
        }
        self.batchSize = batchSize; self.seqLen = seqLen; self.inputIds = inputIds; self.labels = labels
        self.validLengths = validLengths
    }

    /// Builds a right-padded batch from token sequences and their per-token labels.
    public init(sequences: [(ids: [Int32], labels: [Int32])], padId: Int32, padTo length: Int? = nil) throws(TrainingError) {
        let t = max(length ?? 0, sequences.map(\.ids.count).max() ?? 0)
        var ids: [Int32] = [], labels: [Int32] = [], lens: [Int] = []
        for s in sequences {
            guard s.ids.count == s.labels.count else {
                throw .shapeMismatch(what: "labels", expected: [s.ids.count], found: [s.labels.count])
            }
            ids += s.ids + Array(repeating: padId, count: t - s.ids.count)
            labels += s.labels + Array(repeating: Self.ignoreIndex, count: t - s.ids.count)
            lens.append(s.ids.count)
        }
        try self.init(batchSize: sequences.count, seqLen: t, inputIds: ids, labels: labels, validLengths: lens)
    }

    /// Number of scored positions: t < T−1 whose next label is not ignored (only within the valid part).
    public var supervisedCount: Int {
        var n = 0
        for b in 0..<batchSize {
            for t in 0..<(seqLen - 1) where labels[b * seqLen + t + 1] != Self.ignoreIndex { n += 1 }
        }
        return n
    }
}
