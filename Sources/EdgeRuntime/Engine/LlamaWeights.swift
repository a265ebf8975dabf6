import Foundation
import Kernels

/// Everything the forward pass reads, as pointers the kernels take directly: NF4 projection
/// descriptors pointing into the mapped model file, and small f32 tensors (norms, NF4 statistics)
/// copied into aligned buffers. Immutable after init; shared read-only by every thread.
///
/// `owners` keeps the mapping and the buffers alive as long as any descriptor may be used.
public final class LlamaWeights: @unchecked Sendable {
    public let path: String
    public let hyperparameters: LlamaHyperparameters
    /// Token embeddings [vocab, hidden], f32 (converted once at load from f16/bf16).
    public let embedding: FloatBuffer
    /// The output head: a dense f32 matrix [vocab, hidden] (the embedding itself when tied), or NF4.
    public let outputHead: OutputHead
    public let finalNorm: FloatBuffer
    public let layers: [Layer]
    private let owners: [AnyObject]
    private let int8HeadLock = NSLock()
    private var int8HeadStorage: Int8Head?

    public enum OutputHead: @unchecked Sendable {
        case dense(FloatBuffer)
        case nf4(ek_nf4_matrix)
    }

    public struct Layer: @unchecked Sendable {
        public var attentionNorm: FloatBuffer
        public var mlpNorm: FloatBuffer
        /// Indexed by `LlamaProjection.index`.
        public var projections: [ek_nf4_matrix]

        public init(attentionNorm: FloatBuffer, mlpNorm: FloatBuffer, projections: [ek_nf4_matrix]) {
            self.attentionNorm = attentionNorm
            self.mlpNorm = mlpNorm
            self.projections = projections
        }

        public subscript(_ p: LlamaProjection) -> ek_nf4_matrix { projections[p.index] }
    }

    /// The dense head quantised to int8 per row, built on first use (≈ 30 ms for SmolLM2) and then shared
    /// by every model over these weights; nil for an NF4 head (already 4-bit). Thread-safe.
    public func int8Head() throws(EngineError) -> Int8Head? {
        guard case .dense(let head) = outputHead else { return nil }
        int8HeadLock.lock()
        defer { int8HeadLock.unlock() }
        if let int8HeadStorage { return int8HeadStorage }
        let built = try Int8Head(dense: head.pointer, rows: hyperparameters.vocabularySize, cols: hyperparameters.hiddenSize)
        int8HeadStorage = built
        return built
    }

    /// Assembles and checks the pieces: every projection's NF4 shape must equal what the
    /// hyperparameters say, and every descriptor must pass `ek_nf4_check`.
    public init(
        path: String, hyperparameters hp: LlamaHyperparameters, embedding: FloatBuffer, outputHead: OutputHead,
        finalNorm: FloatBuffer, layers: [Layer], owners: [AnyObject]
    ) throws(EngineError) {
        try hp.validate(path: path)
        func bad(_ r: String) -> EngineError { .badModel(path: path, reason: r) }
        guard embedding.count == hp.vocabularySize * hp.hiddenSize else {
            throw bad("model.embed_tokens.weight has \(embedding.count) values, expected vocab_size × hidden_size = \(hp.vocabularySize * hp.hiddenSize)")
        }
        guard finalNorm.count == hp.hiddenSize else { throw bad("model.norm.weight has \(finalNorm.count) values, expected \(hp.hiddenSize)") }
        guard layers.count == hp.layerCount else { throw bad("found \(layers.count) decoder layers, config.json says \(hp.layerCount)") }
        switch outputHead {
        case .dense(let b):
            guard b.count == hp.vocabularySize * hp.hiddenSize else { throw bad("lm_head.weight has \(b.count) values, expected \(hp.vocabularySize * hp.hiddenSize)") }
        case .nf4(var m):
            guard m.rows == hp.vocabularySize, m.cols == hp.hiddenSize else { throw bad("lm_head.weight is [\(m.rows), \(m.cols)], expected [\(hp.vocabularySize), \(hp.hiddenSize)]") }
            let s = ek_nf4_check(&m)
            guard s == 0 else { throw bad("lm_head.weight: \(String(cString: ek_status_message(s)))") }
        }
        for (i, layer) in layers.enumerated() {
            guard layer.attentionNorm.count == hp.hiddenSize, layer.mlpNorm.count == hp.hiddenSize else {
                throw bad("model.layers.\(i) norms must have hidden_size = \(hp.hiddenSize) values")
            }
            guard layer.projections.count == LlamaProjection.allCases.count else { throw bad("model.layers.\(i) lacks projections") }
            for p in LlamaProjection.allCases {
                var m = layer[p]
                let (r, c) = p.shape(hp)
                let key = "model.layers.\(i).\(p.blockName).\(p.moduleName).weight"
                guard m.rows == r, m.cols == c else { throw bad("\(key) is [\(m.rows), \(m.cols)], expected [\(r), \(c)] from config.json") }
                let s = ek_nf4_check(&m)
                guard s == 0 else { throw bad("\(key): \(String(cString: ek_status_message(s)))") }
            }
        }
        self.path = path
        self.hyperparameters = hp
        self.embedding = embedding
        self.outputHead = outputHead
        self.finalNorm = finalNorm
        self.layers = layers
        self.owners = owners
    }
}
