/// Turns generated ids into text as they arrive, emitting only whole characters: a multi-byte UTF-8
/// character split over several byte tokens is held back until its last byte arrives.
///
/// It re-decodes a short window of recent ids (from `prefixOffset`) and emits what the newest ids
/// added, so decoders that look at neighbouring tokens (SentencePiece's leading-space strip, byte
/// fallback) give the same text as decoding everything at once. Not thread-safe: one per sequence.
public struct StreamingDetokenizer {
    public let tokenizer: Tokenizer
    public let skipSpecial: Bool
    private var ids: [Int32] = []
    private var prefixOffset = 0
    private var readOffset = 0
    /// Held-back tokens beyond which an undecodable tail is released as U+FFFD rather than waiting
    /// forever (a model can emit byte tokens that never form a character).
    private static let maxPending = 8

    public init(tokenizer: Tokenizer, skipSpecial: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// Adds one id; returns the text that is now complete (often empty).
    public mutating func feed(_ id: Int32) -> String {
        ids.append(id)
        let prefix = tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecial: skipSpecial)
        let full = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecial: skipSpecial)
        let incomplete = full.unicodeScalars.last == "\u{FFFD}" && ids.count - readOffset < Self.maxPending
        let p = prefix.unicodeScalars.count
        guard !incomplete, full.unicodeScalars.count > p else { return "" }
        // Normally `full` extends `prefix`; if a decoder rewrote earlier text the tail is still the best answer.
        prefixOffset = readOffset
        readOffset = ids.count
        return String(String.UnicodeScalarView(full.unicodeScalars.dropFirst(p)))
    }

    /// Whatever is still held back (an unfinished character comes out as U+FFFD).
    public mutating func flush() -> String {
        guard readOffset < ids.count else { return "" }
        let prefix = tokenizer.decode(Array(ids[prefixOffset..<readOffset]), skipSpecial: skipSpecial)
        let full = tokenizer.decode(Array(ids[prefixOffset...]), skipSpecial: skipSpecial)
        prefixOffset = ids.count
        readOffset = ids.count
        return String(String.UnicodeScalarView(full.unicodeScalars.dropFirst(prefix.unicodeScalars.count)))
    }
}
