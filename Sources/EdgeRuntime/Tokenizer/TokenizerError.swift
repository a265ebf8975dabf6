import Foundation

/// Everything that can go wrong while loading a tokenizer. Each case names the file or key at fault
/// and reads as a sentence an operator can act on.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    /// A file could not be read at all (missing, permissions).
    case unreadable(path: String, reason: String)
    /// The file is not valid JSON, or its top level is not an object.
    case invalidJSON(file: String, reason: String)
    /// A key is missing or holds a value of the wrong kind.
    case badValue(file: String, key: String, expected: String)
    /// A `type` (normalizer, pre-tokenizer, model, decoder, post-processor) this tokenizer does not implement.
    case unsupported(file: String, key: String, type: String)
    /// A regular expression in the file does not compile.
    case badRegex(file: String, pattern: String, reason: String)
    /// A merge names a token that is not in the vocabulary, or produces one that is not.
    case badMerge(file: String, index: Int, merge: String)
    /// A special token the configuration names is not in the vocabulary.
    case unknownToken(file: String, key: String, token: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason):
            return "cannot read \(path): \(reason); check that the model directory holds a tokenizer.json"
        case let .invalidJSON(file, reason):
            return "\(file) is not a valid JSON object (\(reason)); re-export it with `edgectl model import`"
        case let .badValue(file, key, expected):
            return "\(file): key `\(key)` should be \(expected); the file is damaged or from an unknown writer"
        case let .unsupported(file, key, type):
            return "\(file): `\(key)` of type \"\(type)\" is not supported by this tokenizer; supported are the byte-level BPE and SentencePiece-style BPE families"
        case let .badRegex(file, pattern, reason):
            return "\(file): regular expression \(pattern.debugDescription) does not compile (\(reason))"
        case let .badMerge(file, index, merge):
            return "\(file): merge #\(index) \(merge.debugDescription) names a token missing from model.vocab; the vocabulary and merges do not belong together"
        case let .unknownToken(file, key, token):
            return "\(file): `\(key)` names \(token.debugDescription), which is not in the vocabulary"
        }
    }
}
