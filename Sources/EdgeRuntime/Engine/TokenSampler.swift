import Foundation

/// Picks the next token from one sequence's logits, in llama.cpp's order:
/// penalties → top-k → top-p → min-p → temperature → draw. `temperature == 0` is greedy (argmax of
/// the penalised logits; ties to the lowest id). The RNG is the sequence's own xoshiro256**, seeded
/// from `SamplingParameters.seed`, so a seeded request gives the same tokens whatever else runs.
///
/// Penalties follow llama.cpp: the repetition penalty applies to tokens in the prompt and the
/// output (a positive logit divided by it, a negative one multiplied); presence and frequency
/// penalties (OpenAI's) to tokens of the output only.
public struct TokenSampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: Xoshiro256
    /// Tokens of the prompt and output (repetition penalty).
    private var seen: Set<Int32>
    /// Counts of output tokens (presence / frequency penalties).
    private var outputCounts: [Int32: Int] = [:]

    public init(parameters: SamplingParameters, prompt: [Int32] = []) {
        self.parameters = parameters
        var seed = parameters.seed ?? 0
        if parameters.seed == nil {
            var system = SystemRandomNumberGenerator()
            seed = system.next()
        }
        rng = Xoshiro256(seed: seed)
        seen = parameters.repetitionPenalty != 1 ? Set(prompt) : []
    }

    /// Records a token appended to the sequence (sampled or forced).
    public mutating func accept(_ token: Int32) {
        if parameters.repetitionPenalty != 1 { seen.insert(token) }
        if parameters.presencePenalty != 0 || parameters.frequencyPenalty != 0 { outputCounts[token, default: 0] += 1 }
    }

    /// Chooses a token from raw logits [vocab]. Does not record it: call `accept`.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>) -> Int32 {
        let p = parameters
        let needsPenalty = p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0
        var penalised: [Int32: Float] = [:]
        if needsPenalty {
            for t in seen where Int(t) < logits.count {
                let l = penalised[t] ?? logits[Int(t)]
                penalised[t] = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty
            }
            for (t, c) in outputCounts where Int(t) < logits.count {
                let l = penalised[t] ?? logits[Int(t)]
                penalised[t] = l - p.presencePenalty - p.frequencyPenalty * Float(c)
            }
        }
        @inline(__always) func logit(_ i: Int) -> Float {
            if needsPenalty, let v = penalised[Int32(i)] { return v }
            return logits[i]
        }

        if p.temperature <= 0 {
            if !needsPenalty { return Int32(Self.argmax(logits)) }
            var best = 0
            var bestValue = -Float.infinity
            for i in 0..<logits.count {
                let l = logit(i)
                if l > bestValue { bestValue = l; best = i }
            }
            return Int32(best)
        }

        // Candidates: with top-k, the k best; otherwise every token within a log-probability of
        // -40 of the best (the rest have probability < 5e-18 each and cannot change any filter).
        var maxLogit = -Float.infinity
        for i in 0..<logits.count { maxLogit = max(maxLogit, logit(i)) }
        var candidates: [(id: Int32, logit: Float)] = []
        let floor = maxLogit - 40
        for i in 0..<logits.count {
            let l = logit(i)
            if l >= floor, l.isFinite { candidates.append((Int32(i), l)) }
        }
        if candidates.isEmpty { return Int32(0) }
        candidates.sort { $0.logit > $1.logit || ($0.logit == $1.logit && $0.id < $1.id) }
        if p.topK > 0, candidates.count > p.topK { candidates.removeLast(candidates.count - p.topK) }

        if p.topP < 1 || p.minP > 0 {
            // Filters use the untempered distribution over the remaining candidates (as llama.cpp).
            let top = candidates[0].logit
            var probs = candidates.map { Double(expf($0.logit - top)) }
            let sum = probs.reduce(0, +)
            for i in probs.indices { probs[i] /= sum }
            var keep = candidates.count
            if p.topP < 1 {
                var cumulative = 0.0
                for i in probs.indices {
                    cumulative += probs[i]
                    if cumulative >= Double(p.topP) { keep = i + 1; break }
                }
            }
            if p.minP > 0 {
                let threshold = probs[0] * Double(p.minP)
                var k = 1
                while k < keep, probs[k] >= threshold { k += 1 }
                keep = min(keep, k)
            }
            candidates.removeLast(candidates.count - max(1, keep))
        }

        let top = candidates[0].logit
        var weights = candidates.map { Double(expf(($0.logit - top) / p.temperature)) }
        let total = weights.reduce(0, +)
        let u = rng.nextUnit() * total
        var cumulative = 0.0
        for i in weights.indices {
            cumulative += weights[i]
            if u < cumulative { return candidates[i].id }
        }
        weights.removeAll()
        return candidates[candidates.count - 1].id
    }

    /// The greedy choice: the lowest index of the largest value, NaNs ignored; 0 when no value is
    /// above -infinity. Sixteen lanes at a time: the scalar loop over a 49152-token vocabulary was 2%
    /// of the daemon's time with 8 streams, one pass per stream and step.
    public static func argmax(_ values: UnsafeBufferPointer<Float>) -> Int {
        guard let base = values.baseAddress else { return 0 }
        let n = values.count, raw = UnsafeRawPointer(base)
        var lanes = SIMD16<Float>(repeating: -.infinity)
        var i = 0
        while i + 16 <= n {
            let v = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
            lanes.replace(with: v, where: lanes .< v)   // a NaN never passes `<`: ignored
            i += 16
        }
        var best = lanes.max()
        while i < n {
            if values[i] > best { best = values[i] }
            i += 1
        }
        guard best > -.infinity else { return 0 }
        i = 0
        while i + 16 <= n {
            if any(raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) .== best) { break }
            i += 16
        }
        while values[i] != best { i += 1 }
        return i
    }

    public mutating func sample(_ logits: [Float]) -> Int32 {
        logits.withUnsafeBufferPointer { sample($0) }
    }
}
