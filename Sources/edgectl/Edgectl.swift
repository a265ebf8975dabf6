import ArgumentParser

@main
struct Edgectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgectl",
        abstract: "Control edge-runtime: import models, manage adapters, run and benchmark inference.",
        version: "0.1.0",
        subcommands: [
            StatusCommand.self,
            ChatCommand.self,
            GenerateCommand.self,
        ]
    )
}
