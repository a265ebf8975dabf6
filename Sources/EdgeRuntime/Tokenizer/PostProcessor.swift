/// tokenizer.json `post_processor`, for single sequences: which special ids surround the encoded
/// text when the caller asks for special tokens (`add_special_tokens=True`).
indirect enum PostProcessor: Sendable {
    /// Pieces in order: `.special(ids)` or `.sequence` (the text's ids).
    case template([TemplatePiece])
    case surround(prefix: [Int32], suffix: [Int32])
    case none
    case sequence([PostProcessor])

    enum TemplatePiece: Sendable { case special([Int32]), sequence }

    init(json: JSONNode, idOf: (String) -> Int32?) throws {
        let type = try json.requireType()
        switch type {
        case "TemplateProcessing":
            var specials = [String: [Int32]]()
            for (name, value) in (json["special_tokens"].object ?? [:]) {
                let node = json["special_tokens"][name]
                guard let ids = node["ids"].array?.compactMap({ $0.int }), (value as? [String: Any]) != nil else {
                    throw node.fail("an object with `ids`")
                }
                specials[name] = ids.map { Int32($0) }
            }
            var pieces = [TemplatePiece]()
            for item in try json["single"].requireArray() {
                if !item["Sequence"].isNull {
                    pieces.append(.sequence)
                } else if let name = item["SpecialToken"]["id"].string {
                    guard let ids = specials[name] ?? idOf(name).map({ [$0] }) else {
                        throw TokenizerError.unknownToken(file: json.file, key: item.path, token: name)
                    }
                    pieces.append(.special(ids))
                } else {
                    throw item.fail("{\"Sequence\": ...} or {\"SpecialToken\": ...}")
                }
            }
            self = .template(pieces)
        case "RobertaProcessing", "BertProcessing":
            func idOfPair(_ key: String) throws -> Int32 {
                let pair = try json[key].requireArray()
                guard pair.count == 2, let id = pair[1].int else { throw json[key].fail("[token, id]") }
                return Int32(id)
            }
            self = .surround(prefix: [try idOfPair("cls")], suffix: [try idOfPair("sep")])
        case "ByteLevel":
            self = .none
        case "Sequence":
            self = .sequence(try json["processors"].requireArray().map { try PostProcessor(json: $0, idOf: idOf) })
        default:
            throw TokenizerError.unsupported(file: json.file, key: json.path, type: type)
        }
    }

    func apply(_ ids: [Int32]) -> [Int32] {
        switch self {
        case let .template(pieces):
            return pieces.flatMap { piece -> [Int32] in
                switch piece {
                case let .special(s): return s
                case .sequence: return ids
                }
            }
        case let .surround(prefix, suffix): return prefix + ids + suffix
        case .none: return ids
        case let .sequence(list): return list.reduce(ids) { $1.apply($0) }
        }
    }
}
