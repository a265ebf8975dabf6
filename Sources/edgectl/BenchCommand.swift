import ArgumentParser

/// `edgectl bench ...`: local measurements (no daemon).
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernel and inference speed on this machine.",
        discussion: helpExamples("edgectl bench kernels --plot kernels.svg", "edgectl bench generate --model ~/models/m --json", "edgectl bench load --model ~/models/m --connections 64 --duration 30s"),
        subcommands: [BenchKernelsCommand.self, BenchGenerateCommand.self, BenchLoadCommand.self, BenchServeCommand.self]
    )
}
