/// tokenizer.json `added_tokens`: strings matched whole in the text before any other processing
/// (tokenizers' `AddedVocabulary`). Matching is leftmost-longest; `special` tokens are skipped
/// when the caller does not parse special tokens; `normalized` tokens are matched in normalized text.
struct AddedVocabulary: Sendable {
    struct Entry: Sendable {
        let id: Int32
        let content: String
        let pattern: [Unicode.Scalar]
        let special: Bool
        let singleWord: Bool
        let lstrip: Bool
        let rstrip: Bool
        let normalized: Bool
    }

    /// A stretch of input: an added token, or text still to be tokenized.
    enum Segment {
        case token(Int32)
        case text(TextPiece)
    }

    let entries: [Entry]
    private let rawIndex: [Unicode.Scalar: [Int]]
    private let normalizedIndex: [Unicode.Scalar: [Int]]

    /// - Parameter modelVocab: ids are assigned as tokenizers assigns them on load, not taken from
    ///   the file's `id`: a token already in the vocabulary (or added before) keeps that id, a new one
    ///   gets the next id past the vocabulary. For files written by tokenizers the two agree.
    init(json: JSONNode, normalizer: Normalizer?, modelVocab: [String: Int32]) throws {
        var entries = [Entry]()
        var assigned = [String: Int32]()
        var maxAdded: Int32?
        if !json.isNull {
            for item in try json.requireArray() {
                guard let fileID = item["id"].int, fileID >= 0 else { throw item["id"].fail("a non-negative integer") }
                _ = fileID
                let content = try item["content"].requireString()
                let id: Int32
                if let known = assigned[content] ?? modelVocab[content] {
                    id = known
                } else if let m = maxAdded, m >= Int32(modelVocab.count) || modelVocab.isEmpty {
                    id = m + 1
                } else {
                    id = Int32(modelVocab.count)
                }
                assigned[content] = id
                maxAdded = max(maxAdded ?? id, id)
                let special = try item["special"].bool(default: false)
                let normalized = try item["normalized"].bool(default: !special)
                var pattern = Array(content)
                if normalized, let normalizer { pattern = normalizer.apply(pattern) }
                entries.append(Entry(id: id, content: content, pattern: pattern, special: special,
                                     singleWord: try item["single_word"].bool(default: false),
                                     lstrip: try item["lstrip"].bool(default: false),
                                     rstrip: try item["rstrip"].bool(default: false),
                                     normalized: normalized))
            }
        }
        self.entries = entries
        var raw = [Unicode.Scalar: [Int]](), norm = [Unicode.Scalar: [Int]]()
        for (i, e) in entries.enumerated() {
            guard let first = e.pattern.first else { continue }
            if e.normalized { norm[first, default: []].append(i) } else { raw[first, default: []].append(i) }
        }
        // Longest first, so the first candidate that matches at a position is the leftmost-longest.
        let byLength: ([Int]) -> [Int] = { $0.sorted { entries[$0].pattern.count > entries[$1].pattern.count } }
        rawIndex = raw.mapValues(byLength)
        normalizedIndex = norm.mapValues(byLength)
    }

    /// Splits `piece` at the added tokens of one kind (raw or normalized).
    func split(_ piece: TextPiece, normalized: Bool, parseSpecial: Bool) -> [Segment] {
        let index = normalized ? normalizedIndex : rawIndex
        let t = piece.scalars
        if index.isEmpty || t.isEmpty { return [.text(piece)] }
        var out = [Segment]()
        var startOffset = 0
        var i = 0
        func text(_ r: Range<Int>) {
            if !r.isEmpty { out.append(.text(TextPiece(scalars: Array(t[r]), atStart: piece.atStart && r.lowerBound == 0))) }
        }
        while i < t.count {
            guard let candidates = index[t[i]],
                  let which = candidates.first(where: { c in
                      let p = entries[c].pattern
                      return i + p.count <= t.count && t[i..<(i + p.count)].elementsEqual(p)
                  })
            else { i += 1; continue }
            let e = entries[which]
            var start = i
            var stop = i + e.pattern.count
            i = stop
            if e.special && !parseSpecial { continue }
            if e.singleWord {
                let before = start == 0 || !Self.isWordChar(t[start - 1])
                let after = stop == t.count || !Self.isWordChar(t[stop])
                if !before || !after { continue }
            }
            if e.lstrip {
                var s = start
                while s > 0 && t[s - 1].properties.isWhitespace { s -= 1 }
                start = max(s, startOffset)
            }
            if e.rstrip {
                while stop < t.count && t[stop].properties.isWhitespace { stop += 1 }
                i = stop
            }
            text(startOffset..<start)
            out.append(.token(e.id))
            startOffset = stop
        }
        text(startOffset..<t.count)
        return out
    }

    private static func isWordChar(_ s: Unicode.Scalar) -> Bool {
        s == "_" || s.properties.isAlphabetic || s.properties.numericType != nil
    }
}
