import AdapterCache
import Foundation

/// Template contexts arrive as JSON whose object keys must keep their file order, as Python's
/// `json.loads` does: chat templates print tool schemas with `tojson`, so key order is visible in the
/// prompt. Parsed by the project's order-keeping reader and turned into template values.
enum TemplateJSON {
    struct ParseError: Error, CustomStringConvertible {
        let offset: Int
        let message: String
        var description: String { "invalid JSON at byte \(offset): \(message)" }
    }

    static func parse(_ data: Data) throws -> JinjaValue {
        do {
            return value(try OrderedJSON.parse(data, maxDepth: 256))
        } catch {
            throw ParseError(offset: error.offset, message: error.reason)
        }
    }

    private static func value(_ json: OrderedJSON) -> JinjaValue {
        switch json {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.map(value))
        case .object(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs { o[k] = value(v) }
            return .object(o)
        }
    }
}
