import Foundation
import Synchronization

/// The BPE model of tokenizer.json (`model.type == "BPE"`): vocabulary, ranked merges, and the
/// unknown-character rules (`unk_token`, `fuse_unk`, `byte_fallback`), as Hugging Face `tokenizers`
/// applies them to one pre-tokenized word.
///
/// Concurrency: immutable after init except for the word cache, which sits behind a `Mutex`;
/// `tokenize` may be called from any number of threads.
final class BPEModel: Sendable {
    let vocab: [String: Int32]
    /// id → token string, indexed by id; nil where the vocabulary has a hole.
    let tokens: [String?]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let merges: [UInt64: UInt64]
    /// Token id for each single scalar that is itself in the vocabulary (the common case).
    private let scalarIDs: [Unicode.Scalar: Int32]
    /// `<0xNN>` ids when `byte_fallback` is on and all 256 exist... or partially: nil entries are missing.
    private let byteIDs: [Int32?]
    let unkID: Int32?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    let continuingSubwordPrefix: String
    let endOfWordSuffix: String
    private let cache = Mutex<[String: [Int32]]>([:])
    private static let cacheCapacity = 10_000
    /// How many ids past its token count a vocabulary may use.
    static let maxIDGap = 1 << 20

    init(_ decoded: TokenizerFile.Model, file: String) throws {
        let model = JSONNode(value: decoded.options, file: file, path: "model")
        guard let vocab = decoded.vocab else { throw model["vocab"].fail("an object of token → id") }
        var maxID = -1
        // The id → token table is dense: an id far past the vocabulary's size (the fuzzer found one of
        // 1.5e9 in a 5 KB file) would make it gigabytes. Real vocabularies number their tokens 0 ..< n.
        let idLimit = vocab.count + Self.maxIDGap
        for (token, id) in vocab {
            guard id >= 0, Int(id) < idLimit else {
                throw TokenizerError.badValue(file: file, key: "model.vocab[\(token.debugDescription)]",
                                              expected: "an integer id from 0 to \(idLimit - 1) (\(vocab.count) tokens, gaps of at most \(Self.maxIDGap) ids)")
            }
            maxID = max(maxID, Int(id))
        }
        var tokens = [String?](repeating: nil, count: maxID + 1)
        for (token, id) in vocab { tokens[Int(id)] = token }
        self.vocab = vocab
        self.tokens = tokens

        fuseUnk = try model["fuse_unk"].bool(default: false)
        byteFallback = try model["byte_fallback"].bool(default: false)
        ignoreMerges = try model["ignore_merges"].bool(default: false)
        continuingSubwordPrefix = try model["continuing_subword_prefix"].optionalString() ?? ""
        endOfWordSuffix = try model["end_of_word_suffix"].optionalString() ?? ""
        if let unk = try model["unk_token"].optionalString() {
            guard let id = vocab[unk] else { throw TokenizerError.unknownToken(file: file, key: "model.unk_token", token: unk) }
            unkID = id
        } else {
            unkID = nil
        }

        let prefixLength = continuingSubwordPrefix.count
        var merges = [UInt64: UInt64](minimumCapacity: 1 << 16)
        for (rank, merge) in (decoded.merges ?? []).enumerated() {
            guard let (left, right) = merge.pair else { throw TokenizerError.badMerge(file: file, index: rank, merge: merge.raw) }
            let merged = prefixLength == 0 ? left + right : left + String(right.dropFirst(prefixLength))
            guard let l = vocab[left], let r = vocab[right], let m = vocab[merged] else {
                throw TokenizerError.badMerge(file: file, index: rank, merge: "\(left) \(right)")
            }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            // The first (best-ranked) occurrence of a pair wins, as in tokenizers.
            if merges[key] == nil { merges[key] = UInt64(rank) << 32 | UInt64(UInt32(m)) }
        }
        self.merges = merges

        var scalarIDs = [Unicode.Scalar: Int32]()
        for (token, id) in vocab {
            let scalars = token.unicodeScalars
            if scalars.count == 1, let s = scalars.first { scalarIDs[s] = id }
        }
        self.scalarIDs = scalarIDs
        byteIDs = (0..<256).map { vocab[String(format: "<0x%02X>", $0)] }
    }

    var vocabSize: Int { tokens.count }

    /// The ids of one pre-tokenized word, appended to `out`.
    func tokenize(_ word: [Unicode.Scalar], into out: inout [Int32]) {
        if word.isEmpty { return }
        let key = String(String.UnicodeScalarView(word))
        if let hit = cache.withLock({ $0[key] }) {
            out.append(contentsOf: hit)
            return
        }
        let ids = tokenizeUncached(word, key: key)
        if word.count < 256 {
            cache.withLock { c in
                if c.count >= Self.cacheCapacity { c.removeAll(keepingCapacity: true) }
                c[key] = ids
            }
        }
        out.append(contentsOf: ids)
    }

    private func tokenizeUncached(_ word: [Unicode.Scalar], key: String) -> [Int32] {
        if ignoreMerges, let id = vocab[key] { return [id] }
        var symbols = [Int32]()
        symbols.reserveCapacity(word.count)
        var pendingUnk = false
        let usesAffixes = !continuingSubwordPrefix.isEmpty || !endOfWordSuffix.isEmpty
        for (i, scalar) in word.enumerated() {
            var id: Int32?
            if usesAffixes {
                var s = String(scalar)
                if i > 0 { s = continuingSubwordPrefix + s }
                if i == word.count - 1 { s += endOfWordSuffix }
                id = vocab[s]
            } else {
                id = scalarIDs[scalar]
            }
            if let id {
                if pendingUnk, let unkID { symbols.append(unkID); pendingUnk = false }
                symbols.append(id)
                continue
            }
            if byteFallback {
                let bytes = Array(String(scalar).utf8)
                let ids = bytes.compactMap { byteIDs[Int($0)] }
                if ids.count == bytes.count {
                    // As in tokenizers, a pending unknown is not flushed before byte tokens.
                    symbols.append(contentsOf: ids)
                    continue
                }
            }
            if let unkID {
                if pendingUnk {
                    if !fuseUnk { symbols.append(unkID) }
                }
                pendingUnk = true
            }
        }
        if pendingUnk, let unkID { symbols.append(unkID) }
        return mergeAll(symbols)
    }

    /// Repeatedly applies the best-ranked merge, leftmost first among equal ranks. A binary heap of
    /// candidate pairs keyed by (rank, position) with lazy invalidation, as tokenizers' `Word::merge_all`.
    private func mergeAll(_ initial: [Int32]) -> [Int32] {
        let n = initial.count
        if n < 2 { return initial }
        var ids = initial
        var prev = [Int](0..<n).map { $0 - 1 }
        var next = [Int](0..<n).map { $0 + 1 }
        var alive = [Bool](repeating: true, count: n)
        // Heap entries: (rank << 32 | position), with the expected pair to detect stale entries.
        var heap = [(key: UInt64, pair: UInt64)]()
        heap.reserveCapacity(n)

        func pairKey(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        func push(_ entry: (key: UInt64, pair: UInt64)) {
            heap.append(entry)
            var c = heap.count - 1
            while c > 0 {
                let p = (c - 1) / 2
                if heap[p].key <= heap[c].key { break }
                heap.swapAt(p, c); c = p
            }
        }
        func pop() -> (key: UInt64, pair: UInt64) {
            let top = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var p = 0
                while true {
                    let l = 2 * p + 1, r = l + 1
                    var m = p
                    if l < heap.count && heap[l].key < heap[m].key { m = l }
                    if r < heap.count && heap[r].key < heap[m].key { m = r }
                    if m == p { break }
                    heap.swapAt(p, m); p = m
                }
            }
            return top
        }
        func consider(_ pos: Int) {
            let nx = next[pos]
            guard nx < n else { return }
            let pk = pairKey(ids[pos], ids[nx])
            if let m = merges[pk] {
                push((key: (m & 0xFFFF_FFFF_0000_0000) | UInt64(pos), pair: pk))
            }
        }
        for i in 0..<(n - 1) { consider(i) }
        while !heap.isEmpty {
            let top = pop()
            let pos = Int(top.key & 0xFFFF_FFFF)
            guard alive[pos] else { continue }
            let nx = next[pos]
            guard nx < n, pairKey(ids[pos], ids[nx]) == top.pair, let m = merges[top.pair] else { continue }
            ids[pos] = Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)
            alive[nx] = false
            next[pos] = next[nx]
            if next[nx] < n { prev[next[nx]] = pos }
            if prev[pos] >= 0 { consider(prev[pos]) }
            consider(pos)
        }
        var out = [Int32]()
        out.reserveCapacity(n)
        var i = 0
        while i < n { out.append(ids[i]); i = next[i] }
        return out
    }
}
