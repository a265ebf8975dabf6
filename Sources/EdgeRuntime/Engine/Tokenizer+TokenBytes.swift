extension Tokenizer {
    /// The raw bytes one token stands for (OpenAI logprobs' `bytes`): byte-level BPE pieces mapped
    /// back through GPT-2's byte alphabet (they may be part of a UTF-8 character), SentencePiece
    /// byte-fallback pieces `<0xHH>` as their byte, anything else (special tokens, SentencePiece
    /// words) as the UTF-8 of its decoded text.
    public func tokenBytes(_ id: Int32) -> [UInt8] {
        guard let piece = tokenString(id) else { return [] }
        if !isSpecial(id) {
            if piece.utf8.count == 6, piece.hasPrefix("<0x"), piece.hasSuffix(">"),
               let b = UInt8(piece.dropFirst(3).dropLast(), radix: 16) {
                return [b]
            }
            var bytes: [UInt8] = []
            var byteLevel = true
            for s in piece.unicodeScalars {
                guard let b = ByteLevelAlphabet.scalarToByte[s] else { byteLevel = false; break }
                bytes.append(b)
            }
            if byteLevel { return bytes }
        }
        return Array(decode([id], skipSpecial: false).utf8)
    }
}
