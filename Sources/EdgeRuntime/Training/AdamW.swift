import Kernels

/// AdamW with PyTorch's semantics (torch.optim.AdamW, amsgrad off): decoupled weight decay, bias
/// corrections computed in double, update p −= lr/bc1 · m / (√v/√bc2 + ε). State is two f32 arrays
/// the size of the parameters plus the step count; it is checkpointed with the adapter.
/// Not thread-safe: owned by one training run.
public final class AdamW: @unchecked Sendable {
    public let m: TrainBuffer
    public let v: TrainBuffer
    public private(set) var step: Int64 = 0
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float

    public init(parameterCount: Int, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        m = TrainBuffer(count: parameterCount)
        v = TrainBuffer(count: parameterCount)
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon; self.weightDecay = weightDecay
    }

    /// One update of `parameters` from `gradients` at learning rate lr.
    public func update(_ parameters: TrainBuffer, gradients: TrainBuffer, lr: Float) {
        precondition(parameters.count == m.count && gradients.count == m.count)
        step += 1
        et_adamw_step(parameters.pointer, gradients.pointer, m.pointer, v.pointer, m.count, lr, beta1, beta2, epsilon, weightDecay, step)
    }

    /// Restores a checkpointed state.
    public func restore(m: [Float], v: [Float], step: Int64) throws(TrainingError) {
        guard m.count == self.m.count, v.count == self.v.count, step >= 0 else {
            throw .shapeMismatch(what: "optimizer state", expected: [self.m.count], found: [m.count, v.count])
        }
        m.withUnsafeBufferPointer { self.m.pointer.update(from: $0.baseAddress!, count: m.count) }
        v.withUnsafeBufferPointer { self.v.pointer.update(from: $0.baseAddress!, count: v.count) }
        self.step = step
    }

    /// Scales gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_:
    /// factor maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before clipping.
    @discardableResult
    public static func clipGradients(_ gradients: TrainBuffer, maxNorm: Float) -> Double {
        let norm = et_sum_squares(gradients.pointer, gradients.count).squareRoot()
        if maxNorm > 0 {
            let coef = Double(maxNorm) / (norm + 1e-6)
            if coef < 1 { et_scale(gradients.pointer, gradients.count, Float(coef)) }
        }
        return norm
    }
}
