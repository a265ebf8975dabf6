import Foundation

/// Log-softmax helpers over one row of raw logits (natural log, f64 accumulation).
public enum Logprobs {
    /// log Σ exp(logits), stable.
    public static func logSumExp(_ logits: UnsafeBufferPointer<Float>) -> Double {
        var maxLogit = -Float.infinity
        for l in logits { maxLogit = max(maxLogit, l) }
        var sum = 0.0
        for l in logits { sum += exp(Double(l - maxLogit)) }
        return Double(maxLogit) + log(sum)
    }

    /// The logprob of `token` and the `top` most likely (id, logprob), most likely first (ties:
    /// lower id first).
    public static func summarize(_ logits: UnsafeBufferPointer<Float>, token: Int32?, top: Int) -> (logprob: Float?, top: [(id: Int32, logprob: Float)]) {
        let lse = logSumExp(logits)
        let chosen = token.map { Float(Double(logits[Int($0)]) - lse) }
        guard top > 0 else { return (chosen, []) }
        let best = topIndices(logits, count: top)
        return (chosen, best.map { ($0, Float(Double(logits[Int($0)]) - lse)) })
    }

    /// Indices of the `count` largest values, largest first (ties: lower index first). O(n·count)
    /// for small counts, which is what logprobs ask for (≤ 20).
    public static func topIndices(_ values: UnsafeBufferPointer<Float>, count: Int) -> [Int32] {
        let k = min(count, values.count)
        guard k > 0 else { return [] }
        var ids = [Int32](repeating: -1, count: k)
        var vals = [Float](repeating: -.infinity, count: k)
        var filled = 0
        for i in 0..<values.count {
            let v = values[i]
            if filled == k, !(v > vals[k - 1]) { continue }
            var pos = filled < k ? filled : k - 1
            while pos > 0, v > vals[pos - 1] {
                if pos < k { vals[pos] = vals[pos - 1]; ids[pos] = ids[pos - 1] }
                pos -= 1
            }
            vals[pos] = v
            ids[pos] = Int32(i)
            if filled < k { filled += 1 }
        }
        return Array(ids.prefix(filled))
    }
}
