/// Everything that can go wrong while preparing data for, running, or saving a fine-tuning job.
/// Each description names the file/line/key at fault and says what to do.
public enum TrainingError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A dataset row is unusable; `line` is 1-based.
    case badRow(file: String, line: Int, reason: String)
    /// Several bad rows, reported together so the user can fix them in one pass.
    case badRows(file: String, rows: [DatasetRowIssue])
    case datasetTooSmall(file: String, usable: Int, minimum: Int, reason: String)
    case unreadableFile(path: String, reason: String)
    case invalidHyperparameter(name: String, reason: String)
    case shapeMismatch(what: String, expected: [Int], found: [Int])
    case missingTensor(file: String, key: String)
    case modelUnsupported(reason: String)
    case kernelFailed(operation: String, status: Int32, message: String)
    case nonFiniteLoss(step: Int)
    case cancelled
    /// The trainer's `interruption` check asked it to stop mid-pass (inference arrived). Nothing the
    /// optimiser owns changed; the step is redone from its start when training resumes.
    case interrupted
    case io(path: String, reason: String)
    case checkpointInvalid(path: String, reason: String)

    public var description: String {
        switch self {
        case let .badRow(file, line, reason):
            return "\(file):\(line): \(reason)"
        case let .badRows(file, rows):
            let shown = rows.prefix(20).map { "  line \($0.line): \($0.reason)" }.joined(separator: "\n")
            let more = rows.count > 20 ? "\n  … and \(rows.count - 20) more" : ""
            return "\(file): \(rows.count) bad row(s); fix or remove them:\n\(shown)\(more)"
        case let .datasetTooSmall(file, usable, minimum, reason):
            return "\(file): only \(usable) usable example(s), at least \(minimum) needed (\(reason)); add more rows"
        case let .unreadableFile(path, reason):
            return "cannot read \(path): \(reason)"
        case let .invalidHyperparameter(name, reason):
            return "invalid hyper-parameter \(name): \(reason)"
        case let .shapeMismatch(what, expected, found):
            return "\(what): expected shape \(expected), found \(found); the adapter or data was made for another model"
        case let .missingTensor(file, key):
            return "\(file): tensor \(key) is missing"
        case let .modelUnsupported(reason):
            return "the base model cannot be fine-tuned: \(reason)"
        case let .kernelFailed(operation, status, message):
            return "kernel \(operation) failed (\(status)): \(message)"
        case let .nonFiniteLoss(step):
            return "training diverged at step \(step) (loss is not finite); lower the learning rate"
        case .cancelled:
            return "training was cancelled"
        case .interrupted:
            return "training was interrupted mid-step to give the CPU to inference; the step is redone when training resumes"
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .checkpointInvalid(path, reason):
            return "checkpoint \(path) is unusable (\(reason)); delete it to restart the job from scratch"
        }
    }
}

/// One bad row of a dataset file.
public struct DatasetRowIssue: Equatable, Sendable, Codable {
    public let line: Int
    public let reason: String
    public init(line: Int, reason: String) { self.line = line; self.reason = reason }
}
