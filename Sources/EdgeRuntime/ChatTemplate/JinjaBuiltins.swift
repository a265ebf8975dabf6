import Foundation

/// The filters, tests and methods chat templates call, with Python/Jinja2 semantics.
enum JinjaBuiltins {
    private static func strip(_ s: String, _ chars: JinjaValue?, left: Bool, right: Bool) -> String {
        let set: (Character) -> Bool
        if case let .string(c)? = chars { set = { c.contains($0) } } else { set = { $0.isWhitespace } }
        var sub = Substring(s)
        if left { while let f = sub.first, set(f) { sub.removeFirst() } }
        if right { while let l = sub.last, set(l) { sub.removeLast() } }
        return String(sub)
    }

    private static func pyCapitalize(_ s: String) -> String {
        guard let f = s.first else { return s }
        return f.uppercased() + s.dropFirst().lowercased()
    }

    private static func pyTitle(_ s: String) -> String {
        var out = ""
        var prevLetter = false
        for c in s {
            out += prevLetter ? c.lowercased() : c.uppercased()
            prevLetter = c.isLetter
        }
        return out
    }

    private static func kw(_ kwargs: [(String, JinjaValue)], _ name: String) -> JinjaValue? {
        kwargs.first { $0.0 == name }?.1
    }

    // MARK: filters

    static func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], line: Int) throws -> JinjaValue {
        func fail(_ m: String) -> ChatTemplateError { .render(line: line, message: "filter `\(name)`: \(m)") }
        func str() throws -> String {
            switch v {
            case let .string(s): return s
            case .undefined: return ""
            default: return v.pythonString
            }
        }
        func list() throws -> [JinjaValue] {
            switch v {
            case let .array(a): return a
            case let .object(o): return o.keys.map { .string($0) }
            case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
            case .undefined: return []
            default: throw fail("\(v.typeName) is not a sequence")
            }
        }
        func attr(_ x: JinjaValue, _ path: String) -> JinjaValue {
            var cur = x
            for part in path.split(separator: ".") {
                if case let .object(o) = cur, let n = o[String(part)] { cur = n }
                else if case let .array(a) = cur, let i = Int(part), a.indices.contains(i) { cur = a[i] }
                else { return .undefined(String(part)) }
            }
            return cur
        }
        switch name {
        case "trim": return .string(strip(try str(), args.first, left: true, right: true))
        case "upper": return .string(try str().uppercased())
        case "lower": return .string(try str().lowercased())
        case "capitalize": return .string(pyCapitalize(try str()))
        case "title": return .string(pyTitle(try str()))
        case "string": return .string(v.pythonString)
        case "safe", "escape", "e", "forceescape":
            // transformers' environment does not autoescape; `escape` is HTML-escaping in Jinja2.
            if name == "safe" { return v }
            return .string(try str().replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&#34;").replacingOccurrences(of: "'", with: "&#39;"))
        case "length", "count":
            switch v {
            case let .string(s): return .int(s.count)
            case let .array(a): return .int(a.count)
            case let .object(o): return .int(o.keys.count)
            case .undefined: return .int(0)
            default: throw fail("\(v.typeName) has no length")
            }
        case "tojson":
            var indent: Int?
            if case let .int(i)? = kw(kwargs, "indent") ?? args.first { indent = i }
            let sortKeys = kw(kwargs, "sort_keys")?.isTruthy ?? false
            return .string(v.json(sortKeys: sortKeys, indent: indent))
        case "default", "d":
            let fallback = args.first ?? .string("")
            let boolean = (args.count > 1 ? args[1] : kw(kwargs, "boolean"))?.isTruthy ?? false
            if v.isUndefined || (boolean && !v.isTruthy) { return fallback }
            return v
        case "first": return try list().first ?? .undefined("first")
        case "last": return try list().last ?? .undefined("last")
        case "list": return .array(try list())
        case "reverse":
            if case let .string(s) = v { return .string(String(s.reversed())) }
            return .array(try list().reversed())
        case "join":
            let sep: String
            if case let .string(s)? = args.first ?? kw(kwargs, "d") { sep = s } else { sep = "" }
            var items = try list()
            if case let .string(a)? = kw(kwargs, "attribute") { items = items.map { attr($0, a) } }
            return .string(items.map(\.pythonString).joined(separator: sep))
        case "replace":
            guard args.count >= 2, case let .string(a) = args[0], case let .string(b) = args[1] else { throw fail("needs two strings") }
            return .string(try str().replacingOccurrences(of: a, with: b))
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .double(d): return .int(Int(exactly: d.rounded(.towardZero)) ?? 0)
            case let .bool(b): return .int(b ? 1 : 0)
            case let .string(s):
                let t = s.trimmingCharacters(in: .whitespaces)
                return .int(Int(t) ?? Int(exactly: (Double(t) ?? 0).rounded(.towardZero)) ?? 0)
            default: return .int(0)
            }
        case "float":
            return .double(v.number ?? (Double((try? str()) ?? "") ?? 0))
        case "abs":
            if case let .int(i) = v, i != .min { return .int(abs(i)) }
            guard let d = v.number else { throw fail("needs a number") }
            return .double(abs(d))
        case "round":
            guard let d = v.number else { throw fail("needs a number") }
            var precision = 0
            if case let .int(p)? = args.first ?? kw(kwargs, "precision") { precision = p }
            let f = pow(10.0, Double(precision))
            return .double((d * f).rounded(.toNearestOrEven) / f)
        case "items":
            switch v {
            case let .object(o): return .array(o.keys.map { .array([.string($0), o[$0]!]) })
            case .undefined: return .array([])
            default: throw fail("needs a dict")
            }
        case "dictsort":
            guard case let .object(o) = v else { throw fail("needs a dict") }
            return .array(o.keys.sorted().map { .array([.string($0), o[$0]!]) })
        case "unique":
            var seen = [JinjaValue]()
            for x in try list() where !seen.contains(where: { JinjaValue.equal($0, x) }) { seen.append(x) }
            return .array(seen)
        case "sort":
            var items = try list()
            let reverse = kw(kwargs, "reverse")?.isTruthy ?? false
            let attribute: String? = { if case let .string(a)? = kw(kwargs, "attribute") { return a }; return nil }()
            func key(_ x: JinjaValue) -> JinjaValue { attribute.map { attr(x, $0) } ?? x }
            items.sort { a, b in
                let x = key(a), y = key(b)
                if case let .string(p) = x, case let .string(q) = y { return reverse ? p > q : p < q }
                let p = x.number ?? 0, q = y.number ?? 0
                return reverse ? p > q : p < q
            }
            return .array(items)
        case "sum":
            var total = 0.0, allInt = true, intTotal = 0
            for x in try list() {
                if case let .int(i) = x { intTotal += i } else { allInt = false }
                total += x.number ?? 0
            }
            return allInt ? .int(intTotal) : .double(total)
        case "max", "min":
            let items = try list()
            guard var best = items.first else { return .undefined(name) }
            for x in items.dropFirst() {
                let better: Bool
                if case let .string(p) = x, case let .string(q) = best { better = name == "max" ? p > q : p < q }
                else { better = name == "max" ? (x.number ?? 0) > (best.number ?? 0) : (x.number ?? 0) < (best.number ?? 0) }
                if better { best = x }
            }
            return best
        case "map":
            let items = try list()
            if case let .string(a)? = kw(kwargs, "attribute") {
                let def = kw(kwargs, "default")
                return .array(items.map { let r = attr($0, a); return r.isUndefined ? (def ?? r) : r })
            }
            guard case let .string(f)? = args.first else { throw fail("needs a filter name or attribute=") }
            return .array(try items.map { try filter(f, $0, Array(args.dropFirst()), [], line: line) })
        case "select", "reject":
            let items = try list()
            return .array(try items.filter { x in
                let r = args.isEmpty ? x.isTruthy : try test(args[0].pythonString, x, Array(args.dropFirst()), line: line)
                return name == "select" ? r : !r
            })
        case "selectattr", "rejectattr":
            guard case let .string(a)? = args.first else { throw fail("needs an attribute name") }
            let items = try list()
            return .array(try items.filter { x in
                let value = attr(x, a)
                let r = args.count < 2 ? value.isTruthy : try test(args[1].pythonString, value, Array(args.dropFirst(2)), line: line)
                return name == "selectattr" ? r : !r
            })
        case "indent":
            var width = 4
            if case let .int(w)? = args.first ?? kw(kwargs, "width") { width = w }
            if case let .string(w)? = args.first ?? kw(kwargs, "width") { width = w.count }
            let first = (args.count > 1 ? args[1] : kw(kwargs, "first"))?.isTruthy ?? false
            let blank = (args.count > 2 ? args[2] : kw(kwargs, "blank"))?.isTruthy ?? false
            let pad = String(repeating: " ", count: width)
            let lines = try str().components(separatedBy: "\n")
            return .string(lines.enumerated().map { i, l in
                if i == 0 { return first ? pad + l : l }
                return (l.isEmpty && !blank) ? l : pad + l
            }.joined(separator: "\n"))
        case "wordcount":
            return .int(try str().split(whereSeparator: { $0.isWhitespace }).count)
        default:
            throw ChatTemplateError.unsupported(line: line, feature: "the `\(name)` filter")
        }
    }

    // MARK: tests

    static func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], line: Int) throws -> Bool {
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": switch v { case .object, .namespace: return true; default: return false }
        case "sequence", "iterable":
            switch v { case .array, .string, .object: return true; default: return false }
        case "callable": if case .function = v { return true }; return false
        case "even", "odd":
            guard case let .int(i) = v else { return false }
            return (i % 2 == 0) == (name == "even")
        case "divisibleby":
            guard case let .int(i) = v, case let .int(d)? = args.first, d != 0 else { return false }
            return i % d == 0
        case "eq", "equalto", "==", "sameas": return args.first.map { JinjaValue.equal(v, $0) } ?? false
        case "ne", "!=": return !(args.first.map { JinjaValue.equal(v, $0) } ?? false)
        case "lower": if case let .string(s) = v { return s == s.lowercased() }; return false
        case "upper": if case let .string(s) = v { return s == s.uppercased() }; return false
        case "in":
            guard let container = args.first else { return false }
            switch container {
            case let .array(a): return a.contains { JinjaValue.equal($0, v) }
            case let .string(s): if case let .string(x) = v { return s.contains(x) }; return false
            case let .object(o): if case let .string(k) = v { return o[k] != nil }; return false
            default: return false
            }
        case "gt", "ge", "lt", "le", ">", ">=", "<", "<=":
            guard let x = v.number, let y = args.first?.number else { return false }
            switch name { case "gt", ">": return x > y; case "ge", ">=": return x >= y; case "lt", "<": return x < y; default: return x <= y }
        default:
            throw ChatTemplateError.unsupported(line: line, feature: "the `is \(name)` test")
        }
    }

    // MARK: methods

    /// `value.name` when it is a Python method templates call (`content.strip()`, `dict.items()`).
    static func method(_ v: JinjaValue, _ name: String, line: Int) -> JinjaValue? {
        func fn(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaValue {
            .function(JinjaFunction(name: name, call: body))
        }
        switch v {
        case let .string(s):
            switch name {
            case "strip": return fn { a, _ in .string(strip(s, a.first, left: true, right: true)) }
            case "lstrip": return fn { a, _ in .string(strip(s, a.first, left: true, right: false)) }
            case "rstrip": return fn { a, _ in .string(strip(s, a.first, left: false, right: true)) }
            case "upper": return fn { _, _ in .string(s.uppercased()) }
            case "lower": return fn { _, _ in .string(s.lowercased()) }
            case "title": return fn { _, _ in .string(pyTitle(s)) }
            case "capitalize": return fn { _, _ in .string(pyCapitalize(s)) }
            case "startswith", "endswith":
                return fn { a, _ in
                    var options = [String]()
                    if case let .string(p)? = a.first { options = [p] }
                    if case let .array(list)? = a.first { options = list.compactMap { if case let .string(p) = $0 { return p }; return nil } }
                    return .bool(options.contains { name == "startswith" ? s.hasPrefix($0) : s.hasSuffix($0) })
                }
            case "split":
                return fn { a, _ in
                    var maxSplit = -1
                    if a.count > 1, case let .int(m) = a[1] { maxSplit = m }
                    if case let .string(sep)? = a.first, !sep.isEmpty {
                        var parts = s.components(separatedBy: sep)
                        if maxSplit >= 0 && parts.count > maxSplit + 1 {
                            parts = Array(parts[..<maxSplit]) + [parts[maxSplit...].joined(separator: sep)]
                        }
                        return .array(parts.map { .string($0) })
                    }
                    return .array(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
                }
            case "replace":
                return fn { a, _ in
                    guard a.count >= 2, case let .string(x) = a[0], case let .string(y) = a[1] else { return .string(s) }
                    return .string(s.replacingOccurrences(of: x, with: y))
                }
            case "find":
                return fn { a, _ in
                    guard case let .string(x)? = a.first, let r = s.range(of: x) else { return .int(-1) }
                    return .int(s.distance(from: s.startIndex, to: r.lowerBound))
                }
            case "count":
                return fn { a, _ in
                    guard case let .string(x)? = a.first, !x.isEmpty else { return .int(0) }
                    return .int(s.components(separatedBy: x).count - 1)
                }
            case "join":
                return fn { a, _ in
                    guard case let .array(items)? = a.first else { return .string("") }
                    return .string(items.map(\.pythonString).joined(separator: s))
                }
            case "isdigit": return fn { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
            case "isspace": return fn { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isWhitespace }) }
            default: return nil
            }
        case let .object(o):
            switch name {
            case "items": return fn { _, _ in .array(o.keys.map { .array([.string($0), o[$0]!]) }) }
            case "keys": return fn { _, _ in .array(o.keys.map { .string($0) }) }
            case "values": return fn { _, _ in .array(o.keys.map { o[$0]! }) }
            case "get":
                return fn { a, _ in
                    guard case let .string(k)? = a.first else { return .none }
                    return o[k] ?? (a.count > 1 ? a[1] : .none)
                }
            default: return nil
            }
        default:
            return nil
        }
    }
}
