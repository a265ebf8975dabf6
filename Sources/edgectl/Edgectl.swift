import ArgumentParser

@main
struct Edgectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgectl",
        abstract: "Control edge-runtime: import models, manage adapters, run and benchmark inference.",
        version: "0.1.0",
        subcommands: [
            ModelCommand.self,
            AdapterCommand.self,
            RunCommand.self,
            ChatCommand.self,
            GenerateCommand.self,
            StatusCommand.self,
            EvalCommand.self,
            BenchCommand.self,
            FinetuneCommand.self,
        ]
    )
}
