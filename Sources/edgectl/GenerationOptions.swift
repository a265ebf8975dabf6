import ArgumentParser
import EdgeRuntime

/// Sampling flags shared by `chat` and `generate`.
struct GenerationOptions: ParsableArguments {
    @Option(name: .long, help: "Adapter to apply: NAME or NAME@VERSION (pulled on first use). Default: the base model.")
    var adapter: String?

    @Option(name: .long, help: "Maximum tokens to generate.")
    var maxTokens: Int?

    @Option(name: .long, help: "Sampling temperature (0 = greedy).")
    var temperature: Double?

    @Option(name: .long, help: "Nucleus sampling mass, (0, 1].")
    var topP: Double?

    @Option(name: .long, help: "Random seed for reproducible sampling.")
    var seed: Int64?

    @Option(name: .long, help: "Stop string (repeatable).")
    var stop: [String] = []

    func validate() throws {
        if let adapter {
            do { _ = try AdapterReference(parsing: adapter) } catch { throw ValidationError("--adapter: \(error.message)") }
        }
        if let maxTokens, maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1") }
        if let temperature, !(0...2).contains(temperature) { throw ValidationError("--temperature must be between 0 and 2") }
        if let topP, !(topP > 0 && topP <= 1) { throw ValidationError("--top-p must be in (0, 1]") }
    }

    /// The request fields these flags set.
    var fields: [(String, JSONValue)] {
        var f: [(String, JSONValue)] = [("model", .string(adapter ?? "base"))]
        if let maxTokens { f.append(("max_tokens", .from(maxTokens))) }
        if let temperature { f.append(("temperature", .double(temperature))) }
        if let topP { f.append(("top_p", .double(topP))) }
        if let seed { f.append(("seed", .int(seed))) }
        if !stop.isEmpty { f.append(("stop", .array(stop.map { .string($0) }))) }
        return f
    }
}

/// Streams one SSE generation to stdout; returns the finish reason.
enum StreamPrinter {
    static func run(client: DaemonClient, path: String, body: JSONValue, chat: Bool, output: (String) -> Void) throws -> (text: String, finish: String?) {
        var text = ""
        var finish: String?
        var streamError: String?
        let response = try client.stream("POST", path, json: body) { line in
            guard line.hasPrefix("data: ") else { return }
            let payload = line.dropFirst(6)
            if payload == "[DONE]" { return }
            guard let event = try? JSONValue.parse(Array(payload.utf8)) else { return }
            if let message = event["error"]?["message"]?.stringValue {
                streamError = message
                return
            }
            guard let choice = event["choices"]?.arrayValue?.first else { return }
            let delta = chat ? choice["delta"]?["content"]?.stringValue : choice["text"]?.stringValue
            if let delta, !delta.isEmpty {
                text += delta
                output(delta)
            }
            if let f = choice["finish_reason"]?.stringValue { finish = f }
        }
        if !(200..<300).contains(response.status) { throw DaemonExit.refused(response) }
        if let streamError {
            FileHandle.standardError.write(Data("\nedgectl: generation failed: \(streamError)\n".utf8))
            throw ExitCode(DaemonExit.requestFailed)
        }
        return (text, finish)
    }
}

import Foundation
