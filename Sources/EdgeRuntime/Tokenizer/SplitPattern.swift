import Foundation

/// A pattern that finds non-overlapping matches in a piece of text, left to right, as Oniguruma's
/// `find_iter` does in tokenizers. Ranges are in Unicode scalars.
///
/// The regexes of the common byte-level families (GPT-2, Llama-3, Qwen2) are recognised and run by a
/// hand-written matcher (`KnownSplitRegex`), an order of magnitude faster than ICU; any other regex
/// goes through `NSRegularExpression` (ICU), which shares Oniguruma's syntax for what these files use.
enum SplitPattern: Sendable {
    case literal([Unicode.Scalar])
    case known(KnownSplitRegex)
    case icu(ICURegex)

    static func regex(_ pattern: String, file: String) throws -> SplitPattern {
        if let known = KnownSplitRegex(pattern: pattern) { return .known(known) }
        return .icu(try ICURegex(pattern, file: file))
    }

    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case let .literal(needle):
            guard !needle.isEmpty, text.count >= needle.count else { return [] }
            var out = [Range<Int>]()
            var i = 0
            while i + needle.count <= text.count {
                if text[i] == needle[0] && Array(text[i..<(i + needle.count)]) == needle {
                    out.append(i..<(i + needle.count)); i += needle.count
                } else {
                    i += 1
                }
            }
            return out
        case let .known(k):
            return k.matches(in: text)
        case let .icu(r):
            return r.matches(in: text)
        }
    }
}

/// An ICU regex over scalar arrays; converts the UTF-16 ranges ICU reports back to scalar offsets.
final class ICURegex: @unchecked Sendable {
    // NSRegularExpression is immutable and documented thread-safe for matching.
    private let regex: NSRegularExpression
    let pattern: String

    init(_ pattern: String, file: String) throws {
        self.pattern = pattern
        do {
            regex = try NSRegularExpression(pattern: pattern, options: [])
        } catch {
            throw TokenizerError.badRegex(file: file, pattern: pattern, reason: "\(error)")
        }
    }

    func matches(in text: [Unicode.Scalar]) -> [Range<Int>] {
        if text.isEmpty { return [] }
        let string = String(String.UnicodeScalarView(text))
        // utf16 offset → scalar offset, for every scalar boundary.
        var scalarAt = [Int](repeating: 0, count: string.utf16.count + 1)
        var u = 0
        for (i, s) in text.enumerated() {
            scalarAt[u] = i
            u += s.utf16.count
        }
        scalarAt[u] = text.count
        let ns = string as NSString
        var out = [Range<Int>]()
        for m in regex.matches(in: string, options: [], range: NSRange(location: 0, length: ns.length)) {
            let r = m.range
            if r.length == 0 { continue }
            out.append(scalarAt[r.location]..<scalarAt[r.location + r.length])
        }
        return out
    }
}
