import AdapterCache
import EdgeRuntime
import Foundation
import HummingbirdCore

/// The socket API's request path after HTTP framing: the request target parsed as the router's
/// `URI` (path and query), routed over the daemon's route table (APIRoutes), path parameters and
/// JSON bodies decoded by the same code the handlers call — `JSONValue.parse`, then
/// `InferenceRequest.parse` for completions, `AdapterReference(parsing:)` for adapter names,
/// `FineTuningHyperparameters` for a fine-tuning job's hyperparameters — and the body re-serialised
/// by the one JSON writer responses use.
///
/// Input layout: `METHOD SP TARGET` up to the first newline, then the body after the first empty
/// line (or after the first line if there is none). HTTP/1.1 framing itself is SwiftNIO's and is not
/// re-fuzzed here.
enum HTTPRequestFuzzing {
    static func run(_ data: Data) {
        let bytes = [UInt8](data)
        let firstNewline = bytes.firstIndex(of: 0x0A) ?? bytes.count
        let requestLine = String(decoding: bytes[..<firstNewline], as: UTF8.self)
        var bodyStart = min(firstNewline + 1, bytes.count)
        if let blank = findBlankLine(bytes, from: firstNewline) { bodyStart = blank }
        let body = bytes[bodyStart...]

        let parts = requestLine.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        let method = parts.first.map(String.init) ?? "GET"
        let target = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: .whitespacesAndNewlines) : "/"
        let uri = URI(target)
        for (key, value) in uri.queryParameters { _ = (String(key), String(value)) }
        _ = uri.queryParameters.get("limit").flatMap { Int($0) }
        route(method: method, path: uri.path, body: body)
    }

    static func findBlankLine(_ bytes: [UInt8], from: Int) -> Int? {
        var i = from
        while i + 1 < bytes.count {
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0A { return i + 2 }
            if bytes[i] == 0x0A && bytes[i + 1] == 0x0D, i + 2 < bytes.count, bytes[i + 2] == 0x0A { return i + 3 }
            i += 1
        }
        return nil
    }

    static func route(method: String, path: String, body: ArraySlice<UInt8>) {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        switch (method, segments.count, segments.first) {
        case ("POST", 2, "v1") where segments[1] == "completions":
            inference(body, kind: .completion)
        case ("POST", 3, "v1") where segments[1] == "chat" && segments[2] == "completions":
            inference(body, kind: .chat)
        case ("POST", 1, _) where segments[0] == "tokenize" || segments[0] == "detokenize":
            jsonBody(body)
        case ("POST", 3, "v1") where segments[1] == "adapters" && segments[2] == "pull":
            if let json = jsonBody(body), let name = json["name"]?.stringValue ?? json["model"]?.stringValue {
                _ = try? AdapterReference(parsing: name, param: "name")
            }
        case (_, 3, "v1") where segments[1] == "adapters",
             ("POST", 4, "v1") where segments[1] == "adapters" && (segments[3] == "pin" || segments[3] == "unpin"):
            // The router hands the handler the percent-decoded `:name` parameter.
            let raw = segments[2].removingPercentEncoding ?? segments[2]
            _ = try? AdapterReference(parsing: raw, param: "name")
        case ("POST", 3, "v1") where segments[1] == "fine_tuning" && segments[2] == "jobs":
            if let json = jsonBody(body) {
                if let model = json["model"]?.stringValue, model != "base" { _ = try? AdapterReference(parsing: model) }
                if let h = json["hyperparameters"], !h.isNull {
                    _ = try? JSONDecoder().decode(FineTuningHyperparameters.self, from: Data(h.serialized.utf8))
                }
            }
        default:
            return
        }
    }

    @discardableResult
    static func jsonBody(_ body: ArraySlice<UInt8>) -> JSONValue? {
        guard let json = try? JSONValue.parse(body) else { return nil }
        let text = json.serialized
        // The writer's output must parse back: a response the daemon cannot re-read is a bug too.
        guard (try? JSONValue.parse(Array(text.utf8))) != nil else {
            fatalError("JSONValue.serialized produced text JSONValue.parse rejects: \(text.prefix(200))")
        }
        return json
    }

    static func inference(_ body: ArraySlice<UInt8>, kind: InferenceRequest.Kind) {
        guard let json = jsonBody(body) else { return }
        _ = try? InferenceRequest.parse(json, kind: kind)
    }
}
