import Foundation

/// tokenizer.json decoded in one pass by `JSONDecoder`: the large `model` section (vocab, merges)
/// straight into Swift collections, every other section into native containers for `JSONNode`.
/// `JSONSerialization` is avoided: on Linux it builds NS containers (slow to bridge: ~1 s for a
/// 50k vocabulary) and drops a raw U+FEFF inside strings.
struct TokenizerFile: Decodable {
    struct Merge: Decodable {
        /// nil when the entry is malformed; `BPEModel` reports it with its rank.
        let pair: (String, String)?
        let raw: String

        init(left: String, right: String) { pair = (left, right); raw = "\(left) \(right)" }

        init(from decoder: Decoder) throws {
            // The array form first: it is what current files use, and a failed attempt costs a thrown error.
            if var list = try? decoder.unkeyedContainer() {
                var parts = [String]()
                while !list.isAtEnd { parts.append(try list.decode(String.self)) }
                raw = parts.joined(separator: " ")
                pair = parts.count == 2 ? (parts[0], parts[1]) : nil
                return
            }
            let line = try decoder.singleValueContainer().decode(String.self)
            raw = line
            // The older "a b" form: tokens cannot contain a space there, so exactly one separates them.
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            pair = parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        }
    }

    struct Model: Decodable {
        let type: String?
        let vocab: [String: Int32]?
        let merges: [Merge]?
        /// Every other key of `model` (unk_token, fuse_unk, byte_fallback, ...).
        let options: [String: Any]

        init(type: String?, vocab: [String: Int32]?, merges: [Merge]?, options: [String: Any]) {
            self.type = type; self.vocab = vocab; self.merges = merges; self.options = options
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: AnyKey.self)
            type = try c.decodeIfPresent(String.self, forKey: AnyKey("type"))
            var options = [String: Any]()
            for key in c.allKeys where key.stringValue != "vocab" && key.stringValue != "merges" {
                options[key.stringValue] = try c.decode(NativeJSON.self, forKey: key).value
            }
            self.options = options
            // Only BPE is read; other model types are refused by name later.
            if type == nil || type == "BPE" {
                vocab = try c.decodeIfPresent([String: Int32].self, forKey: AnyKey("vocab"))
                merges = try c.decodeIfPresent([Merge].self, forKey: AnyKey("merges"))
            } else {
                vocab = nil
                merges = nil
            }
        }
    }

    var model: Model
    /// normalizer, pre_tokenizer, post_processor, decoder, added_tokens... as native containers.
    var sections: [String: Any]

    init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        model = try c.decode(Model.self, forKey: AnyKey("model"))
        var sections = [String: Any]()
        for key in c.allKeys where key.stringValue != "model" {
            sections[key.stringValue] = try c.decode(NativeJSON.self, forKey: key).value
        }
        self.sections = sections
    }

    static func decode(_ data: Data, file: String) throws -> TokenizerFile {
        do {
            return try JSONDecoder().decode(TokenizerFile.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            let path = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            throw TokenizerError.badValue(file: file, key: path, expected: "present")
        } catch let DecodingError.typeMismatch(_, context) where context.codingPath.isEmpty {
            throw TokenizerError.invalidJSON(file: file, reason: "top level is not an object")
        } catch let DecodingError.typeMismatch(type, context) {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw TokenizerError.badValue(file: file, key: path, expected: "of type \(type)")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw TokenizerError.badValue(file: file, key: path, expected: "valid (\(context.debugDescription))")
        } catch {
            throw TokenizerError.invalidJSON(file: file, reason: "\(error)")
        }
    }
}

/// Any JSON value as native Swift containers (`[String: Any]`, `[Any]`, String, Int, Double, Bool, NSNull).
struct NativeJSON: Decodable {
    let value: Any

    init(from decoder: Decoder) throws {
        if let c = try? decoder.container(keyedBy: AnyKey.self) {
            var o = [String: Any]()
            for k in c.allKeys { o[k.stringValue] = try c.decode(NativeJSON.self, forKey: k).value }
            value = o
            return
        }
        if var c = try? decoder.unkeyedContainer() {
            var a = [Any]()
            while !c.isAtEnd { a.append(try c.decode(NativeJSON.self).value) }
            value = a
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { value = NSNull() }
        else if let b = try? c.decode(Bool.self) { value = b }
        else if let i = try? c.decode(Int.self) { value = i }
        else if let d = try? c.decode(Double.self) { value = d }
        else { value = try c.decode(String.self) }
    }
}

struct AnyKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
