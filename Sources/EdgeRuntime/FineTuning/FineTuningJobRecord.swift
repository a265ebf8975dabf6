import Foundation

/// What `<state>/finetune/jobs/<id>/job.json` holds: the OpenAI-shaped job plus what the trainer
/// needs to run or resume it (the resolved hyper-parameters, the adapter it publishes, the eval-gate
/// numbers). Written whole, atomically, on every state change.
struct FineTuningJobRecord: Codable, Sendable, Equatable {
    var job: FineTuningJob
    /// The adapter name the result is published as (a new integer version of it).
    var adapterName: String
    /// PEFT directory the training starts from (an earlier version trained here); nil: fresh LoRA.
    var startAdapterDirectory: String?
    var hyper: FineTuneHyperparameters
    var hasValidationFile: Bool
    var completedSteps = 0
    var totalSteps = 0
    /// Held-out loss of the previous version of the adapter (or the base) — the gate's baseline.
    var baselineLoss: Double?
    var heldOutLoss: Double?
    /// The integer version published, once promoted.
    var publishedVersion: Int?
    /// The version a promotion reserved before it started publishing (its artifact is already
    /// packed in the job directory). A restart finds it and finishes that same promotion — same
    /// version, same bytes — instead of training again and promoting a second time.
    var promotingVersion: Int?

    var isFinished: Bool { ["succeeded", "failed", "cancelled"].contains(job.status) }
}
