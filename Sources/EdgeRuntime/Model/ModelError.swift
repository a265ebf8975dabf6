import AdapterCache
import Foundation

/// Everything that can be wrong with a model file or directory, or with importing one. Every case
/// names the file (and the key or tensor) and says what is wrong; `description` adds what to do.
public enum ModelError: Error, Equatable, CustomStringConvertible {
    /// The file cannot be opened, read or mapped.
    case io(path: String, reason: String)
    /// A required file or directory is absent.
    case missingFile(path: String, what: String)
    /// The file ends before the format says it should.
    case truncated(path: String, reason: String)
    /// A GGUF file breaks the format (bad magic, counts, strings, offsets...).
    case badGGUF(path: String, reason: String)
    /// A GGUF metadata key is missing or has the wrong type or value.
    case badMetadata(path: String, key: String, reason: String)
    /// A tensor type this runtime cannot dequantise.
    case unsupportedTensorType(path: String, tensor: String, type: String)
    /// Not a Llama-family model.
    case unsupportedArchitecture(path: String, architecture: String)
    /// config.json (or another JSON file) is invalid or inconsistent.
    case badConfig(path: String, key: String, reason: String)
    /// A tensor the configuration needs is not in the file.
    case missingTensor(path: String, tensor: String)
    /// A tensor exists but its dtype, shape or bytes are wrong.
    case badTensor(path: String, tensor: String, reason: String)
    /// An NF4 tensor's quant_state JSON or statistics are inconsistent.
    case badQuantState(path: String, tensor: String, reason: String)
    /// The safetensors container itself is invalid (header, offsets, dtypes).
    case safetensors(SafetensorsError)
    /// The tokenizer metadata cannot be turned into tokenizer.json.
    case badTokenizer(path: String, reason: String)
    /// The import source is none of the accepted kinds.
    case unsupportedSource(path: String, reason: String)
    /// The output directory exists and --force was not given.
    case outputExists(path: String)
    /// Writing the output failed (nothing is left behind).
    case write(path: String, reason: String)
    /// The file system ran out of space while writing (nothing is left behind).
    case diskFull(path: String)

    public var description: String {
        switch self {
        case .io(let p, let r): "cannot read \(p): \(r)"
        case .missingFile(let p, let w): "\(p) is missing: \(w)"
        case .truncated(let p, let r): "\(p) is truncated (\(r)); the file is incomplete — copy or download it again"
        case .badGGUF(let p, let r): "\(p) is not a valid GGUF file: \(r)"
        case .badMetadata(let p, let k, let r): "\(p): GGUF metadata '\(k)' \(r)"
        case .unsupportedTensorType(let p, let t, let ty):
            "\(p): tensor '\(t)' has type \(ty), which cannot be imported (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K); re-export the model with one of those"
        case .unsupportedArchitecture(let p, let a):
            "\(p): architecture '\(a)' is not supported; only Llama-family models (llama) can be imported"
        case .badConfig(let p, let k, let r): "\(p): '\(k)' \(r)"
        case .missingTensor(let p, let t): "\(p) has no tensor '\(t)', which the model configuration needs; the file does not match config.json"
        case .badTensor(let p, let t, let r): "\(p): tensor '\(t)' is invalid: \(r)"
        case .badQuantState(let p, let t, let r): "\(p): NF4 tensor '\(t)' is inconsistent: \(r); re-import the model"
        case .safetensors(let e): e.description
        case .badTokenizer(let p, let r): "\(p): cannot build a tokenizer: \(r)"
        case .unsupportedSource(let p, let r): "\(p) cannot be imported: \(r)"
        case .outputExists(let p): "\(p) already exists; choose another --out or pass --force to replace it"
        case .write(let p, let r): "cannot write \(p): \(r); nothing was left behind"
        case .diskFull(let p): "the disk is full while writing \(p); free some space and import again (nothing was left behind)"
        }
    }

    /// The file the error is about.
    public var path: String {
        switch self {
        case .io(let p, _), .missingFile(let p, _), .truncated(let p, _), .badGGUF(let p, _), .badMetadata(let p, _, _),
             .unsupportedTensorType(let p, _, _), .unsupportedArchitecture(let p, _), .badConfig(let p, _, _),
             .missingTensor(let p, _), .badTensor(let p, _, _), .badQuantState(let p, _, _), .badTokenizer(let p, _),
             .unsupportedSource(let p, _), .outputExists(let p), .write(let p, _), .diskFull(let p):
            p
        case .safetensors(let e):
            switch e {
            case .io(let p, _), .truncated(let p, _), .badHeader(let p, _), .badTensor(let p, _, _), .missingTensor(let p, _), .write(let p, _): p
            }
        }
    }

    /// A decoding error as one line naming the key path.
    static func describe(decoding error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        case DecodingError.keyNotFound(let k, let c):
            return "\((c.codingPath + [k]).map(\.stringValue).joined(separator: ".")) is missing"
        default:
            return "\(error)"
        }
    }
}
