import ArgumentParser

/// `edgectl eval`: local evaluation of a model (and adapters) without the daemon.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model locally: token logprobs and perplexity.",
        discussion: helpExamples("edgectl eval logprobs --model ~/models/m --prompt \"Hello\" --top 5 --json",
                                 "edgectl eval perplexity --model ~/models/m --file text.txt --ctx 256"),
        subcommands: [EvalLogprobsCommand.self, EvalPerplexityCommand.self])
}
