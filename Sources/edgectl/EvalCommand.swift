import ArgumentParser

/// `edgectl eval`: local evaluation of a model (and adapters) without the daemon.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model locally: token logprobs and perplexity.",
        subcommands: [EvalLogprobsCommand.self, EvalPerplexityCommand.self])
}
