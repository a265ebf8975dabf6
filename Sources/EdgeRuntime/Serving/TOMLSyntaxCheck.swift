/// A single-pass recogniser for the whole TOML 1.0 grammar (toml.io/en/v1.0.0, its ABNF plus the
/// prose rules the ABNF leaves out: control characters, Unicode scalar escapes, date ranges,
/// 64-bit integers). It builds no values; it only answers "is this syntactically TOML, and if not,
/// where and what was expected".
///
/// Why it exists: toml++ (bundled in TOMLKit) asserts — `abort()` in our builds, undefined
/// behaviour with `NDEBUG` — on several malformed inputs (`[=server]`, `x = [}`: RELIABILITY.md)
/// instead of reporting them. Patching those one at a time never ends, so `DaemonConfiguration`
/// runs this check first and TOMLKit only ever sees syntactically valid TOML. What is left to
/// TOMLKit is semantic: duplicate keys, redefined tables, appending to inline tables.
///
/// Nesting of arrays and inline tables is capped at `maxDepth` so a hostile file cannot exhaust the
/// stack (here or in toml++, which recurses too).
public struct TOMLSyntaxCheck {
    public static let maxDepth = 64

    /// Where the document stops being TOML: a byte offset and what the grammar expected there.
    struct Failure: Error {
        var offset: Int
        var expected: String
    }

    /// Throws `DaemonError.configSyntax` naming the 1-based line and column (in characters) of the
    /// first syntax error and what was expected there; `path` is only for the message.
    public static func validate(_ bytes: [UInt8], path: String) throws(DaemonError) {
        var check = TOMLSyntaxCheck(bytes)
        do {
            try check.document()
        } catch {
            let (line, column) = position(of: error.offset, in: bytes)
            throw .configSyntax(path: path, line: line, column: column,
                                reason: "expected \(error.expected), found \(describe(at: error.offset, in: bytes))")
        }
    }

    private let b: [UInt8]
    private var i = 0

    private init(_ bytes: [UInt8]) { b = bytes }

    // MARK: Document structure

    private mutating func document() throws(Failure) {
        try checkUTF8()
        if b.count >= 3, b[0] == 0xEF, b[1] == 0xBB, b[2] == 0xBF { i = 3 }  // a UTF-8 byte-order mark
        while true {
            ws()
            guard let c = peek else { return }
            switch c {
            case UInt8(ascii: "#"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                break
            case UInt8(ascii: "["):
                try tableHeader()
            default:
                try keyValue(depth: 0)
            }
            ws()
            if peek == UInt8(ascii: "#") { try comment() }
            if peek == nil { return }
            switch c {
            case UInt8(ascii: "["): try newline("the end of the line after the table header (a comment may follow)")
            case UInt8(ascii: "#"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): try newline("a line feed after the carriage return")
            default: try newline("the end of the line after the value (one key/value pair per line; a comment may follow)")
            }
        }
    }

    private mutating func tableHeader() throws(Failure) {
        i += 1
        let isArray = peek == UInt8(ascii: "[")
        if isArray { i += 1 }
        ws()
        try key()
        try expect("]", isArray ? "']]' closing the [[array of tables]] header" : "']' closing the [table] header")
        if isArray { try expect("]", "']]' closing the [[array of tables]] header (no space between the brackets)") }
    }

    private mutating func keyValue(depth: Int) throws(Failure) {
        try key()
        try expect("=", "'=' after the key")
        ws()
        try value(depth: depth)
    }

    /// A simple or dotted key; consumes the whitespace after it.
    private mutating func key() throws(Failure) {
        while true {
            try simpleKey()
            ws()
            guard peek == UInt8(ascii: ".") else { return }
            i += 1
            ws()
        }
    }

    private mutating func simpleKey() throws(Failure) {
        switch peek {
        case UInt8(ascii: "\"")?:
            try basicString()
        case UInt8(ascii: "'")?:
            try literalString()
        case let c? where Self.isBareKey(c):
            while let c = peek, Self.isBareKey(c) { i += 1 }
        default:
            throw fail("a key (letters, digits, '_', '-' or a quoted string)")
        }
    }

    // MARK: Values

    private mutating func value(depth: Int) throws(Failure) {
        guard let c = peek else { throw fail("a value") }
        switch c {
        case UInt8(ascii: "\""):
            if startsWith("\"\"\"") { try multiLineString(quote: c) } else { try basicString() }
        case UInt8(ascii: "'"):
            if startsWith("'''") { try multiLineString(quote: c) } else { try literalString() }
        case UInt8(ascii: "["):
            try array(depth: depth + 1)
        case UInt8(ascii: "{"):
            try inlineTable(depth: depth + 1)
        case UInt8(ascii: "t"):
            try word("true")
        case UInt8(ascii: "f"):
            try word("false")
        case UInt8(ascii: "i"):
            try word("inf")
        case UInt8(ascii: "n"):
            try word("nan")
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            try number()
        case UInt8(ascii: "0")...UInt8(ascii: "9"):
            if digits(at: i, 4), byte(at: i + 4) == UInt8(ascii: "-") {
                try dateOrDateTime()
            } else if digits(at: i, 2), byte(at: i + 2) == UInt8(ascii: ":") {
                try time()
            } else {
                try number()
            }
        default:
            throw fail("a value (a string, number, true/false, date/time, [array] or {inline table})")
        }
    }

    private mutating func array(depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw fail("at most \(Self.maxDepth) nested arrays and inline tables") }
        i += 1
        while true {
            try wsCommentsNewlines()
            if peek == UInt8(ascii: "]") { i += 1; return }
            try value(depth: depth)
            try wsCommentsNewlines()
            switch peek {
            case UInt8(ascii: ",")?: i += 1
            case UInt8(ascii: "]")?: i += 1; return
            default: throw fail("',' or ']' after an array element")
            }
        }
    }

    private mutating func inlineTable(depth: Int) throws(Failure) {
        guard depth <= Self.maxDepth else { throw fail("at most \(Self.maxDepth) nested arrays and inline tables") }
        i += 1
        ws()
        if peek == UInt8(ascii: "}") { i += 1; return }
        while true {
            try keyValue(depth: depth)
            ws()
            switch peek {
            case UInt8(ascii: ",")?:
                i += 1
                ws()
                if peek == UInt8(ascii: "}") { throw fail("a key after ',' (an inline table takes no trailing comma)") }
            case UInt8(ascii: "}")?:
                i += 1
                return
            default:
                throw fail("',' or '}' after a value in the inline table (an inline table stays on one line)")
            }
        }
    }

    private mutating func word(_ text: String) throws(Failure) {
        guard startsWith(text) else { throw fail("a value (did you mean \(text)?)") }
        i += text.utf8.count
    }

    // MARK: Strings

    private mutating func basicString() throws(Failure) {
        i += 1
        while true {
            guard let c = peek else { throw fail("'\"' closing the string") }
            switch c {
            case UInt8(ascii: "\""):
                i += 1
                return
            case UInt8(ascii: "\\"):
                try escape()
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw fail("'\"' closing the string before the end of the line (\"\"\" starts a multi-line string)")
            default:
                try stringCharacter()
            }
        }
    }

    private mutating func literalString() throws(Failure) {
        i += 1
        while true {
            guard let c = peek else { throw fail("\"'\" closing the literal string") }
            switch c {
            case UInt8(ascii: "'"):
                i += 1
                return
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                throw fail("\"'\" closing the literal string before the end of the line (''' starts a multi-line string)")
            default:
                try stringCharacter()
            }
        }
    }

    /// `"""…"""` (escapes, line-ending backslashes) or `'''…'''` (verbatim). Up to two quotes may
    /// sit right before the closing delimiter and belong to the content.
    private mutating func multiLineString(quote: UInt8) throws(Failure) {
        let delimiter = quote == UInt8(ascii: "\"") ? "\"\"\"" : "'''"
        i += 3
        if peek == UInt8(ascii: "\n") || peek == UInt8(ascii: "\r") { try newline("a line feed after the carriage return") }
        while true {
            guard let c = peek else { throw fail("\(delimiter) closing the multi-line string") }
            switch c {
            case quote:
                var n = 0
                while byte(at: i + n) == quote { n += 1 }
                if n >= 3 {
                    guard n <= 5 else {
                        i += 5
                        throw fail("the end of the value (at most two quotes may precede the closing \(delimiter))")
                    }
                    i += n
                    return
                }
                i += n
            case UInt8(ascii: "\\") where quote == UInt8(ascii: "\""):
                var j = i + 1
                while let w = byte(at: j), Self.isWhitespace(w) { j += 1 }
                if let n = byte(at: j), Self.isNewlineStart(n) {
                    // A line-ending backslash: it, the newline and all whitespace and newlines after it vanish.
                    i = j
                    try newline("a line feed after the carriage return")
                    while let w = peek {
                        if Self.isWhitespace(w) { i += 1 } else if Self.isNewlineStart(w) { try newline("a line feed after the carriage return") } else { break }
                    }
                } else {
                    try escape()
                }
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                try newline("a line feed after the carriage return")
            default:
                try stringCharacter()
            }
        }
    }

    /// One character of string content other than quotes, backslashes and newlines: tab, printable
    /// ASCII, or a (checked) multi-byte UTF-8 sequence. Control characters must be escaped.
    private mutating func stringCharacter() throws(Failure) {
        let c = b[i]
        guard c == 0x09 || (c >= 0x20 && c != 0x7F) else {
            throw fail("a printable character (control characters must be written as escapes like \\u0007 in a basic string)")
        }
        i += 1
    }

    private mutating func escape() throws(Failure) {
        i += 1
        guard let c = peek else { throw fail("an escape after '\\'") }
        switch c {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "b"), UInt8(ascii: "f"),
             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            i += 1
        case UInt8(ascii: "u"), UInt8(ascii: "U"):
            let count = c == UInt8(ascii: "u") ? 4 : 8
            let start = i - 1
            i += 1
            var scalar: UInt32 = 0
            for _ in 0..<count {
                guard let h = peek, let v = Self.hexValue(h) else { throw fail("\(count) hexadecimal digits after \\\(Character(Unicode.Scalar(c)))") }
                scalar = scalar << 4 | UInt32(v)
                i += 1
            }
            guard scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else {
                i = start
                throw fail("a Unicode scalar value (not a surrogate, at most 10FFFF) in the \\u/\\U escape")
            }
        default:
            i -= 1
            throw fail("a valid escape (\\b \\t \\n \\f \\r \\\" \\\\ \\uXXXX \\UXXXXXXXX); write a literal backslash as \\\\")
        }
    }

    // MARK: Numbers

    private mutating func number() throws(Failure) {
        var negative = false
        if let s = peek, s == UInt8(ascii: "+") || s == UInt8(ascii: "-") {
            negative = s == UInt8(ascii: "-")
            i += 1
            if peek == UInt8(ascii: "i") { return try word("inf") }
            if peek == UInt8(ascii: "n") { return try word("nan") }
            if peek == UInt8(ascii: "0"), let p = byte(at: i + 1), [UInt8(ascii: "x"), UInt8(ascii: "o"), UInt8(ascii: "b")].contains(p) {
                throw fail("a decimal number (hexadecimal, octal and binary integers take no sign)")
            }
        } else if peek == UInt8(ascii: "0"), let p = byte(at: i + 1) {
            let radix: UInt64
            switch p {
            case UInt8(ascii: "x"): radix = 16
            case UInt8(ascii: "o"): radix = 8
            case UInt8(ascii: "b"): radix = 2
            default: radix = 0
            }
            if radix != 0 {
                i += 2
                try integerDigits(radix: radix, limit: UInt64(Int64.max), name: radix == 16 ? "a hexadecimal digit" : radix == 8 ? "an octal digit" : "a binary digit")
                return
            }
        }
        let intStart = i
        guard peek.map(Self.isDigit) == true else { throw fail("a digit") }
        if peek == UInt8(ascii: "0"), let n = byte(at: i + 1), Self.isDigit(n) || n == UInt8(ascii: "_") {
            i += 1
            throw fail("no leading zeros in a decimal number")
        }
        try digitRun("a digit")
        let intEnd = i
        var isFloat = false
        if peek == UInt8(ascii: ".") {
            i += 1
            try digitRun("a digit after the decimal point")
            isFloat = true
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            i += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
            try digitRun("a digit in the exponent")
            isFloat = true
        }
        if !isFloat {
            // TOML integers are 64-bit signed; one that does not fit is an error, not a rounding.
            var magnitude: UInt64 = 0
            for d in b[intStart..<intEnd] where d != UInt8(ascii: "_") {
                let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(UInt64(d - UInt8(ascii: "0")))
                guard !o1, !o2 else { i = intStart; throw fail("an integer between -9223372036854775808 and 9223372036854775807") }
                magnitude = s
            }
            guard magnitude <= UInt64(Int64.max) + (negative ? 1 : 0) else {
                i = intStart
                throw fail("an integer between -9223372036854775808 and 9223372036854775807")
            }
        }
    }

    /// digit *( digit / "_" digit ): underscores only between digits.
    private mutating func digitRun(_ what: String) throws(Failure) {
        guard let c = peek, Self.isDigit(c) else { throw fail(what) }
        i += 1
        while let c = peek {
            if Self.isDigit(c) {
                i += 1
            } else if c == UInt8(ascii: "_") {
                i += 1
                guard let d = peek, Self.isDigit(d) else { throw fail("a digit after '_' (underscores go between digits)") }
            } else {
                return
            }
        }
    }

    private mutating func integerDigits(radix: UInt64, limit: UInt64, name: String) throws(Failure) {
        let start = i
        var value: UInt64 = 0
        var first = true
        while true {
            guard let c = peek, let v = Self.hexValue(c), UInt64(v) < radix else {
                if first { throw fail(name) }
                return
            }
            first = false
            let (m, o1) = value.multipliedReportingOverflow(by: radix)
            let (s, o2) = m.addingReportingOverflow(UInt64(v))
            guard !o1, !o2, s <= limit else { i = start; throw fail("an integer of at most 9223372036854775807 (7FFFFFFFFFFFFFFF)") }
            value = s
            i += 1
            if peek == UInt8(ascii: "_") {
                i += 1
                guard let d = peek, let dv = Self.hexValue(d), UInt64(dv) < radix else { throw fail("\(name) after '_' (underscores go between digits)") }
            }
        }
    }

    // MARK: Dates and times

    private mutating func dateOrDateTime() throws(Failure) {
        let year = try fixedDigits(4, "a 4-digit year")
        try expect("-", "'-' after the year")
        let monthStart = i
        let month = try fixedDigits(2, "a 2-digit month")
        guard (1...12).contains(month) else { i = monthStart; throw fail("a month from 01 to 12") }
        try expect("-", "'-' after the month")
        let dayStart = i
        let day = try fixedDigits(2, "a 2-digit day")
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { i = dayStart; throw fail("a day from 01 to \(days) in month \(month)") }
        if peek == UInt8(ascii: "T") || peek == UInt8(ascii: "t") {
            i += 1
        } else if peek == UInt8(ascii: " "), digits(at: i + 1, 2), byte(at: i + 3) == UInt8(ascii: ":") {
            i += 1
        } else {
            return  // a local date
        }
        try time()
        switch peek {
        case UInt8(ascii: "Z")?, UInt8(ascii: "z")?:
            i += 1
        case UInt8(ascii: "+")?, UInt8(ascii: "-")?:
            i += 1
            let hourStart = i
            let hour = try fixedDigits(2, "a 2-digit offset hour")
            guard hour <= 23 else { i = hourStart; throw fail("an offset hour from 00 to 23") }
            try expect(":", "':' in the offset (like +05:30)")
            let minuteStart = i
            let minute = try fixedDigits(2, "2-digit offset minutes")
            guard minute <= 59 else { i = minuteStart; throw fail("offset minutes from 00 to 59") }
        default:
            break  // a local date-time
        }
    }

    /// HH:MM:SS[.fraction] — seconds are required in TOML 1.0.
    private mutating func time() throws(Failure) {
        let hourStart = i
        let hour = try fixedDigits(2, "a 2-digit hour")
        guard hour <= 23 else { i = hourStart; throw fail("an hour from 00 to 23") }
        try expect(":", "':' after the hour")
        let minuteStart = i
        let minute = try fixedDigits(2, "2-digit minutes")
        guard minute <= 59 else { i = minuteStart; throw fail("minutes from 00 to 59") }
        try expect(":", "':' and seconds after the minutes (HH:MM:SS)")
        let secondStart = i
        let second = try fixedDigits(2, "2-digit seconds")
        guard second <= 60 else { i = secondStart; throw fail("seconds from 00 to 60") }
        if peek == UInt8(ascii: ".") {
            i += 1
            guard let d = peek, Self.isDigit(d) else { throw fail("a digit of the fractional seconds") }
            while let d = peek, Self.isDigit(d) { i += 1 }
        }
    }

    private mutating func fixedDigits(_ n: Int, _ what: String) throws(Failure) -> Int {
        guard digits(at: i, n) else { throw fail(what) }
        var v = 0
        for _ in 0..<n { v = v * 10 + Int(b[i] - UInt8(ascii: "0")); i += 1 }
        return v
    }

    // MARK: Whitespace, comments, newlines

    private mutating func ws() {
        while let c = peek, Self.isWhitespace(c) { i += 1 }
    }

    /// Inside arrays: whitespace, comments and newlines in any number.
    private mutating func wsCommentsNewlines() throws(Failure) {
        while let c = peek {
            if Self.isWhitespace(c) {
                i += 1
            } else if c == UInt8(ascii: "#") {
                try comment()
            } else if Self.isNewlineStart(c) {
                try newline("a line feed after the carriage return")
            } else {
                return
            }
        }
    }

    /// `#` up to (not including) the end of the line; control characters other than tab are not allowed.
    private mutating func comment() throws(Failure) {
        i += 1
        while let c = peek, c != UInt8(ascii: "\n") {
            if c == UInt8(ascii: "\r") {
                guard byte(at: i + 1) == UInt8(ascii: "\n") else { throw fail("a line feed after the carriage return") }
                return
            }
            guard c == 0x09 || (c >= 0x20 && c != 0x7F) else { throw fail("a printable character in the comment (no control characters)") }
            i += 1
        }
    }

    /// LF or CRLF; `what` describes what was expected instead.
    private mutating func newline(_ what: String) throws(Failure) {
        if peek == UInt8(ascii: "\n") {
            i += 1
        } else if peek == UInt8(ascii: "\r"), byte(at: i + 1) == UInt8(ascii: "\n") {
            i += 2
        } else {
            throw fail(peek == UInt8(ascii: "\r") ? "a line feed after the carriage return" : what)
        }
    }

    // MARK: Encoding

    /// The whole document must be UTF-8: no overlong forms, surrogates or code points past 10FFFF.
    private mutating func checkUTF8() throws(Failure) {
        var j = 0
        while j < b.count {
            let c = b[j]
            if c < 0x80 { j += 1; continue }
            let length: Int, minimum: UInt32
            var scalar: UInt32
            switch c {
            case 0xC2...0xDF: length = 2; minimum = 0x80; scalar = UInt32(c & 0x1F)
            case 0xE0...0xEF: length = 3; minimum = 0x800; scalar = UInt32(c & 0x0F)
            case 0xF0...0xF4: length = 4; minimum = 0x10000; scalar = UInt32(c & 0x07)
            default: i = j; throw fail("UTF-8 text (this byte cannot start a UTF-8 character)")
            }
            for k in 1..<length {
                guard j + k < b.count, b[j + k] & 0xC0 == 0x80 else { i = j; throw fail("UTF-8 text (a truncated multi-byte character)") }
                scalar = scalar << 6 | UInt32(b[j + k] & 0x3F)
            }
            guard scalar >= minimum, scalar <= 0x10FFFF, !(0xD800...0xDFFF).contains(scalar) else {
                i = j
                throw fail("UTF-8 text (an overlong form, a surrogate or a code point past U+10FFFF)")
            }
            j += length
        }
    }

    // MARK: Helpers

    private var peek: UInt8? { i < b.count ? b[i] : nil }

    private func byte(at j: Int) -> UInt8? { j < b.count ? b[j] : nil }

    private func digits(at j: Int, _ n: Int) -> Bool {
        guard j + n <= b.count else { return false }
        return b[j..<(j + n)].allSatisfy(Self.isDigit)
    }

    private func startsWith(_ s: String) -> Bool {
        let u = Array(s.utf8)
        return i + u.count <= b.count && b[i..<(i + u.count)].elementsEqual(u)
    }

    private mutating func expect(_ c: Unicode.Scalar, _ what: String) throws(Failure) {
        guard peek == UInt8(ascii: c) else { throw fail(what) }
        i += 1
    }

    private func fail(_ expected: String) -> Failure { Failure(offset: i, expected: expected) }

    private static func isWhitespace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }
    private static func isNewlineStart(_ c: UInt8) -> Bool { c == 0x0A || c == 0x0D }
    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    private static func isBareKey(_ c: UInt8) -> Bool {
        isDigit(c) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "_") || c == UInt8(ascii: "-")
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }

    /// 1-based line, and column in characters (UTF-8 sequences count once).
    static func position(of offset: Int, in b: [UInt8]) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for c in b[0..<min(offset, b.count)] {
            if c == 0x0A {
                line += 1
                column = 1
            } else if c & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    /// What sits at `offset`, for the message: "end of file", "'}'", "a newline", "U+0007", "byte 0xFF".
    static func describe(at offset: Int, in b: [UInt8]) -> String {
        guard offset < b.count else { return "the end of the file" }
        let c = b[offset]
        switch c {
        case 0x0A: return "the end of the line"
        case 0x0D: return "a carriage return"
        case 0x09: return "a tab"
        case 0x20: return "a space"
        case 0x21...0x7E: return "'\(Character(Unicode.Scalar(c)))'"
        case 0x00..<0x20, 0x7F: return "the control character U+00\(hex(c))"
        default:
            // A valid sequence is shown as itself, a byte that starts none as hex.
            let length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2
            if offset + length <= b.count, let s = String(validating: b[offset..<(offset + length)], as: UTF8.self), let ch = s.first {
                return "'\(ch)'"
            }
            return "the byte 0x\(hex(c))"
        }
    }

    private static func hex(_ c: UInt8) -> String {
        let s = String(c, radix: 16, uppercase: true)
        return s.count == 1 ? "0" + s : s
    }
}
