/// Everything that can be wrong with a safetensors file, each case naming the file and what to do.
public enum SafetensorsError: Error, Equatable, CustomStringConvertible {
    case io(path: String, reason: String)
    case truncated(path: String, reason: String)
    case badHeader(path: String, reason: String)
    case badTensor(path: String, tensor: String, reason: String)
    case missingTensor(path: String, tensor: String)
    case write(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let p, let r): "cannot read \(p): \(r)"
        case .truncated(let p, let r): "\(p) is truncated (\(r)); the file is incomplete — copy or download it again"
        case .badHeader(let p, let r): "\(p) is not a valid safetensors file: \(r)"
        case .badTensor(let p, let t, let r): "\(p): tensor '\(t)' is invalid: \(r)"
        case .missingTensor(let p, let t): "\(p) has no tensor '\(t)'"
        case .write(let p, let r): "cannot write \(p): \(r)"
        }
    }
}
