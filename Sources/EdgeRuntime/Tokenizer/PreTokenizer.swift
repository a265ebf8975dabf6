/// One piece of text on its way to the model. `atStart` says the piece begins at offset 0 of the
/// original input, which Metaspace's `prepend_scheme: "first"` needs.
struct TextPiece {
    var scalars: [Unicode.Scalar]
    var atStart: Bool
}

/// How a split keeps the delimiters it finds (tokenizers' `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"

    /// Cuts `piece` at `matches` (sorted, non-overlapping) the way tokenizers' `NormalizedString::split` does.
    func split(_ piece: TextPiece, matches: [Range<Int>], invert: Bool = false) -> [TextPiece] {
        let t = piece.scalars
        // Cover the whole piece with (range, isMatch) runs.
        var runs = [(Range<Int>, Bool)]()
        var prev = 0
        for m in matches {
            if prev < m.lowerBound { runs.append((prev..<m.lowerBound, invert)) }
            runs.append((m, !invert))
            prev = m.upperBound
        }
        if prev < t.count { runs.append((prev..<t.count, invert)) }

        var kept = [(Range<Int>, Bool)]()  // (range, remove)
        switch self {
        case .isolated:
            kept = runs.map { ($0.0, false) }
        case .removed:
            kept = runs
        case .contiguous:
            var previousMatch = false
            for (r, isMatch) in runs {
                if isMatch == previousMatch, let last = kept.last {
                    kept[kept.count - 1] = (last.0.lowerBound..<r.upperBound, false)
                } else {
                    kept.append((r, false))
                }
                previousMatch = isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for (r, isMatch) in runs {
                if isMatch && !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = (last.0.lowerBound..<r.upperBound, false)
                } else {
                    kept.append((r, false))
                }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for (r, isMatch) in runs.reversed() {
                if isMatch && !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = (r.lowerBound..<last.0.upperBound, false)
                } else {
                    kept.append((r, false))
                }
                previousMatch = isMatch
            }
            kept.reverse()
        }
        return kept.compactMap { r, remove in
            if remove || r.isEmpty { return nil }
            return TextPiece(scalars: Array(t[r]), atStart: piece.atStart && r.lowerBound == 0)
        }
    }
}

/// tokenizer.json `pre_tokenizer`: cuts each normalized piece into the words BPE sees.
indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: Unicode.Scalar, prepend: PrependScheme, split: Bool)
    case whitespace
    case whitespaceSplit
    case punctuation(SplitBehavior)
    case bert
    case charDelimiter(Unicode.Scalar)
    case sequence([PreTokenizer])

    enum PrependScheme: String, Sendable { case always, first, never }

    init(json: JSONNode) throws {
        let type = try json.requireType()
        switch type {
        case "ByteLevel":
            self = .byteLevel(addPrefixSpace: try json["add_prefix_space"].bool(default: true),
                              useRegex: try json["use_regex"].bool(default: true))
        case "Split":
            let behaviorName = try json["behavior"].requireString()
            guard let behavior = SplitBehavior(rawValue: behaviorName) else { throw json["behavior"].fail("one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous") }
            self = .split(try patternOf(json["pattern"]), behavior, invert: try json["invert"].bool(default: false))
        case "Digits":
            self = .digits(individual: try json["individual_digits"].bool(default: false))
        case "Metaspace":
            let replacement = try json["replacement"].optionalString() ?? "\u{2581}"
            guard let r = replacement.unicodeScalars.first, replacement.unicodeScalars.count == 1 else { throw json["replacement"].fail("a single character") }
            let scheme: PrependScheme
            if let s = json["prepend_scheme"].string {
                guard let p = PrependScheme(rawValue: s) else { throw json["prepend_scheme"].fail("always, first or never") }
                scheme = p
            } else {
                // Files from before tokenizers 0.14 say add_prefix_space instead.
                scheme = try json["add_prefix_space"].bool(default: true) ? .always : .never
            }
            self = .metaspace(replacement: r, prepend: scheme, split: try json["split"].bool(default: true))
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "Punctuation":
            let name = try json["behavior"].optionalString() ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: name) else { throw json["behavior"].fail("a split behavior") }
            self = .punctuation(behavior)
        case "BertPreTokenizer": self = .bert
        case "CharDelimiterSplit":
            let d = try json["delimiter"].requireString()
            guard let s = d.unicodeScalars.first, d.unicodeScalars.count == 1 else { throw json["delimiter"].fail("a single character") }
            self = .charDelimiter(s)
        case "Sequence":
            self = .sequence(try json["pretokenizers"].requireArray().map(PreTokenizer.init(json:)))
        default:
            throw TokenizerError.unsupported(file: json.file, key: json.path, type: type)
        }
    }

    /// True when this stage maps text to the byte alphabet (so added-token and decode logic know).
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case let .sequence(list): return list.contains { $0.isByteLevel }
        default: return false
        }
    }

    func apply(_ pieces: [TextPiece]) -> [TextPiece] {
        switch self {
        case let .byteLevel(addPrefixSpace, useRegex):
            var out = [TextPiece]()
            for var p in pieces {
                if addPrefixSpace && p.scalars.first != " " { p.scalars.insert(" ", at: 0) }
                let parts = useRegex
                    ? SplitBehavior.isolated.split(p, matches: KnownSplitRegex(family: .gpt2).matches(in: p.scalars))
                    : [p]
                for var part in parts {
                    part.scalars = ByteLevelAlphabet.encode(part.scalars)
                    out.append(part)
                }
            }
            return out
        case let .split(pattern, behavior, invert):
            return pieces.flatMap { behavior.split($0, matches: pattern.matches(in: $0.scalars), invert: invert) }
        case let .digits(individual):
            return pieces.flatMap { p in
                (individual ? SplitBehavior.isolated : .contiguous).split(p, matches: Self.runs(p.scalars, where: Self.isNumeric, single: individual))
            }
        case let .metaspace(replacement, prepend, split):
            return pieces.flatMap { piece -> [TextPiece] in
                var p = piece
                p.scalars = p.scalars.map { $0 == " " ? replacement : $0 }
                switch prepend {
                case .always: if p.scalars.first != replacement { p.scalars.insert(replacement, at: 0) }
                case .first: if p.scalars.first != replacement && p.atStart { p.scalars.insert(replacement, at: 0) }
                case .never: break
                }
                if !split { return [p] }
                return SplitBehavior.mergedWithNext.split(p, matches: Self.runs(p.scalars, where: { $0 == replacement }, single: true))
            }
        case .whitespace:
            // \w+|[^\w\s]+ , removing whitespace.
            return pieces.flatMap { p in
                SplitBehavior.removed.split(p, matches: Self.classRuns(p.scalars, Self.wordClass), invert: true)
            }
        case .whitespaceSplit:
            return pieces.flatMap { p in
                SplitBehavior.removed.split(p, matches: Self.runs(p.scalars, where: { $0.properties.isWhitespace }, single: false))
            }
        case let .punctuation(behavior):
            return pieces.flatMap { behavior.split($0, matches: Self.runs($0.scalars, where: Self.isPunctuation, single: true)) }
        case .bert:
            let ws = PreTokenizer.whitespaceSplit.apply(pieces)
            return PreTokenizer.punctuation(.isolated).apply(ws)
        case let .charDelimiter(d):
            return pieces.flatMap { SplitBehavior.removed.split($0, matches: Self.runs($0.scalars, where: { $0 == d }, single: true)) }
        case let .sequence(list):
            return list.reduce(pieces) { $1.apply($0) }
        }
    }

    static func isNumeric(_ s: Unicode.Scalar) -> Bool {
        // Rust's char::is_numeric: general categories Nd, Nl, No.
        KnownSplitRegex.isNumber(s)
    }

    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return (0x21...0x2F).contains(s.value) || (0x3A...0x40).contains(s.value) || (0x5B...0x60).contains(s.value) || (0x7B...0x7E).contains(s.value) }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    /// 0 = whitespace, 1 = word character (\w), 2 = anything else.
    static func wordClass(_ s: Unicode.Scalar) -> Int {
        if s.properties.isWhitespace { return 0 }
        if s == "_" || KnownSplitRegex.isLetter(s) || KnownSplitRegex.isNumber(s) { return 1 }
        switch s.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .connectorPunctuation: return 1
        default: return 2
        }
    }

    /// Maximal runs of scalars with the same non-zero class.
    static func classRuns(_ t: [Unicode.Scalar], _ cls: (Unicode.Scalar) -> Int) -> [Range<Int>] {
        var out = [Range<Int>]()
        var i = 0
        while i < t.count {
            let c = cls(t[i])
            var k = i + 1
            while k < t.count && cls(t[k]) == c { k += 1 }
            if c != 0 { out.append(i..<k) }
            i = k
        }
        return out
    }

    /// Scalars satisfying `test`, one match each (`single`) or one per maximal run.
    static func runs(_ t: [Unicode.Scalar], where test: (Unicode.Scalar) -> Bool, single: Bool) -> [Range<Int>] {
        var out = [Range<Int>]()
        var i = 0
        while i < t.count {
            if test(t[i]) {
                var k = i + 1
                if !single { while k < t.count && test(t[k]) { k += 1 } }
                out.append(i..<k)
                i = k
            } else {
                i += 1
            }
        }
        return out
    }
}
