import Foundation

/// Renders a parsed template. Scoping follows Jinja2: a `for` body has its own scope (so `set` inside
/// a loop does not leak out — templates use `namespace()` for that), `if` does not, macros see the
/// globals plus their parameters. Undefined names render as "" and are falsy; touching an attribute
/// of an undefined value is an error, as in Jinja2's default `Undefined`.
final class JinjaInterpreter {
    private var scopes: [[String: JinjaValue]]
    private var output = ""
    private var line = 0
    /// Work bounds for one render. The template comes from a model's files, so it is outside input:
    /// nested loops over repeated lists, or a macro calling itself, must end in an error, not a hung
    /// request or a stack overflow. Real chat templates use a few thousand steps and no recursion.
    private var steps = 0
    private var macroDepth = 0
    static let maxSteps = 2_000_000
    static let maxMacroDepth = 32
    /// Bytes of rendered text, and of any one string or list built by `~`/`+` (as `*` already is).
    static let maxOutputBytes = 1 << 24

    private enum LoopSignal: Error { case breakLoop, continueLoop }

    init(globals: [String: JinjaValue]) {
        scopes = [globals]
    }

    func render(_ nodes: [JinjaNode]) throws -> String {
        output = ""
        try run(nodes)
        return output
    }

    // MARK: scopes

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }
    private func assign(_ name: String, _ value: JinjaValue) { scopes[scopes.count - 1][name] = value }

    private func fail(_ message: String) -> ChatTemplateError { .render(line: line, message: message) }

    // MARK: statements

    private func step() throws {
        steps += 1
        guard steps <= Self.maxSteps else { throw fail("the template did more than \(Self.maxSteps) steps of work; it loops without bound") }
    }

    private func run(_ nodes: [JinjaNode]) throws {
        for node in nodes {
            try step()
            guard output.utf8.count <= Self.maxOutputBytes else { throw fail("the rendered text exceeds \(Self.maxOutputBytes) bytes") }
            switch node {
            case let .text(t):
                output += t
            case let .output(e, l):
                line = l
                output += try eval(e).pythonString
            case let .ifBlock(branches, otherwise):
                var taken = false
                for (cond, body) in branches where try eval(cond).isTruthy {
                    try run(body); taken = true; break
                }
                if !taken { try run(otherwise) }
            case let .forBlock(targets, iterable, filter, body, otherwise, l):
                line = l
                try runFor(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise)
            case let .set(targets, value, l):
                line = l
                let v = try eval(value)
                if targets.count == 1 {
                    try store(targets[0], v)
                } else {
                    let items = try iterate(v)
                    guard items.count == targets.count else { throw fail("cannot unpack \(items.count) values into \(targets.count) names") }
                    for (t, x) in zip(targets, items) { try store(t, x) }
                }
            case let .setBlock(name, body):
                let saved = output
                output = ""
                try run(body)
                let captured = output
                output = saved
                assign(name, .string(captured))
            case let .macro(name, params, body):
                let globals = scopes[0]
                assign(name, .function(JinjaFunction(name: name) { [unowned self] args, kwargs in
                    var frame = [String: JinjaValue]()
                    for (i, (p, def)) in params.enumerated() {
                        if i < args.count { frame[p] = args[i] }
                        else if let kw = kwargs.first(where: { $0.0 == p }) { frame[p] = kw.1 }
                        else if let def { frame[p] = try self.eval(def) }
                        else { frame[p] = .undefined(p) }
                    }
                    guard self.macroDepth < Self.maxMacroDepth else {
                        throw self.fail("macro `\(name)` calls nest more than \(Self.maxMacroDepth) deep (unbounded recursion?)")
                    }
                    self.macroDepth += 1
                    defer { self.macroDepth -= 1 }
                    let savedScopes = self.scopes, savedOutput = self.output
                    self.scopes = [globals, frame]
                    self.output = ""
                    defer { self.scopes = savedScopes; self.output = savedOutput }
                    try self.run(body)
                    return .string(self.output)
                }))
            case .breakLoop: throw LoopSignal.breakLoop
            case .continueLoop: throw LoopSignal.continueLoop
            }
        }
    }

    private func store(_ target: JinjaExpr, _ value: JinjaValue) throws {
        switch target {
        case let .name(n): assign(n, value)
        case let .attribute(base, attr):
            guard case let .namespace(ns) = try eval(base) else {
                throw fail("`set x.\(attr) = ...` needs x to be a namespace()")
            }
            ns.values[attr] = value
        default: throw fail("cannot assign to this expression")
        }
    }

    private func runFor(targets: [String], iterable: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode]) throws {
        var items = try iterate(try eval(iterable))
        // Each iteration gets a fresh scope: in Jinja2 a `set` in one iteration is not seen by the next.
        scopes.append([:])
        defer { scopes.removeLast() }
        func bind(_ item: JinjaValue) throws {
            if targets.count == 1 { assign(targets[0], item); return }
            let parts = try iterate(item)
            guard parts.count == targets.count else { throw fail("cannot unpack \(parts.count) values into \(targets.count) loop variables") }
            for (t, p) in zip(targets, parts) { assign(t, p) }
        }
        if let filter {
            items = try items.filter { item in try step(); try bind(item); return try eval(filter).isTruthy }
        }
        if items.isEmpty { try run(otherwise); return }
        let n = items.count
        for (i, item) in items.enumerated() {
            scopes[scopes.count - 1] = [:]
            try bind(item)
            var loop = JinjaObject()
            loop["index"] = .int(i + 1); loop["index0"] = .int(i)
            loop["revindex"] = .int(n - i); loop["revindex0"] = .int(n - i - 1)
            loop["first"] = .bool(i == 0); loop["last"] = .bool(i == n - 1)
            loop["length"] = .int(n)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("previtem")
            loop["nextitem"] = i + 1 < n ? items[i + 1] : .undefined("nextitem")
            loop["cycle"] = .function(JinjaFunction(name: "cycle") { args, _ in args.isEmpty ? .none : args[i % args.count] })
            assign("loop", .object(loop))
            try step()
            do { try run(body) } catch LoopSignal.breakLoop { break } catch LoopSignal.continueLoop { continue }
        }
    }

    private func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case let .array(a): return a
        case let .object(o): return o.keys.map { .string($0) }
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined, .none: return []
        case let .namespace(ns): return ns.values.keys.map { .string($0) }
        default: throw fail("\(v.typeName) is not iterable")
        }
    }

    // MARK: expressions

    func eval(_ e: JinjaExpr) throws -> JinjaValue {
        switch e {
        case let .literal(v): return v
        case let .name(n): return lookup(n)
        case let .list(items): return .array(try items.map(eval))
        case let .dict(pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                guard case let .string(key) = try eval(k) else { throw fail("dict keys must be strings") }
                o[key] = try eval(v)
            }
            return .object(o)
        case let .attribute(base, name):
            let b = try eval(base)
            return try attribute(b, name)
        case let .item(base, index):
            return try item(try eval(base), try eval(index))
        case let .slice(base, lo, hi, st):
            return try slice(try eval(base), lo.map(eval), hi.map(eval), st.map(eval))
        case let .call(callee, args, kwargs):
            let f = try eval(callee)
            guard case let .function(fn) = f else {
                if case let .undefined(n) = f { throw fail("`\(n)` is undefined and cannot be called") }
                throw fail("\(f.typeName) is not callable")
            }
            return try fn.call(try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) })
        case let .filter(base, name, args, kwargs):
            return try JinjaBuiltins.filter(name, try eval(base), try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) }, line: line)
        case let .test(base, name, args, negated):
            let r = try JinjaBuiltins.test(name, try eval(base), try args.map(eval), line: line)
            return .bool(negated ? !r : r)
        case let .unary(op, x):
            let v = try eval(x)
            if op == "not" { return .bool(!v.isTruthy) }
            switch v {
            case let .int(i): return i == .min ? .double(-Double(i)) : .int(-i)
            case let .double(d): return .double(-d)
            default: throw fail("cannot negate \(v.typeName)")
            }
        case let .binary(op, l, r):
            if op == "and" { let a = try eval(l); return a.isTruthy ? try eval(r) : a }
            if op == "or" { let a = try eval(l); return a.isTruthy ? a : try eval(r) }
            return try binary(op, try eval(l), try eval(r))
        case let .conditional(value, test, otherwise):
            if try eval(test).isTruthy { return try eval(value) }
            return try otherwise.map(eval) ?? .undefined("")
        }
    }

    private func attribute(_ b: JinjaValue, _ name: String) throws -> JinjaValue {
        switch b {
        case let .object(o):
            if let v = o[name] { return v }
            if let m = JinjaBuiltins.method(b, name, line: line) { return m }
            return .undefined(name)
        case let .namespace(ns):
            return ns.values[name] ?? .undefined(name)
        case let .undefined(n):
            throw fail("`\(n)` is undefined, so it has no attribute `\(name)`")
        default:
            if let m = JinjaBuiltins.method(b, name, line: line) { return m }
            return .undefined(name)
        }
    }

    private func item(_ b: JinjaValue, _ index: JinjaValue) throws -> JinjaValue {
        switch (b, index) {
        case let (.array(a), .int(i)):
            let k = i < 0 ? a.count + i : i
            return a.indices.contains(k) ? a[k] : .undefined("[\(i)]")
        case let (.string(s), .int(i)):
            let chars = Array(s.unicodeScalars)
            let k = i < 0 ? chars.count + i : i
            return chars.indices.contains(k) ? .string(String(chars[k])) : .undefined("[\(i)]")
        case let (.object, .string(k)):
            return try attribute(b, k)
        case let (.namespace(ns), .string(k)):
            return ns.values[k] ?? .undefined(k)
        case let (.undefined(n), _):
            throw fail("`\(n)` is undefined, so it cannot be indexed")
        default:
            return .undefined("item")
        }
    }

    private func slice(_ b: JinjaValue, _ lo: JinjaValue?, _ hi: JinjaValue?, _ st: JinjaValue?) throws -> JinjaValue {
        func int(_ v: JinjaValue?) throws -> Int? {
            guard let v, !(v.isUndefined), !{ if case .none = v { return true }; return false }() else { return nil }
            guard case let .int(i) = v else { throw fail("slice bounds must be integers") }
            return i
        }
        let step = try int(st) ?? 1
        guard step != 0 else { throw fail("slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ def: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return step > 0 ? min(max(x, 0), n) : min(max(x, -1), n - 1)
            }
            let start = clamp(try int(lo), step > 0 ? 0 : n - 1)
            let stop = clamp(try int(hi), step > 0 ? n : -1)
            return Array(stride(from: start, to: stop, by: step))
        }
        switch b {
        case let .array(a): return .array(try indices(a.count).map { a[$0] })
        case let .string(s):
            // Python indexes strings by code point.
            let c = Array(s.unicodeScalars)
            let picked: [Unicode.Scalar] = try indices(c.count).map { c[$0] }
            return .string(String(String.UnicodeScalarView(picked)))
        default: throw fail("cannot slice \(b.typeName)")
        }
    }

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(JinjaValue.equal(a, b))
        case "!=": return .bool(!JinjaValue.equal(a, b))
        case "~":
            let x = a.pythonString, y = b.pythonString
            guard x.utf8.count + y.utf8.count <= Self.maxOutputBytes else { throw fail("string concatenation too large") }
            return .string(x + y)
        case "in", "not in":
            let found: Bool
            switch b {
            case let .string(s):
                guard case let .string(x) = a else { throw fail("`in <string>` needs a string on the left") }
                found = x.isEmpty || s.contains(x)
            case let .array(arr): found = arr.contains { JinjaValue.equal($0, a) }
            case let .object(o): if case let .string(k) = a { found = o[k] != nil } else { found = false }
            case let .namespace(ns): if case let .string(k) = a { found = ns.values[k] != nil } else { found = false }
            case .undefined, .none: found = false
            default: throw fail("`in` needs a string, list or dict on the right, not \(b.typeName)")
            }
            return .bool(op == "in" ? found : !found)
        case "<", ">", "<=", ">=":
            let c: Bool
            if case let .string(x) = a, case let .string(y) = b {
                c = op == "<" ? x < y : op == ">" ? x > y : op == "<=" ? x <= y : x >= y
            } else if let x = a.number, let y = b.number {
                c = op == "<" ? x < y : op == ">" ? x > y : op == "<=" ? x <= y : x >= y
            } else {
                throw fail("cannot compare \(a.typeName) \(op) \(b.typeName)")
            }
            return .bool(c)
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)):
                guard x.utf8.count + y.utf8.count <= Self.maxOutputBytes else { throw fail("string concatenation too large") }
                return .string(x + y)
            case let (.array(x), .array(y)):
                guard x.count + y.count <= 1 << 20 else { throw fail("list concatenation too large") }
                return .array(x + y)
            case let (.int(x), .int(y)):
                let (r, overflow) = x.addingReportingOverflow(y)
                return overflow ? .double(Double(x) + Double(y)) : .int(r)
            default:
                if let x = a.number, let y = b.number { return .double(x + y) }
                throw fail("cannot add \(a.typeName) and \(b.typeName) (use `~` to join text)")
            }
        case "-", "*", "/", "//", "%", "**":
            if op == "*" {
                // Bounded: a template must not be able to exhaust memory with 'x' * 10**12.
                if case let .string(s) = a, case let .int(n) = b {
                    guard n <= 0 || s.utf8.count.multipliedReportingOverflow(by: n).partialValue <= 1 << 24 else { throw fail("string repetition too large") }
                    return .string(String(repeating: s, count: max(n, 0)))
                }
                if case let .array(x) = a, case let .int(n) = b {
                    guard n <= 0 || x.count.multipliedReportingOverflow(by: n).partialValue <= 1 << 20 else { throw fail("list repetition too large") }
                    return .array(Array(repeating: x, count: max(n, 0)).flatMap { $0 })
                }
            }
            if case let .int(x) = a, case let .int(y) = b {
                switch op {
                case "-":
                    let (r, o) = x.subtractingReportingOverflow(y)
                    return o ? .double(Double(x) - Double(y)) : .int(r)
                case "*":
                    let (r, o) = x.multipliedReportingOverflow(by: y)
                    return o ? .double(Double(x) * Double(y)) : .int(r)
                case "/": guard y != 0 else { throw fail("division by zero") }; return .double(Double(x) / Double(y))
                case "//": guard y != 0, !(x == .min && y == -1) else { throw fail("division by zero or overflow") }
                    let q = x / y
                    return .int((x % y != 0) && ((x < 0) != (y < 0)) ? q - 1 : q)
                case "%": guard y != 0, !(x == .min && y == -1) else { throw fail("modulo by zero or overflow") }
                    let m = x % y; return .int(m != 0 && (m < 0) != (y < 0) ? m + y : m)
                default:
                    let p = pow(Double(x), Double(y))
                    return y >= 0 && abs(p) < 9.0e18 ? .int(Int(p)) : .double(p)
                }
            }
            guard let x = a.number, let y = b.number else { throw fail("cannot apply `\(op)` to \(a.typeName) and \(b.typeName)") }
            switch op {
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "/": guard y != 0 else { throw fail("division by zero") }; return .double(x / y)
            case "//": guard y != 0 else { throw fail("division by zero") }; return .double((x / y).rounded(.down))
            case "%": guard y != 0 else { throw fail("modulo by zero") }; return .double(x - y * (x / y).rounded(.down))
            default: return .double(pow(x, y))
            }
        default:
            throw fail("unknown operator \(op)")
        }
    }
}
