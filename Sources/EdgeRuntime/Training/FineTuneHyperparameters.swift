/// Hyper-parameters of one fine-tuning job. Defaults suit small chat datasets (tens to hundreds of
/// rows) on a ~100M–1B base: r=8, α=16 on all seven projections, lr 1e-3 (what the reference run
/// used; it learns visibly in a few dozen steps without diverging), linear decay, gradient clipping
/// at 1.0 as the Hugging Face Trainer does.
public struct FineTuneHyperparameters: Codable, Sendable, Equatable {
    public enum Schedule: String, Codable, Sendable, CaseIterable { case constant, linear, cosine }

    public var rank = 8
    public var alpha: Float = 16
    public var targets: [LoRATarget] = LoRATarget.allCases
    public var useRSLoRA = false
    public var learningRate: Float = 1e-3
    public var epochs = 3
    /// Stops after this many optimiser steps even if epochs remain (nil: epochs decide).
    public var maxSteps: Int? = nil
    public var batchSize = 4
    public var gradientAccumulation = 1
    public var maxLength = 1024
    public var seed: UInt64 = 0
    public var shuffle = true
    public var warmupSteps = 0
    public var schedule: Schedule = .linear
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// Global gradient-norm clip; 0 disables.
    public var maxGradNorm: Float = 1.0
    /// Fraction carved off as held-out data when no validation file is given.
    public var validationFraction = 0.1
    /// Minimum number of training examples (after the held-out split) a job accepts.
    public var minimumExamples = 4

    public init() {}

    public func validate() throws(TrainingError) {
        func bad(_ name: String, _ why: String) -> TrainingError { .invalidHyperparameter(name: name, reason: why) }
        guard (1...256).contains(rank) else { throw bad("rank", "\(rank) is outside 1…256") }
        guard alpha > 0, alpha.isFinite else { throw bad("alpha", "must be positive") }
        guard !targets.isEmpty else { throw bad("targets", "select at least one projection") }
        guard learningRate > 0, learningRate < 1, learningRate.isFinite else { throw bad("learning_rate", "\(learningRate) must be in (0, 1)") }
        guard epochs >= 1 else { throw bad("epochs", "must be at least 1") }
        if let m = maxSteps, m < 1 { throw bad("max_steps", "must be at least 1") }
        guard (1...4096).contains(batchSize) else { throw bad("batch_size", "\(batchSize) is outside 1…4096") }
        guard (1...1024).contains(gradientAccumulation) else { throw bad("gradient_accumulation", "outside 1…1024") }
        guard (8...32768).contains(maxLength) else { throw bad("max_length", "\(maxLength) is outside 8…32768") }
        guard warmupSteps >= 0 else { throw bad("warmup_steps", "must not be negative") }
        guard weightDecay >= 0, weightDecay < 1 else { throw bad("weight_decay", "must be in [0, 1)") }
        guard beta1 >= 0, beta1 < 1, beta2 >= 0, beta2 < 1 else { throw bad("betas", "must be in [0, 1)") }
        guard epsilon > 0 else { throw bad("epsilon", "must be positive") }
        guard maxGradNorm >= 0 else { throw bad("max_grad_norm", "must not be negative") }
        guard validationFraction > 0, validationFraction < 0.9 else { throw bad("validation_fraction", "must be in (0, 0.9)") }
        guard minimumExamples >= 1 else { throw bad("minimum_examples", "must be at least 1") }
    }

    /// Learning rate for optimiser step `step` (0-based) of `total`: linear warm-up from 0, then
    /// constant, linear decay to 0, or cosine decay to 0 — Hugging Face's get_*_schedule_with_warmup.
    public func learningRate(at step: Int, of total: Int) -> Float {
        if step < warmupSteps { return learningRate * Float(step + 1) / Float(warmupSteps + 1) }
        let decaySteps = max(1, total - warmupSteps)
        let progress = min(1, Float(step - warmupSteps) / Float(decaySteps))
        switch schedule {
        case .constant: return learningRate
        case .linear: return learningRate * max(0, 1 - progress)
        case .cosine: return learningRate * 0.5 * (1 + Float.cos(Float.pi * progress))
        }
    }
}

extension Float {
    static func cos(_ x: Float) -> Float { Float(Foundation.cos(Double(x))) }
}

import Foundation
