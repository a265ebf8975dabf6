/// Errors of the fine-tuning job manager; each knows its HTTP status for the socket API.
public enum FineTuningError: HTTPStatusError, CustomStringConvertible, Equatable {
    /// Bad uploaded data or hyper-parameters (the message names the line or the key).
    case invalidRequest(message: String, param: String?)
    case jobNotFound(id: String)
    case notCancellable(id: String, status: String)
    case io(path: String, reason: String)
    case corruptJob(path: String, reason: String)
    case modelUnavailable(reason: String)
    /// `adapter rollback`: the adapter has no versions trained on this device.
    case adapterNotTrainedHere(name: String)
    /// `adapter rollback`: the current version is the oldest one kept.
    case noPreviousVersion(name: String, current: Int)

    public var status: Int {
        switch self {
        case .invalidRequest: return 400
        case .jobNotFound, .adapterNotTrainedHere: return 404
        case .notCancellable, .noPreviousVersion: return 409
        case .io, .corruptJob: return 500
        case .modelUnavailable: return 503
        }
    }

    public var errorType: String {
        switch status {
        case 400, 409: return "invalid_request_error"
        case 404: return "not_found_error"
        case 503: return "service_unavailable"
        default: return "server_error"
        }
    }

    public var errorCode: String? {
        switch self {
        case .invalidRequest: return "invalid_training_data"
        case .jobNotFound: return "fine_tuning_job_not_found"
        case .notCancellable: return "job_finished"
        case .io: return "io_error"
        case .corruptJob: return "corrupt_job"
        case .modelUnavailable: return "model_not_loaded"
        case .adapterNotTrainedHere: return "adapter_not_trained_here"
        case .noPreviousVersion: return "no_previous_version"
        }
    }

    public var param: String? {
        if case let .invalidRequest(_, p) = self { return p }
        return nil
    }

    public var retryAfter: Int? { nil }

    public var message: String {
        switch self {
        case let .invalidRequest(m, _): return m
        case let .jobNotFound(id): return "no fine-tuning job '\(id)': list the jobs with `edgectl finetune list`"
        case let .notCancellable(id, s): return "job \(id) has already \(s == "cancelled" ? "been cancelled" : "finished (\(s))"); nothing to cancel"
        case let .io(path, reason): return "cannot write \(path): \(reason); check the state directory's permissions and free space"
        case let .corruptJob(path, reason): return "the job record \(path) is unreadable (\(reason)); remove its directory to discard the job"
        case let .modelUnavailable(reason): return "fine-tuning needs the base model: \(reason)"
        case let .adapterNotTrainedHere(name):
            return "adapter '\(name)' has no versions trained on this device, so there is nothing to roll back (rollback covers adapters promoted by `edgectl finetune`; pin a store version with `edgectl adapter pin NAME@VERSION`)"
        case let .noPreviousVersion(name, current):
            return "adapter '\(name)' is at version \(current), the oldest version trained on this device; there is no previous version to roll back to"
        }
    }

    public var description: String { message }
}
