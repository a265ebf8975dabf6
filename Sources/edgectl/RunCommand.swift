import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl run`: one-shot local generation, streamed to stdout like llama-cli.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Generate text locally from a prompt (no daemon), streaming it to stdout.",
        discussion: helpExamples("edgectl run --model ~/models/m --chat \"What is the capital of France?\"",
                                 "edgectl run --model ~/models/m --adapter ./pirate:0.8 --temperature 0 -n 32 \"Once upon a time\""))

    @OptionGroup var engine: EngineOptions

    @Flag(name: .long, help: "Render the prompt as a user message with the model's chat template.")
    var chat = false

    @Option(name: .long, help: "System message (with --chat).")
    var system: String?

    @Option(name: [.customShort("n"), .long], help: "Maximum tokens to generate.")
    var maxTokens: Int = 256

    @Option(name: .long, help: "Sampling temperature; 0 = greedy.")
    var temperature: Float = 0.8

    @Option(name: .long, help: "Top-k (0 disables).")
    var topK: Int = 40

    @Option(name: .long, help: "Top-p nucleus mass (1 disables).")
    var topP: Float = 0.95

    @Option(name: .long, help: "Min-p (0 disables).")
    var minP: Float = 0.05

    @Option(name: .long, help: "Repetition penalty (1 disables).")
    var repeatPenalty: Float = 1

    @Option(name: .long, help: "Presence penalty.")
    var presencePenalty: Float = 0

    @Option(name: .long, help: "Frequency penalty.")
    var frequencyPenalty: Float = 0

    @Option(name: .long, help: "Seed (same seed, same text).")
    var seed: UInt64?

    @Option(name: .long, help: "Stop string (repeatable); generation ends before it.")
    var stop: [String] = []

    @Flag(name: .long, help: "Keep generating through end-of-generation tokens.")
    var ignoreEos = false

    @Argument(help: "The prompt.")
    var prompt: String

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
        guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1]") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be positive") }
    }

    func run() throws {
        let (local, model, mix) = try engine.open(defaultPrecision: .int8)
        let text: String
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", content: system)) }
            messages.append(ChatMessage(role: "user", content: prompt))
            text = try local.renderChat(messages, addGenerationPrompt: true)
        } else {
            text = prompt
        }
        let ids = local.tokenizer.encode(text, addSpecial: !chat, parseSpecial: chat)
        guard !ids.isEmpty else { throw ValidationError("the prompt tokenizes to nothing") }
        let capacity = min(local.hyperparameters.contextLength, ids.count + max(1, maxTokens))
        guard ids.count < capacity || maxTokens == 0 else {
            throw EngineError.contextOverflow(needed: ids.count + 1, capacity: capacity, contextLength: local.hyperparameters.contextLength)
        }
        let runner = SequenceRunner(model: model, adapters: mix, capacity: capacity)
        var sampler = TokenSampler(parameters: SamplingParameters(
            temperature: temperature, topP: topP, topK: topK, minP: minP, repetitionPenalty: repeatPenalty,
            presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, seed: seed), prompt: ids)
        var detok = StreamingDetokenizer(tokenizer: local.tokenizer)
        var stops = StopStringMatcher(stop)
        let eog = local.endOfGeneration
        var logits = try runner.feed(ids)
        var produced = 0
        let out = FileHandle.standardOutput
        while produced < maxTokens {
            let token = sampler.sample(logits)
            if !ignoreEos && eog.contains(token) { break }
            sampler.accept(token)
            produced += 1
            let (emit, stopped) = stops.push(detok.feed(token))
            out.write(Data(emit.utf8))
            if stopped { break }
            if produced == maxTokens || runner.position >= capacity { break }
            logits = try runner.feed([token])
        }
        if !stops.stopped { out.write(Data((stops.push(detok.flush()).text + stops.finish()).utf8)) }
        out.write(Data("\n".utf8))
    }
}
