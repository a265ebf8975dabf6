@testable import EdgeRuntime

/// A tiny random Llama (f32 base) for checking the trainer's gradients against finite differences.
enum TrainingTinyModel {
    static let shape = TrainingModelShape(hidden: 16, intermediate: 24, layers: 2, heads: 4, kvHeads: 2, headDim: 4,
                                          vocab: 37, rmsEps: 1e-5, ropeTheta: 10_000)

    static func base(seed: UInt64 = 7) throws -> TrainingBaseModel {
        var rng = SplitMix64(seed: seed)
        func rand(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in rng.uniform(-scale, scale) } }
        let s = shape
        var layers: [TrainingBaseModel.Layer] = []
        for _ in 0..<s.layers {
            var p: [LoRATarget: any FrozenLinear] = [:]
            for t in LoRATarget.allCases {
                let d = s.dims(of: t)
                p[t] = DenseFrozenLinear(weight: rand(d.out * d.in, 0.5), outFeatures: d.out, inFeatures: d.in)
            }
            layers.append(.init(inputNorm: rand(s.hidden, 0.5).map { 1 + $0 }, postAttentionNorm: rand(s.hidden, 0.5).map { 1 + $0 }, projections: p))
        }
        return try TrainingBaseModel(shape: s, embedding: rand(s.vocab * s.hidden, 1), lmHead: nil,
                                     finalNorm: rand(s.hidden, 0.3).map { 1 + $0 }, layers: layers)
    }

    /// Two sequences, the second right-padded; prompt positions unscored.
    static func batch() throws -> TrainingBatch {
        let a: [Int32] = [1, 5, 9, 13, 2, 7, 30, 4]
        let b: [Int32] = [3, 8, 21, 11, 6]
        return try TrainingBatch(sequences: [
            (a, [-100, -100, -100, 13, 2, 7, 30, 4]),
            (b, [-100, -100, 21, 11, 6]),
        ], padId: 2)
    }
}
