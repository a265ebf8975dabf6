import AdapterCache
import Foundation

/// A value inside a Jinja template, with Python's semantics where templates rely on them
/// (truthiness, `str()`, equality across int/float).
indirect enum JinjaValue {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case function(JinjaFunction)

    /// Converts JSON-like Swift values (`JSONSerialization` output, or plain dictionaries/arrays).
    init(any value: Any?) {
        guard let value, !(value is NSNull) else { self = .none; return }
        if let v = value as? JinjaValue { self = v; return }
        if let v = value as? String { self = .string(v); return }
        // Exact Swift types first: an NSNumber bridges to Bool, Int and Double alike.
        if type(of: value) == Bool.self { self = .bool(value as! Bool); return }
        if type(of: value) == Int.self { self = .int(value as! Int); return }
        if type(of: value) == Double.self { self = .double(value as! Double); return }
        if let n = value as? NSNumber {
            switch String(cString: n.objCType) {
            case "c", "B": self = .bool(n.boolValue)
            case "d", "f": self = .double(n.doubleValue)
            default: self = .int(n.intValue)
            }
            return
        }
        if let v = value as? [Any] { self = .array(v.map { JinjaValue(any: $0) }); return }
        if let v = value as? [String: Any] {
            var o = JinjaObject()
            for k in v.keys.sorted() { o[k] = JinjaValue(any: v[k]) }
            self = .object(o)
            return
        }
        self = .string("\(value)")
    }

    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return !o.keys.isEmpty
        case .namespace, .function: return true
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }

    /// Python `str()`.
    var pythonString: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return Self.pythonFloat(d)
        case let .string(s): return s
        case .array, .object, .namespace, .function: return pythonRepr
        }
    }

    /// Python `repr()` for containers.
    var pythonRepr: String {
        switch self {
        case let .string(s):
            let q = s.contains("'") && !s.contains("\"") ? "\"" : "'"
            var out = q
            for c in s.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                default:
                    if String(c) == q { out += "\\" + q } else { out.unicodeScalars.append(c) }
                }
            }
            return out + q
        case let .array(a): return "[" + a.map(\.pythonRepr).joined(separator: ", ") + "]"
        case let .object(o): return "{" + o.keys.map { "'\($0)': \(o[$0]!.pythonRepr)" }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .function: return "<function>"
        default: return pythonString
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded() && abs(d) < 1e16 { return String(format: "%.1f", d) }
        return "\(d)"
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "none"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "namespace"
        case .function: return "function"
        }
    }

    /// Python `==` (1 == 1.0, True == 1).
    static func equal(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.string(x), .string(y)): return x == y
        case let (.bool(x), .bool(y)): return x == y
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { equal($0, $1) }
        case let (.object(x), .object(y)):
            return Set(x.keys) == Set(y.keys) && x.keys.allSatisfy { equal(x[$0]!, y[$0]!) }
        case let (.namespace(x), .namespace(y)): return x === y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    var number: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    /// Converts back to plain Swift values for `tojson`.
    func json(sortKeys: Bool, indent: Int?, level: Int = 0) -> String {
        let nl = indent.map { "\n" + String(repeating: " ", count: $0 * (level + 1)) }
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * level) } ?? ""
        switch self {
        case .undefined, .none: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return d.isFinite ? Self.pythonFloat(d) : (d.isNaN ? "NaN" : (d > 0 ? "Infinity" : "-Infinity"))
        case let .string(s): return Self.jsonString(s)
        case let .array(a):
            if a.isEmpty { return "[]" }
            let items = a.map { $0.json(sortKeys: sortKeys, indent: indent, level: level + 1) }
            if let nl { return "[" + nl + items.joined(separator: "," + nl) + close + "]" }
            return "[" + items.joined(separator: ", ") + "]"
        case let .object(o):
            if o.keys.isEmpty { return "{}" }
            let keys = sortKeys ? o.keys.sorted() : o.keys
            let items = keys.map { Self.jsonString($0) + ": " + o[$0]!.json(sortKeys: sortKeys, indent: indent, level: level + 1) }
            if let nl { return "{" + nl + items.joined(separator: "," + nl) + close + "}" }
            return "{" + items.joined(separator: ", ") + "}"
        case let .namespace(n): return JinjaValue.object(n.values).json(sortKeys: sortKeys, indent: indent, level: level)
        case .function: return "null"
        }
    }

    /// Python `json.dumps(s, ensure_ascii=False)`.
    static func jsonString(_ s: String) -> String { OrderedJSON.quoted(s) }
}

/// An insertion-ordered string-keyed dictionary (Python dicts keep insertion order).
struct JinjaObject {
    private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if storage[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil { keys.removeAll { $0 == key } }
            storage[key] = newValue
        }
    }
}

/// `namespace(...)`: the one mutable object templates have, so it is a reference type.
final class JinjaNamespace {
    var values = JinjaObject()

    /// Namespaces alive in this process (tests check that renders free theirs).
    static var liveCount: Int { liveLock.withLock { live } }
    nonisolated(unsafe) private static var live = 0
    private static let liveLock = NSLock()
    init() { Self.liveLock.withLock { Self.live += 1 } }
    deinit { Self.liveLock.withLock { Self.live -= 1 } }

    /// The namespaces one render made, emptied when it ends (see `ChatTemplate.render(values:)`).
    final class Registry {
        private var made: [JinjaNamespace] = []
        func add(_ ns: JinjaNamespace) { made.append(ns) }
        func breakCycles() {
            for ns in made { ns.values = JinjaObject() }
            made = []
        }
    }
}

/// A callable value: globals (`raise_exception`, `namespace`, `range`), bound methods, macros.
struct JinjaFunction {
    let name: String
    let call: (_ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue
}
