import ArgumentParser

/// `edgectl bench ...`: local measurements (no daemon).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernel and inference speed on this machine.",
        subcommands: [BenchKernelsCommand.self, BenchGenerateCommand.self, BenchServeCommand.self]
    )
}
