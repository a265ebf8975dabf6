/// Hand-written matchers for the split regexes byte-level BPE families ship, equal to Oniguruma on
/// every input (tests compare them with ICU on generated text):
///
/// - GPT-2 (also SmolLM, StarCoder, RoBERTa): `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// - Llama-3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
/// - Qwen2: as Llama-3 with `\p{N}` for `\p{N}{1,3}`.
struct KnownSplitRegex: Sendable {
    enum Family: Sendable { case gpt2, llama3, qwen2 }
    let family: Family

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(pattern: String) {
        switch pattern {
        case Self.gpt2Pattern: family = .gpt2
        case Self.llama3Pattern: family = .llama3
        case Self.qwen2Pattern: family = .qwen2
        default: return nil
        }
    }

    init(family: Family) { self.family = family }

    // Character classes. ASCII is answered without touching the Unicode tables.
    @inline(__always) static func isLetter(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    @inline(__always) static func isNumber(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
    @inline(__always) static func isSpace(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        return s.properties.isWhitespace
    }
    @inline(__always) static func isNewline(_ s: Unicode.Scalar) -> Bool { s.value == 0x0A || s.value == 0x0D }
    @inline(__always) static func isOther(_ s: Unicode.Scalar) -> Bool { !isSpace(s) && !isLetter(s) && !isNumber(s) }

    func matches(in t: [Unicode.Scalar]) -> [Range<Int>] {
        var out = [Range<Int>]()
        out.reserveCapacity(t.count / 3 + 1)
        var i = 0
        while i < t.count {
            let len = family == .gpt2 ? matchGPT2(t, i) : matchLlama3(t, i, maxDigits: family == .llama3 ? 3 : 1)
            out.append(i..<(i + len))
            i += len
        }
        return out
    }

    /// Length of a contraction `'s|'t|'re|'ve|'m|'ll|'d` at i, or 0.
    private func contraction(_ t: [Unicode.Scalar], _ i: Int, caseInsensitive: Bool) -> Int {
        guard t[i] == "'", i + 1 < t.count else { return 0 }
        func lower(_ s: Unicode.Scalar) -> Unicode.Scalar {
            guard caseInsensitive else { return s }
            if s.value >= 0x41 && s.value <= 0x5A { return Unicode.Scalar(s.value | 0x20)! }
            if s.value == 0x17F { return "s" }  // LATIN SMALL LETTER LONG S case-folds to s
            return s
        }
        let a = lower(t[i + 1])
        if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
        guard i + 2 < t.count else { return 0 }
        let b = lower(t[i + 2])
        if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return 3 }
        return 0
    }

    /// Whitespace at i: `\s+(?!\S)` then `\s+`.
    private func whitespaceRun(_ t: [Unicode.Scalar], _ i: Int) -> Int {
        var k = i
        while k < t.count && Self.isSpace(t[k]) { k += 1 }
        let n = k - i
        if k == t.count || n == 1 { return n }
        return n - 1
    }

    private func matchGPT2(_ t: [Unicode.Scalar], _ i: Int) -> Int {
        let c = contraction(t, i, caseInsensitive: false)
        if c > 0 { return c }
        var j = i
        if t[j] == " " && j + 1 < t.count && !Self.isSpace(t[j + 1]) { j += 1 }
        let s = t[j]
        if Self.isLetter(s) {
            var k = j + 1
            while k < t.count && Self.isLetter(t[k]) { k += 1 }
            return k - i
        }
        if Self.isNumber(s) {
            var k = j + 1
            while k < t.count && Self.isNumber(t[k]) { k += 1 }
            return k - i
        }
        if !Self.isSpace(s) {
            var k = j + 1
            while k < t.count && Self.isOther(t[k]) { k += 1 }
            return k - i
        }
        return whitespaceRun(t, i)
    }

    private func matchLlama3(_ t: [Unicode.Scalar], _ i: Int, maxDigits: Int) -> Int {
        let c = contraction(t, i, caseInsensitive: true)
        if c > 0 { return c }
        let s = t[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if Self.isLetter(s) {
            var k = i + 1
            while k < t.count && Self.isLetter(t[k]) { k += 1 }
            return k - i
        }
        if !Self.isNewline(s) && !Self.isNumber(s) && i + 1 < t.count && Self.isLetter(t[i + 1]) {
            var k = i + 2
            while k < t.count && Self.isLetter(t[k]) { k += 1 }
            return k - i
        }
        // \p{N}{1,maxDigits}
        if Self.isNumber(s) {
            var k = i + 1
            while k < t.count && k - i < maxDigits && Self.isNumber(t[k]) { k += 1 }
            return k - i
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        var j = i
        if s == " " && j + 1 < t.count && Self.isOther(t[j + 1]) { j += 1 }
        if Self.isOther(t[j]) {
            var k = j + 1
            while k < t.count && Self.isOther(t[k]) { k += 1 }
            while k < t.count && Self.isNewline(t[k]) { k += 1 }
            return k - i
        }
        // \s*[\r\n]+ : the whitespace run up to and including its last newline.
        var k = i
        var lastNewline = -1
        while k < t.count && Self.isSpace(t[k]) {
            if Self.isNewline(t[k]) { lastNewline = k }
            k += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 - i }
        return whitespaceRun(t, i)
    }
}
