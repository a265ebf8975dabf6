import Foundation

/// tokenizer.json `normalizer`: rewrites the text of each piece between added tokens before it is
/// pre-tokenized. Only the normalized text matters here; tokenizers' offset alignment is not kept.
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case stripAccents
    case replace(SplitPattern, content: [Unicode.Scalar])
    case prepend([Unicode.Scalar])
    case byteLevel
    case bert(cleanText: Bool, chineseChars: Bool, stripAccents: Bool, lowercase: Bool)
    case sequence([Normalizer])

    init(json: JSONNode) throws {
        let type = try json.requireType()
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Strip": self = .strip(left: try json["strip_left"].bool(default: true), right: try json["strip_right"].bool(default: true))
        case "StripAccents": self = .stripAccents
        case "Replace":
            self = .replace(try patternOf(json["pattern"]), content: Array(try json["content"].requireString()))
        case "Prepend": self = .prepend(Array(try json["prepend"].requireString()))
        case "ByteLevel": self = .byteLevel
        case "BertNormalizer":
            let lowercase = try json["lowercase"].bool(default: true)
            let strip = json["strip_accents"].isNull ? lowercase : try json["strip_accents"].bool(default: lowercase)
            self = .bert(cleanText: try json["clean_text"].bool(default: true),
                         chineseChars: try json["handle_chinese_chars"].bool(default: true),
                         stripAccents: strip, lowercase: lowercase)
        case "Sequence":
            self = .sequence(try json["normalizers"].requireArray().map(Normalizer.init(json:)))
        default:
            throw TokenizerError.unsupported(file: json.file, key: json.path, type: type)
        }
    }

    func apply(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        switch self {
        case .nfc: return Array(text.string.precomposedStringWithCanonicalMapping)
        case .nfd: return Array(text.string.decomposedStringWithCanonicalMapping)
        case .nfkc: return Array(text.string.precomposedStringWithCompatibilityMapping)
        case .nfkd: return Array(text.string.decomposedStringWithCompatibilityMapping)
        case .lowercase: return Array(text.string.lowercased())
        case let .strip(left, right):
            var lo = 0, hi = text.count
            if left { while lo < hi && text[lo].properties.isWhitespace { lo += 1 } }
            if right { while hi > lo && text[hi - 1].properties.isWhitespace { hi -= 1 } }
            return Array(text[lo..<hi])
        case .stripAccents:
            return text.filter { $0.properties.generalCategory != .nonspacingMark }
        case let .replace(pattern, content):
            return replaceMatches(text, pattern: pattern, with: content)
        case let .prepend(prefix):
            return text.isEmpty ? text : prefix + text
        case .byteLevel:
            return ByteLevelAlphabet.encode(text)
        case let .bert(cleanText, chineseChars, stripAccents, lowercase):
            var out = [Unicode.Scalar]()
            for s in text {
                if cleanText {
                    if s.value == 0 || s.value == 0xFFFD { continue }
                    let cat = s.properties.generalCategory
                    let isControl = (cat == .control || cat == .format) && s != "\t" && s != "\n" && s != "\r"
                    if isControl { continue }
                    if s.properties.isWhitespace { out.append(" "); continue }
                }
                if chineseChars && Self.isCJK(s) { out += [" ", s, " "]; continue }
                out.append(s)
            }
            if stripAccents { out = Normalizer.nfd.apply(out).filter { $0.properties.generalCategory != .nonspacingMark } }
            if lowercase { out = Array(out.string.lowercased()) }
            return out
        case let .sequence(list):
            return list.reduce(text) { $1.apply($0) }
        }
    }

    private static func isCJK(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
             0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F: return true
        default: return false
        }
    }
}

/// `{"String": "..."}` or `{"Regex": "..."}`, as tokenizers serialises a pattern.
func patternOf(_ json: JSONNode) throws -> SplitPattern {
    if let s = json["String"].string { return .literal(Array(s)) }
    if let r = json["Regex"].string { return try .regex(r, file: json.file) }
    if let s = json.string { return .literal(Array(s)) }
    throw json.fail("a pattern object {\"String\": ...} or {\"Regex\": ...}")
}

func replaceMatches(_ text: [Unicode.Scalar], pattern: SplitPattern, with content: [Unicode.Scalar]) -> [Unicode.Scalar] {
    let matches = pattern.matches(in: text)
    if matches.isEmpty { return text }
    var out = [Unicode.Scalar]()
    out.reserveCapacity(text.count)
    var last = 0
    for m in matches {
        out += text[last..<m.lowerBound]
        out += content
        last = m.upperBound
    }
    out += text[last...]
    return out
}
