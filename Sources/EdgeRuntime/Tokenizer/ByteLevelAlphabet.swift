/// GPT-2's reversible byte ↔ printable-character table (`bytes_to_unicode`): printable Latin-1 bytes
/// stand for themselves, the other 68 bytes are shifted to U+0100 and up, so every byte has a visible
/// character and BPE never sees whitespace or control characters.
enum ByteLevelAlphabet {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var map = [Unicode.Scalar: UInt8]()
        for (b, s) in byteToScalar.enumerated() { map[s] = UInt8(b) }
        return map
    }()

    static func encode(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out = [Unicode.Scalar]()
        out.reserveCapacity(text.count)
        for s in text {
            if s.value < 0x80 {
                out.append(byteToScalar[Int(s.value)])
            } else {
                for b in String(s).utf8 { out.append(byteToScalar[Int(b)]) }
            }
        }
        return out
    }
}

extension Array where Element == Unicode.Scalar {
    init(_ string: String) { self = Array(string.unicodeScalars) }
    var string: String { String(String.UnicodeScalarView(self)) }
}
