import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl eval logprobs`: the model's distribution after every prompt token, plus a greedy
/// continuation, as one JSON object (scripts compare it with other stacks).
struct EvalLogprobsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logprobs",
        abstract: "Print the top-N logprobs after each prompt token and K greedy tokens as JSON.",
        discussion: helpExamples("edgectl eval logprobs --model ~/models/m --prompt \"Hello\" --top 5 --json"))

    @OptionGroup var engine: EngineOptions

    @Option(name: .long, help: "Prompt text (tokenized with the model's tokenizer, special tokens parsed).")
    var prompt: String?

    @Option(name: .long, help: "Prompt token ids, comma-separated.")
    var ids: String?

    @Option(name: .long, help: "Alternatives per position.")
    var top: Int = 10

    @Option(name: .long, help: "Greedy tokens to generate after the prompt.")
    var generate: Int = 0

    @Flag(name: .long, help: "Print JSON (the only output format).")
    var json = false

    func validate() throws {
        guard (prompt == nil) != (ids == nil) else { throw ValidationError("give exactly one of --prompt and --ids") }
        guard top >= 0 else { throw ValidationError("--top must be ≥ 0") }
        guard generate >= 0 else { throw ValidationError("--generate must be ≥ 0") }
    }

    func run() throws {
        let (local, model, mix) = try engine.open(defaultPrecision: .f32)
        let tokens: [Int32]
        if let ids {
            var parsed: [Int32] = []
            for part in ids.split(separator: ",") {
                guard let v = Int32(part.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--ids: '\(part)' is not a token id")
                }
                parsed.append(v)
            }
            tokens = parsed
        } else {
            tokens = local.tokenizer.encode(prompt!, addSpecial: true, parseSpecial: true)
        }
        guard !tokens.isEmpty else { throw ValidationError("the prompt has no tokens") }
        let vocab = local.hyperparameters.vocabularySize
        let runner = SequenceRunner(model: model, adapters: mix, capacity: min(local.hyperparameters.contextLength, tokens.count + generate + 1))
        let logits = try runner.feed(tokens, allLogits: true)
        var positions: [[String: Any]] = []
        logits.withUnsafeBufferPointer { all in
            for i in 0..<tokens.count {
                let row = UnsafeBufferPointer(rebasing: all[(i * vocab)..<((i + 1) * vocab)])
                let s = Logprobs.summarize(row, token: nil, top: top)
                positions.append(["top": s.top.map { ["id": Int($0.id), "logprob": Double($0.logprob)] as [String: Any] }])
            }
        }
        let generated = generate > 0
            ? try runner.greedy(after: Array(logits[((tokens.count - 1) * vocab)...]), count: generate)
            : []
        let object: [String: Any] = ["ids": tokens.map { Int($0) }, "positions": positions, "generated": generated.map { Int($0) }]
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}
