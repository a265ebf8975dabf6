import ArgumentParser

@main
struct Edgectl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edgectl",
        abstract: "Control edge-runtime: import models, manage adapters, run and benchmark inference.",
        discussion: """
            Serving, adapters and fine-tuning jobs go through the daemon's socket (--socket, else \
            $EDGE_SOCKET, else $XDG_RUNTIME_DIR/edge-runtime/edge.sock for a user, else \
            /run/edge-runtime/edge.sock); model, run, eval, bench and finetune run work locally. \
            Output never has colours; progress bars appear only when stderr is a terminal.

            """ + exitCodesHelp + "\n\n" + helpExamples(
                "edgectl model import SmolLM2-135M-Instruct.Q4_1.gguf --out ~/models/smollm2",
                "edgectl status --json", "edgectl chat --adapter pirate \"What is the capital of France?\"",
                "edgectl adapter list", "edgectl help finetune run"),
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
