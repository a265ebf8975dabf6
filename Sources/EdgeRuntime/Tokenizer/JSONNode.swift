import Foundation

/// A thin, typed view of a value parsed by `JSONSerialization`, so that every lookup in
/// tokenizer.json / tokenizer_config.json can fail with an error naming the file and key path.
struct JSONNode {
    let value: Any?
    let file: String
    let path: String

    static func parse(_ data: Data, file: String) throws -> JSONNode {
        do {
            let object = try JSONDecoder().decode(NativeJSON.self, from: data).value
            guard object is [String: Any] else {
                throw TokenizerError.invalidJSON(file: file, reason: "top level is not an object")
            }
            return JSONNode(value: object, file: file, path: "")
        } catch let error as TokenizerError {
            throw error
        } catch {
            throw TokenizerError.invalidJSON(file: file, reason: "\(error.localizedDescription)")
        }
    }

    /// swift-corelibs-foundation's JSONSerialization silently drops a raw U+FEFF inside a string
    /// (it takes it for a byte-order mark), which would change token strings and text. A raw U+FEFF can
    /// only legally appear inside a JSON string, where `\ufeff` means the same, so escape every one
    /// (and drop a real byte-order mark at offset 0).
    static func escapingByteOrderMarks(_ data: Data) -> Data {
        let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
        var bytes = [UInt8](data)
        if bytes.starts(with: bom) { bytes.removeFirst(3) }
        guard bytes.count >= 3, bytes.indices.dropLast(2).contains(where: { bytes[$0] == 0xEF && bytes[$0 + 1] == 0xBB && bytes[$0 + 2] == 0xBF }) else {
            return Data(bytes)
        }
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + 64)
        var i = 0
        while i < bytes.count {
            if i + 2 < bytes.count && bytes[i] == 0xEF && bytes[i + 1] == 0xBB && bytes[i + 2] == 0xBF {
                out += Array("\\ufeff".utf8)
                i += 3
            } else {
                out.append(bytes[i]); i += 1
            }
        }
        return Data(out)
    }

    var isNull: Bool { value == nil || value is NSNull }

    subscript(key: String) -> JSONNode {
        let child = (value as? [String: Any])?[key]
        return JSONNode(value: child, file: file, path: path.isEmpty ? key : "\(path).\(key)")
    }

    var object: [String: Any]? { value as? [String: Any] }

    var keys: [String] { object.map { Array($0.keys) } ?? [] }

    func fail(_ expected: String) -> TokenizerError {
        .badValue(file: file, key: path, expected: expected)
    }

    var string: String? { value as? String }
    var bool: Bool? {
        if let b = value as? Bool { return b }
        if let n = value as? NSNumber { return n.boolValue }
        return nil
    }
    /// Integers outside Int32 are treated as wrong values: every integer these files hold is a token
    /// id or a small count, and callers convert with `Int32(...)`.
    var int: Int? {
        var v: Int?
        if let n = value as? Int { v = n } else if let n = value as? NSNumber { v = n.intValue }
        guard let v, Int(Int32.min)...Int(Int32.max) ~= v else { return nil }
        return v
    }

    var array: [JSONNode]? {
        guard let items = value as? [Any] else { return nil }
        return items.enumerated().map { JSONNode(value: $0.element, file: file, path: "\(path)[\($0.offset)]") }
    }

    func requireString() throws -> String {
        guard let s = string else { throw fail("a string") }
        return s
    }
    func requireArray() throws -> [JSONNode] {
        guard let a = array else { throw fail("an array") }
        return a
    }
    func requireObject() throws -> [String: Any] {
        guard let o = object else { throw fail("an object") }
        return o
    }
    func bool(default value: Bool) throws -> Bool {
        if isNull { return value }
        guard let b = bool else { throw fail("true or false") }
        return b
    }
    func int(default value: Int) throws -> Int {
        if isNull { return value }
        guard let i = int else { throw fail("an integer") }
        return i
    }
    func optionalString() throws -> String? {
        if isNull { return nil }
        guard let s = string else { throw fail("a string or null") }
        return s
    }

    /// The `type` tag of a pipeline component (`{"type": "ByteLevel", ...}`).
    func requireType() throws -> String { try self["type"].requireString() }
}
