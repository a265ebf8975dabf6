import ArgumentParser
import EdgeRuntime
import Foundation

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with the model (or an adapter) through the daemon, streaming replies.",
        discussion: """
            With a MESSAGE, or with stdin not a terminal, sends one message and prints the reply. \
            Otherwise starts an interactive session: type a message and press Enter; /reset clears \
            the conversation, /exit (or Ctrl-D) leaves. \(DaemonExit.helpText)

            """ + helpExamples("edgectl chat \"What is the capital of France?\"", "edgectl chat --adapter pirate@1 --temperature 0",
                               "echo \"Hi\" | edgectl chat --system \"Answer briefly.\"")
    )

    @OptionGroup var socket: SocketOptions
    @OptionGroup var options: GenerationOptions

    @Option(name: .long, help: "System prompt.")
    var system: String?

    @Argument(help: "One message to send; omit for an interactive session (or to read the message from stdin).")
    var message: String?

    func run() throws {
        let client = socket.client
        var history: [JSONValue] = []
        if let system { history.append(.object([("role", "system"), ("content", .string(system))])) }
        let baseHistory = history

        func send(_ text: String) throws {
            history.append(.object([("role", "user"), ("content", .string(text))]))
            let body = JSONValue.object([("messages", .array(history)), ("stream", true)] + options.fields)
            let reply = try StreamPrinter.run(client: client, path: "/v1/chat/completions", body: body, chat: true) { delta in
                FileHandle.standardOutput.write(Data(delta.utf8))
            }
            print("")
            history.append(.object([("role", "assistant"), ("content", .string(reply.text))]))
        }

        do {
            if let message {
                try send(message)
                return
            }
            if isatty(STDIN_FILENO) == 0 {
                let text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw ValidationError("no message given and stdin is empty") }
                try send(text)
                return
            }
            // Check the daemon before the first prompt, so a stopped daemon is reported at once.
            let health = try client.request("GET", "/healthz")
            if health.json?["status"]?.stringValue == "no_model" {
                FileHandle.standardError.write(Data("edgectl: the daemon has no model: \(health.json?["hint"]?.stringValue ?? "")\n".utf8))
                throw ExitCode(DaemonExit.requestFailed)
            }
            print("Chatting with \(options.adapter ?? "the base model") — /reset clears, /exit or Ctrl-D leaves.")
            while true {
                FileHandle.standardOutput.write(Data("> ".utf8))
                guard let line = readLine() else { print(""); return }
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                if text == "/exit" || text == "/quit" { return }
                if text == "/reset" {
                    history = baseHistory
                    print("(conversation cleared)")
                    continue
                }
                try send(text)
            }
        } catch let e as ExitCode {
            throw e
        } catch let e as ValidationError {
            throw e
        } catch {
            throw DaemonExit.fail(error)
        }
    }
}
