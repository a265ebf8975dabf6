import Foundation

/// tokenizer.json `decoder`: turns the token strings of an id list back into text. Each stage maps a
/// list of strings to a list of strings (tokenizers' `decode_chain`); the result is concatenated.
indirect enum TokenDecoder: Sendable {
    case byteLevel
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case replace(SplitPattern, content: [Unicode.Scalar])
    case metaspace(replacement: Unicode.Scalar, prependScheme: PreTokenizer.PrependScheme)
    case wordPiece(prefix: String, cleanup: Bool)
    case bpe(suffix: String)
    case sequence([TokenDecoder])

    init(json: JSONNode) throws {
        let type = try json.requireType()
        switch type {
        case "ByteLevel": self = .byteLevel
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Strip":
            let c = try json["content"].requireString()
            guard let s = c.unicodeScalars.first, c.unicodeScalars.count == 1 else { throw json["content"].fail("a single character") }
            self = .strip(content: s, start: try json["start"].int(default: 0), stop: try json["stop"].int(default: 0))
        case "Replace":
            self = .replace(try patternOf(json["pattern"]), content: Array(try json["content"].requireString()))
        case "Metaspace":
            let replacement = try json["replacement"].optionalString() ?? "\u{2581}"
            guard let r = replacement.unicodeScalars.first else { throw json["replacement"].fail("a single character") }
            let scheme: PreTokenizer.PrependScheme
            if let s = json["prepend_scheme"].string, let p = PreTokenizer.PrependScheme(rawValue: s) {
                scheme = p
            } else {
                scheme = try json["add_prefix_space"].bool(default: true) ? .always : .never
            }
            self = .metaspace(replacement: r, prependScheme: scheme)
        case "WordPiece":
            self = .wordPiece(prefix: try json["prefix"].optionalString() ?? "##", cleanup: try json["cleanup"].bool(default: true))
        case "BPEDecoder":
            self = .bpe(suffix: try json["suffix"].optionalString() ?? "</w>")
        case "Sequence":
            self = .sequence(try json["decoders"].requireArray().map(TokenDecoder.init(json:)))
        default:
            throw TokenizerError.unsupported(file: json.file, key: json.path, type: type)
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes = [UInt8]()
            for t in tokens {
                var mapped = [UInt8]()
                var ok = true
                for s in t.unicodeScalars {
                    guard let b = ByteLevelAlphabet.scalarToByte[s] else { ok = false; break }
                    mapped.append(b)
                }
                bytes += ok ? mapped : Array(t.utf8)
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .byteFallback:
            var out = [String]()
            var pending = [UInt8]()
            func flush() {
                if pending.isEmpty { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out += Array(repeating: "\u{FFFD}", count: pending.count)
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = Self.byteToken(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case let .strip(content, start, stop):
            return tokens.map { t in
                var s = Array(t.unicodeScalars)
                var lo = 0, hi = s.count
                while lo < min(start, s.count) && s[lo] == content { lo += 1 }
                var removed = 0
                while removed < stop && hi > lo && s[hi - 1] == content { hi -= 1; removed += 1 }
                s = Array(s[lo..<hi])
                return s.string
            }
        case let .replace(pattern, content):
            return tokens.map { replaceMatches(Array($0), pattern: pattern, with: content).string }
        case let .metaspace(replacement, scheme):
            return tokens.enumerated().map { i, t in
                var s = Array(t.unicodeScalars).map { $0 == replacement ? " " : $0 }
                if i == 0 && scheme != .never && s.first == " " { s.removeFirst() }
                return s.string
            }
        case let .wordPiece(prefix, cleanup):
            return tokens.enumerated().map { i, t in
                var s = t
                if i != 0 {
                    if s.hasPrefix(prefix) { s = String(s.dropFirst(prefix.count)) } else { s = " " + s }
                }
                if cleanup { s = Self.cleanup(s) }
                return s
            }
        case let .bpe(suffix):
            return tokens.enumerated().map { i, t in
                t.replacingOccurrences(of: suffix, with: i == tokens.count - 1 ? "" : " ")
            }
        case let .sequence(list):
            return list.reduce(tokens) { $1.decodeChain($0) }
        }
    }

    /// `<0xNN>` → NN.
    static func byteToken(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }

    /// tokenizers' WordPiece `cleanup`: undo the spaces English tokenization puts before punctuation.
    static func cleanup(_ s: String) -> String {
        var r = s
        for (a, b) in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                       (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")] {
            r = r.replacingOccurrences(of: a, with: b)
        }
        return r
    }
}
