/// Parses the Jinja subset chat templates use into a tree, with transformers' environment settings
/// (`trim_blocks=True`, `lstrip_blocks=True`): text, `{{ }}`, `{% if/elif/else %}`, `{% for %}` (with
/// `else`, inline `if` filter, tuple targets), `{% set %}` (names, `ns.attr`, tuples, block form),
/// `{% macro %}`, `{% break/continue %}`, `{% raw %}`, `{% generation %}`, comments and `-` whitespace
/// control. Anything else is a `ChatTemplateError.unsupported` naming it.
indirect enum JinjaNode {
    case text(String)
    case output(JinjaExpr, line: Int)
    case ifBlock([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode])
    case forBlock(targets: [String], iterable: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], line: Int)
    case set(targets: [JinjaExpr], value: JinjaExpr, line: Int)
    case setBlock(name: String, body: [JinjaNode])
    case macro(name: String, params: [(String, JinjaExpr?)], body: [JinjaNode])
    case breakLoop, continueLoop
}

indirect enum JinjaExpr {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String)
    case item(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)])
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)])
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool)
    case unary(String, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case conditional(JinjaExpr, test: JinjaExpr, otherwise: JinjaExpr?)
}

struct JinjaParser {
    // MARK: lexing of the template into text and tags

    enum Chunk {
        case text(String)
        case output(String, line: Int)
        case statement(String, line: Int)
    }

    static func chunks(_ source: String) throws -> [Chunk] {
        let s = Array(source.unicodeScalars)
        var out = [Chunk]()
        var i = 0
        var text = [Unicode.Scalar]()
        var line = 1
        var stripNextLeading = false
        var trimNextNewline = false

        func flushText() {
            if !text.isEmpty { out.append(.text(String(String.UnicodeScalarView(text)))) }
            text.removeAll()
        }
        func starts(_ p: String, at k: Int) -> Bool {
            let u = Array(p.unicodeScalars)
            return k + u.count <= s.count && Array(s[k..<(k + u.count)]) == u
        }
        while i < s.count {
            let isTag = s[i] == "{" && i + 1 < s.count && (s[i + 1] == "{" || s[i + 1] == "%" || s[i + 1] == "#")
            if !isTag {
                var c = s[i]
                if stripNextLeading && c.properties.isWhitespace { if c == "\n" { line += 1 }; i += 1; continue }
                stripNextLeading = false
                if trimNextNewline {
                    trimNextNewline = false
                    if c == "\n" { line += 1; i += 1; continue }
                    if c == "\r" && i + 1 < s.count && s[i + 1] == "\n" { line += 1; i += 2; continue }
                }
                if c == "\n" { line += 1 }
                text.append(c)
                i += 1
                c = " "
                continue
            }
            stripNextLeading = false
            trimNextNewline = false
            let kind = s[i + 1]
            let closer: String = kind == "{" ? "}}" : (kind == "%" ? "%}" : "#}")
            var j = i + 2
            let stripBefore = j < s.count && s[j] == "-"
            let keepBefore = j < s.count && s[j] == "+"
            if stripBefore || keepBefore { j += 1 }
            if stripBefore {
                while let last = text.last, last.properties.isWhitespace { text.removeLast() }
            } else if kind != "{" && !keepBefore {
                // lstrip_blocks: a block tag preceded only by spaces/tabs on its source line takes them with it.
                var k = i
                while k > 0 && (s[k - 1] == " " || s[k - 1] == "\t") { k -= 1 }
                if k == 0 || s[k - 1] == "\n" {
                    var n = i - k
                    while n > 0, let last = text.last, last == " " || last == "\t" { text.removeLast(); n -= 1 }
                }
            }
            flushText()
            let tagLine = line
            // Find the closer, skipping quoted strings inside expressions.
            var k = j
            var quote: Unicode.Scalar?
            var found = -1
            while k < s.count {
                let c = s[k]
                if c == "\n" { line += 1 }
                if kind != "#", let q = quote {
                    if c == "\\" { k += 2; continue }
                    if c == q { quote = nil }
                } else if kind != "#" && (c == "'" || c == "\"") {
                    quote = c
                } else if starts(closer, at: k) {
                    found = k; break
                }
                k += 1
            }
            guard found >= 0 else { throw ChatTemplateError.syntax(line: tagLine, message: "unclosed \"{\(String(kind))\", expected \"\(closer)\"") }
            var end = found
            let stripAfter = end > j && s[end - 1] == "-"
            let keepAfter = end > j && s[end - 1] == "+"  // `+%}` turns trim_blocks off for this tag
            if stripAfter || keepAfter { end -= 1 }
            let inner = String(String.UnicodeScalarView(s[j..<end]))
            i = found + 2
            if stripAfter { stripNextLeading = true }
            switch kind {
            case "{": out.append(.output(inner, line: tagLine))
            case "%":
                let trimmed = inner.trimmingCharacters(in: .whitespacesAndNewlines)
                if trimmed == "raw" {
                    // Everything up to {% endraw %} is text.
                    var r = i
                    var rawEnd = -1
                    while r < s.count {
                        if s[r] == "{" && r + 1 < s.count && s[r + 1] == "%" {
                            var q = r + 2
                            if q < s.count && (s[q] == "-" || s[q] == "+") { q += 1 }
                            while q < s.count && s[q].properties.isWhitespace { q += 1 }
                            if starts("endraw", at: q) { rawEnd = r; break }
                        }
                        r += 1
                    }
                    guard rawEnd >= 0 else { throw ChatTemplateError.syntax(line: tagLine, message: "{% raw %} without {% endraw %}") }
                    var body = Array(s[i..<rawEnd])
                    if !stripAfter, body.first == "\n" { body.removeFirst() }
                    out.append(.text(String(String.UnicodeScalarView(body))))
                    guard let close = (rawEnd..<s.count).first(where: { starts("%}", at: $0) }) else {
                        throw ChatTemplateError.syntax(line: tagLine, message: "unclosed {% endraw")
                    }
                    if s[close - 1] == "-" { stripNextLeading = true } else { trimNextNewline = true }
                    i = close + 2
                    continue
                }
                out.append(.statement(inner, line: tagLine))
                if !stripAfter && !keepAfter { trimNextNewline = true }
            default:
                if !stripAfter && !keepAfter { trimNextNewline = true }
            }
        }
        flushText()
        return out
    }

    // MARK: expression tokens

    enum Token: Equatable {
        case name(String), string(String), int(Int), double(Double), op(String), end
    }

    static func tokenize(_ src: String, line: Int) throws -> [Token] {
        let s = Array(src.unicodeScalars)
        var out = [Token]()
        var i = 0
        let ops3 = ["**"]
        _ = ops3
        while i < s.count {
            let c = s[i]
            if c.properties.isWhitespace { i += 1; continue }
            if c == "_" || c.properties.isAlphabetic {
                var k = i + 1
                while k < s.count && (s[k] == "_" || s[k].properties.isAlphabetic || ("0"..."9").contains(s[k])) { k += 1 }
                out.append(.name(String(String.UnicodeScalarView(s[i..<k]))))
                i = k
                continue
            }
            if ("0"..."9").contains(c) {
                var k = i
                var isFloat = false
                while k < s.count && (("0"..."9").contains(s[k]) || s[k] == "_") { k += 1 }
                if k + 1 < s.count && s[k] == "." && ("0"..."9").contains(s[k + 1]) {
                    isFloat = true
                    k += 1
                    while k < s.count && ("0"..."9").contains(s[k]) { k += 1 }
                }
                let text = String(String.UnicodeScalarView(s[i..<k])).replacingOccurrences(of: "_", with: "")
                out.append(isFloat ? .double(Double(text)!) : .int(Int(text) ?? 0))
                i = k
                continue
            }
            if c == "'" || c == "\"" {
                var k = i + 1
                var value = String.UnicodeScalarView()
                var closed = false
                while k < s.count {
                    let d = s[k]
                    if d == c { closed = true; k += 1; break }
                    if d == "\\" && k + 1 < s.count {
                        let e = s[k + 1]
                        k += 2
                        switch e {
                        case "n": value.append("\n")
                        case "t": value.append("\t")
                        case "r": value.append("\r")
                        case "0": value.append("\0")
                        case "\\", "'", "\"": value.append(e)
                        case "x", "u", "U":
                            let width = e == "x" ? 2 : (e == "u" ? 4 : 8)
                            guard k + width <= s.count, let v = UInt32(String(String.UnicodeScalarView(s[k..<(k + width)])), radix: 16),
                                  let scalar = Unicode.Scalar(v) else {
                                throw ChatTemplateError.syntax(line: line, message: "bad \\\(e) escape in string literal")
                            }
                            value.append(scalar)
                            k += width
                        case "\n": break
                        default: value.append("\\"); value.append(e)
                        }
                        continue
                    }
                    value.append(d)
                    k += 1
                }
                guard closed else { throw ChatTemplateError.syntax(line: line, message: "unterminated string literal") }
                out.append(.string(String(value)))
                i = k
                continue
            }
            let two = i + 1 < s.count ? String(String.UnicodeScalarView([c, s[i + 1]])) : ""
            if ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                out.append(.op(two)); i += 2; continue
            }
            if "+-*/%~<>()[]{}.,:|=".unicodeScalars.contains(c) {
                out.append(.op(String(c))); i += 1; continue
            }
            throw ChatTemplateError.syntax(line: line, message: "unexpected character \(String(c).debugDescription)")
        }
        out.append(.end)
        return out
    }

    // MARK: statements

    private var chunks: [Chunk]
    private var index = 0
    /// Block tags open inside each other; capped so a hostile template cannot overflow the stack of
    /// the recursive parser (or of the interpreter, which recurses the same way).
    private var blockDepth = 0
    static let maxBlockDepth = 64

    init(source: String) throws {
        chunks = try Self.chunks(source)
    }

    mutating func parseTemplate() throws -> [JinjaNode] {
        let (nodes, end) = try parseBody(until: [])
        if let end { throw ChatTemplateError.syntax(line: end.line, message: "unexpected {% \(end.keyword) %}") }
        return nodes
    }

    /// Parses nodes until a statement whose first word is in `until`; returns that statement.
    private mutating func parseBody(until: Set<String>) throws -> ([JinjaNode], (keyword: String, rest: [Token], line: Int)?) {
        blockDepth += 1
        defer { blockDepth -= 1 }
        guard blockDepth <= Self.maxBlockDepth else {
            var line = 0
            if index > 0, case let .statement(_, l) = chunks[index - 1] { line = l }
            throw ChatTemplateError.syntax(line: line, message: "blocks nested more than \(Self.maxBlockDepth) deep")
        }
        var nodes = [JinjaNode]()
        while index < chunks.count {
            let chunk = chunks[index]
            index += 1
            switch chunk {
            case let .text(t): nodes.append(.text(t))
            case let .output(src, line):
                var p = ExprParser(tokens: try Self.tokenize(src, line: line), line: line)
                let e = try p.parseExpression()
                try p.expectEnd()
                nodes.append(.output(e, line: line))
            case let .statement(src, line):
                let tokens = try Self.tokenize(src, line: line)
                guard case let .name(keyword) = tokens.first else {
                    throw ChatTemplateError.syntax(line: line, message: "empty or malformed {% %} tag")
                }
                let rest = Array(tokens.dropFirst())
                if until.contains(keyword) { return (nodes, (keyword, rest, line)) }
                nodes.append(try parseStatement(keyword, rest, line: line))
            }
        }
        return (nodes, nil)
    }

    private mutating func parseStatement(_ keyword: String, _ tokens: [Token], line: Int) throws -> JinjaNode {
        var p = ExprParser(tokens: tokens, line: line)
        switch keyword {
        case "if":
            var branches = [(JinjaExpr, [JinjaNode])]()
            var cond = try p.parseExpression()
            try p.expectEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                guard let end else { throw ChatTemplateError.syntax(line: line, message: "{% if %} without {% endif %}") }
                branches.append((cond, body))
                switch end.keyword {
                case "elif":
                    var q = ExprParser(tokens: end.rest, line: end.line)
                    cond = try q.parseExpression()
                    try q.expectEnd()
                case "else":
                    let (elseBody, close) = try parseBody(until: ["endif"])
                    guard close != nil else { throw ChatTemplateError.syntax(line: line, message: "{% if %} without {% endif %}") }
                    return .ifBlock(branches, otherwise: elseBody)
                default:
                    return .ifBlock(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [String]()
            repeat {
                guard case let .name(n) = p.next() else { throw ChatTemplateError.syntax(line: line, message: "expected a loop variable after `for`") }
                targets.append(n)
            } while p.accept(.op(","))
            guard p.next() == .name("in") else { throw ChatTemplateError.syntax(line: line, message: "expected `in` in {% for %}") }
            let iterable = try p.parseExpression(allowConditional: false)
            var filter: JinjaExpr?
            if p.accept(.name("if")) { filter = try p.parseExpression(allowConditional: false) }
            if p.accept(.name("recursive")) { throw ChatTemplateError.unsupported(line: line, feature: "recursive for loops") }
            try p.expectEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            guard let end else { throw ChatTemplateError.syntax(line: line, message: "{% for %} without {% endfor %}") }
            var otherwise = [JinjaNode]()
            if end.keyword == "else" {
                let (e, close) = try parseBody(until: ["endfor"])
                guard close != nil else { throw ChatTemplateError.syntax(line: line, message: "{% for %} without {% endfor %}") }
                otherwise = e
            }
            return .forBlock(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)
        case "set":
            var targets = [JinjaExpr]()
            repeat { targets.append(try p.parsePrimaryWithPostfix()) } while p.accept(.op(","))
            if p.accept(.op("=")) {
                let value = try p.parseTupleOrExpression()
                try p.expectEnd()
                return .set(targets: targets, value: value, line: line)
            }
            try p.expectEnd()
            guard targets.count == 1, case let .name(name) = targets[0] else {
                throw ChatTemplateError.syntax(line: line, message: "expected `=` in {% set %}")
            }
            let (body, end) = try parseBody(until: ["endset"])
            guard end != nil else { throw ChatTemplateError.syntax(line: line, message: "{% set \(name) %} without {% endset %}") }
            return .setBlock(name: name, body: body)
        case "macro":
            guard case let .name(name) = p.next(), p.accept(.op("(")) else {
                throw ChatTemplateError.syntax(line: line, message: "expected `macro name(...)`")
            }
            var params = [(String, JinjaExpr?)]()
            while !p.accept(.op(")")) {
                guard case let .name(param) = p.next() else { throw ChatTemplateError.syntax(line: line, message: "bad macro parameter") }
                var def: JinjaExpr?
                if p.accept(.op("=")) { def = try p.parseExpression() }
                params.append((param, def))
                if !p.accept(.op(",")) { guard p.accept(.op(")")) else { throw ChatTemplateError.syntax(line: line, message: "expected `)` in macro") }; break }
            }
            try p.expectEnd()
            let (body, end) = try parseBody(until: ["endmacro"])
            guard end != nil else { throw ChatTemplateError.syntax(line: line, message: "{% macro \(name) %} without {% endmacro %}") }
            return .macro(name: name, params: params, body: body)
        case "break": return .breakLoop
        case "continue": return .continueLoop
        case "generation":
            // transformers' AssistantTracker marks assistant spans; the text is rendered unchanged.
            let (body, end) = try parseBody(until: ["endgeneration"])
            guard end != nil else { throw ChatTemplateError.syntax(line: line, message: "{% generation %} without {% endgeneration %}") }
            return .ifBlock([(.literal(.bool(true)), body)], otherwise: [])
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration":
            throw ChatTemplateError.syntax(line: line, message: "unexpected {% \(keyword) %}")
        default:
            throw ChatTemplateError.unsupported(line: line, feature: "the {% \(keyword) %} tag")
        }
    }
}

/// Precedence climbing over Jinja2's grammar: conditional < or < and < not < comparison (incl. `in`)
/// < `+ -` < `~` < `* / // %` < `**` < unary minus < filters/tests < postfix (`.x`, `[i]`, `(...)`).
struct ExprParser {
    var tokens: [JinjaParser.Token]
    var pos = 0
    let line: Int
    /// Bounds on one tag's expression: how deep the recursive descent may go (parentheses, brackets,
    /// `not`/`-` chains) and how many operator/postfix nodes it may build (chains like `a+a+...` or
    /// `x|f|f|...` are built by loops, but evaluating and freeing the tree recurses on its depth).
    /// Real templates stay far below both; a hostile one gets a syntax error instead of a stack overflow.
    private var nesting = 0
    private var operations = 0
    static let maxNesting = 64
    static let maxOperations = 2048

    init(tokens: [JinjaParser.Token], line: Int) {
        self.tokens = tokens
        self.line = line
    }

    var peek: JinjaParser.Token { tokens[pos] }
    mutating func next() -> JinjaParser.Token { let t = tokens[pos]; if pos < tokens.count - 1 { pos += 1 }; return t }
    mutating func accept(_ t: JinjaParser.Token) -> Bool { if peek == t { pos += 1; return true }; return false }
    func error(_ m: String) -> ChatTemplateError { .syntax(line: line, message: m) }
    mutating func expect(_ t: JinjaParser.Token, _ what: String) throws { guard accept(t) else { throw error("expected \(what)") } }
    mutating func enter() throws {
        nesting += 1
        guard nesting <= Self.maxNesting else { throw error("expression nested more than \(Self.maxNesting) levels deep") }
    }
    mutating func leave() { nesting -= 1 }
    /// Counts one more operator, filter, test or postfix node.
    mutating func grow() throws {
        operations += 1
        guard operations <= Self.maxOperations else { throw error("expression has more than \(Self.maxOperations) operations") }
    }
    func expectEnd() throws { guard peek == .end else { throw error("unexpected \(Self.describe(peek)) at end of tag") } }

    static func describe(_ t: JinjaParser.Token) -> String {
        switch t {
        case let .name(n): return "`\(n)`"
        case let .string(s): return s.debugDescription
        case let .int(i): return String(i)
        case let .double(d): return String(d)
        case let .op(o): return "`\(o)`"
        case .end: return "end of tag"
        }
    }

    mutating func parseTupleOrExpression() throws -> JinjaExpr {
        let first = try parseExpression()
        guard peek == .op(",") else { return first }
        var items = [first]
        while accept(.op(",")) { if peek == .end { break }; items.append(try parseExpression()) }
        return .list(items)
    }

    mutating func parseExpression(allowConditional: Bool = true) throws -> JinjaExpr {
        try enter()
        defer { leave() }
        let e = try parseOr()
        if allowConditional && accept(.name("if")) {
            let test = try parseOr()
            var otherwise: JinjaExpr?
            if accept(.name("else")) { otherwise = try parseExpression() }
            return .conditional(e, test: test, otherwise: otherwise)
        }
        return e
    }

    mutating func parseOr() throws -> JinjaExpr {
        var e = try parseAnd()
        while accept(.name("or")) { try grow(); e = .binary("or", e, try parseAnd()) }
        return e
    }
    mutating func parseAnd() throws -> JinjaExpr {
        var e = try parseNot()
        while accept(.name("and")) { try grow(); e = .binary("and", e, try parseNot()) }
        return e
    }
    mutating func parseNot() throws -> JinjaExpr {
        if accept(.name("not")) {
            try enter()
            defer { leave() }
            return .unary("not", try parseNot())
        }
        return try parseCompare()
    }
    mutating func parseCompare() throws -> JinjaExpr {
        var e = try parseMath1()
        while true {
            if case let .op(o) = peek, ["==", "!=", "<", ">", "<=", ">="].contains(o) {
                try grow(); pos += 1; e = .binary(o, e, try parseMath1())
            } else if accept(.name("in")) {
                try grow(); e = .binary("in", e, try parseMath1())
            } else if peek == .name("not"), tokens.count > pos + 1, tokens[pos + 1] == .name("in") {
                try grow(); pos += 2; e = .binary("not in", e, try parseMath1())
            } else {
                return e
            }
        }
    }
    mutating func parseMath1() throws -> JinjaExpr {
        var e = try parseConcat()
        while case let .op(o) = peek, o == "+" || o == "-" { try grow(); pos += 1; e = .binary(o, e, try parseConcat()) }
        return e
    }
    mutating func parseConcat() throws -> JinjaExpr {
        var e = try parseMath2()
        while accept(.op("~")) { try grow(); e = .binary("~", e, try parseMath2()) }
        return e
    }
    mutating func parseMath2() throws -> JinjaExpr {
        var e = try parsePow()
        while case let .op(o) = peek, ["*", "/", "//", "%"].contains(o) { try grow(); pos += 1; e = .binary(o, e, try parsePow()) }
        return e
    }
    mutating func parsePow() throws -> JinjaExpr {
        var e = try parseUnary()
        while accept(.op("**")) { try grow(); e = .binary("**", e, try parseUnary()) }
        return e
    }
    mutating func parseUnary() throws -> JinjaExpr {
        if accept(.op("-")) { return try parseFilters(.unary("-", try parseUnaryNoFilter())) }
        if accept(.op("+")) { return try parseFilters(try parseUnaryNoFilter()) }
        return try parseFilters(try parsePrimaryWithPostfix())
    }
    mutating func parseUnaryNoFilter() throws -> JinjaExpr {
        if accept(.op("-")) {
            try enter()
            defer { leave() }
            return .unary("-", try parseUnaryNoFilter())
        }
        return try parsePrimaryWithPostfix()
    }

    mutating func parseFilters(_ base: JinjaExpr) throws -> JinjaExpr {
        var e = base
        while true {
            if accept(.op("|")) {
                try grow()
                guard case let .name(name) = next() else { throw error("expected a filter name after `|`") }
                var args = [JinjaExpr](), kwargs = [(String, JinjaExpr)]()
                if accept(.op("(")) { (args, kwargs) = try parseArguments() }
                e = .filter(e, name, args, kwargs)
            } else if accept(.name("is")) {
                try grow()
                let negated = accept(.name("not"))
                guard case let .name(name) = next() else { throw error("expected a test name after `is`") }
                var args = [JinjaExpr]()
                if accept(.op("(")) {
                    args = try parseArguments().0
                } else {
                    switch peek {
                    case .string, .int, .double: args = [try parsePrimaryWithPostfix()]
                    case let .name(n) where !["and", "or", "else", "if", "in", "not", "is"].contains(n):
                        args = [try parsePrimaryWithPostfix()]
                    default: break
                    }
                }
                e = .test(e, name, args, negated: negated)
            } else {
                return e
            }
        }
    }

    mutating func parseArguments() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        var args = [JinjaExpr](), kwargs = [(String, JinjaExpr)]()
        while !accept(.op(")")) {
            if case let .name(n) = peek, tokens.count > pos + 1, tokens[pos + 1] == .op("=") {
                pos += 2
                kwargs.append((n, try parseExpression()))
            } else {
                if peek == .op("*") || peek == .op("**") { throw ChatTemplateError.unsupported(line: line, feature: "*args / **kwargs in calls") }
                args.append(try parseExpression())
            }
            if !accept(.op(",")) { try expect(.op(")"), "`)` after arguments"); break }
        }
        return (args, kwargs)
    }

    mutating func parsePrimaryWithPostfix() throws -> JinjaExpr {
        var e = try parsePrimary()
        while true {
            if peek == .op(".") || peek == .op("[") || peek == .op("(") { try grow() }
            if accept(.op(".")) {
                guard case let .name(n) = next() else { throw error("expected an attribute name after `.`") }
                e = .attribute(e, n)
            } else if accept(.op("[")) {
                var lower: JinjaExpr?, upper: JinjaExpr?, step: JinjaExpr?
                if peek != .op(":") { lower = try parseExpression() }
                if accept(.op(":")) {
                    if peek != .op(":") && peek != .op("]") { upper = try parseExpression() }
                    if accept(.op(":")) { if peek != .op("]") { step = try parseExpression() } }
                    try expect(.op("]"), "`]`")
                    e = .slice(e, lower, upper, step)
                } else {
                    try expect(.op("]"), "`]`")
                    guard let lower else { throw error("empty subscript") }
                    e = .item(e, lower)
                }
            } else if accept(.op("(")) {
                let (args, kwargs) = try parseArguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func parsePrimary() throws -> JinjaExpr {
        let t = next()
        switch t {
        case let .string(s):
            var value = s
            while case let .string(more) = peek { value += more; pos += 1 }  // adjacent literals concatenate
            return .literal(.string(value))
        case let .int(i): return .literal(.int(i))
        case let .double(d): return .literal(.double(d))
        case let .name(n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            if accept(.op(")")) { return .list([]) }
            let e = try parseExpression()
            if accept(.op(",")) {
                var items = [e]
                while !accept(.op(")")) {
                    items.append(try parseExpression())
                    if !accept(.op(",")) { try expect(.op(")"), "`)`"); break }
                }
                return .list(items)
            }
            try expect(.op(")"), "`)`")
            return e
        case .op("["):
            var items = [JinjaExpr]()
            while !accept(.op("]")) {
                items.append(try parseExpression())
                if !accept(.op(",")) { try expect(.op("]"), "`]`"); break }
            }
            return .list(items)
        case .op("{"):
            var pairs = [(JinjaExpr, JinjaExpr)]()
            while !accept(.op("}")) {
                let k = try parseExpression()
                try expect(.op(":"), "`:` in a dict literal")
                pairs.append((k, try parseExpression()))
                if !accept(.op(",")) { try expect(.op("}"), "`}`"); break }
            }
            return .dict(pairs)
        default:
            throw error("unexpected \(Self.describe(t))")
        }
    }
}
