import ArgumentParser
import EdgeRuntime
import Foundation

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Complete a prompt through the daemon (/v1/completions), streaming the text to stdout.",
        discussion: "The prompt is sent as-is (no chat template); use `edgectl chat` for conversations. " + DaemonExit.helpText
            + "\n\n" + helpExamples("edgectl generate \"Once upon a time\"", "edgectl generate --adapter pirate --max-tokens 32 \"The sea\"")
    )

    @OptionGroup var socket: SocketOptions
    @OptionGroup var options: GenerationOptions

    @Argument(help: "The prompt; read from stdin when omitted or \"-\".")
    var prompt: String?

    func run() throws {
        var text = prompt ?? "-"
        if text == "-" {
            text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        }
        guard !text.isEmpty else { throw ValidationError("the prompt is empty") }
        let body = JSONValue.object([("prompt", .string(text)), ("stream", true)] + options.fields)
        do {
            _ = try StreamPrinter.run(client: socket.client, path: "/v1/completions", body: body, chat: false) { delta in
                FileHandle.standardOutput.write(Data(delta.utf8))
            }
            print("")
        } catch let e as ExitCode {
            throw e
        } catch {
            throw DaemonExit.fail(error)
        }
    }
}
