import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl finetune create|list|status|logs|cancel|run-pending`: fine-tuning jobs run by the
/// daemon in idle time (`/v1/fine_tuning/jobs…`). The dataset files are read here and uploaded in
/// the request body; the daemon never reads client paths.
enum FinetuneJobs {
    static func decode<T: Decodable>(_ type: T.Type, _ response: DaemonClient.Response) throws -> T {
        guard (200..<300).contains(response.status) else { throw DaemonExit.refused(response) }
        do { return try JSONDecoder().decode(T.self, from: response.body) } catch {
            FileHandle.standardError.write(Data("edgectl: the daemon's answer is not a fine-tuning object: \(error)\n".utf8))
            throw ExitCode(DaemonExit.requestFailed)
        }
    }

    static func call(_ socket: SocketOptions, _ method: String, _ path: String, json: JSONValue? = nil) throws -> DaemonClient.Response {
        do { return try socket.client.request(method, path, json: json) } catch { throw DaemonExit.fail(error) }
    }

    struct Page<T: Decodable>: Decodable { var data: [T]; var has_more: Bool }

    static func line(_ j: FineTuningJob) -> String {
        let created = Date(timeIntervalSince1970: TimeInterval(j.createdAt))
        var s = "\(j.id)  \(j.status.padding(toLength: 9, withPad: " ", startingAt: 0))  \(ISO8601DateFormatter().string(from: created))"
        s += "  from \(j.model)"
        if let m = j.fineTunedModel { s += " → \(m)" }
        return s
    }

    static func render(_ e: FineTuningEvent) -> String {
        let t = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(e.createdAt)))
        return "\(t) \(e.level == "info" ? "" : e.level.uppercased() + " ")\(e.message)"
    }

    /// One event as a single-line JSON object, as the daemon sends it.
    static func jsonLine(_ e: FineTuningEvent) -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? enc.encode(e)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// Oldest first, every page.
    static func allEvents(_ socket: SocketOptions, id: String) throws -> [FineTuningEvent] {
        var out: [FineTuningEvent] = []
        var after: String?
        while true {
            var path = "/v1/fine_tuning/jobs/\(id)/events?limit=100"
            if let after { path += "&after=\(after)" }
            let page = try decode(Page<FineTuningEvent>.self, try call(socket, "GET", path))
            out += page.data
            guard page.has_more, let last = page.data.last else { break }
            after = last.id
        }
        return out.reversed()
    }
}

struct FinetuneCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Queue a fine-tuning job in the daemon; it trains when the device is idle (or now, with --now).",
        discussion: DaemonExit.helpText + "\n\n" + helpExamples("edgectl finetune create --adapter support-bot --data train.jsonl",
                                                                "edgectl finetune create --adapter support-bot --from support-bot --data more.jsonl --steps 50 --now --json"))

    @OptionGroup var socket: SocketOptions
    @Option(help: "Adapter name the result is published as (its next integer version).") var adapter: String
    @Option(help: "Training data: JSONL rows {\"messages\": [...]} or {\"instruction\", \"input\", \"output\"}.") var data: String
    @Option(help: "Held-out data (JSONL); default: a fraction of --data carved off with the seed.") var validation: String?
    @Option(help: "Start from this adapter (NAME or NAME@VERSION trained on this device) instead of fresh LoRA weights.") var from: String?
    @Option(help: "LoRA rank.") var rank: Int?
    @Option(help: "LoRA alpha.") var alpha: Double?
    @Option(help: "Peak learning rate.") var lr: Double?
    @Option(help: "Epochs over the training data.") var epochs: Int?
    @Option(help: "Stop after this many optimiser steps.") var steps: Int?
    @Option(help: "Examples per micro-batch.") var batchSize: Int?
    @Option(help: "Seed of initialisation, shuffling and the held-out split.") var seed: UInt64?
    @Flag(help: "Start training now instead of waiting for the idle timer (inference still preempts it).") var now = false
    @Flag(help: "Print the job as JSON.") var json = false

    func run() throws {
        func read(_ path: String) throws -> String {
            guard let d = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path): give an existing, readable JSONL file") }
            guard let s = String(data: d, encoding: .utf8) else { throw ValidationError("\(path) is not UTF-8 text: save the JSONL as UTF-8") }
            return s
        }
        var hyper: [(String, JSONValue)] = []
        if let rank { hyper.append(("rank", .int(Int64(rank)))) }
        if let alpha { hyper.append(("alpha", .double(alpha))) }
        if let lr { hyper.append(("learning_rate", .double(lr))) }
        if let epochs { hyper.append(("n_epochs", .int(Int64(epochs)))) }
        if let steps { hyper.append(("steps", .int(Int64(steps)))) }
        if let batchSize { hyper.append(("batch_size", .int(Int64(batchSize)))) }
        var body: [(String, JSONValue)] = [("model", .string(from ?? "base")), ("suffix", .string(adapter)),
                                           ("training_data", .string(try read(data))), ("hyperparameters", .object(hyper))]
        if let validation { body.append(("validation_data", .string(try read(validation)))) }
        if let seed { body.append(("seed", .int(Int64(bitPattern: seed)))) }
        let job = try FinetuneJobs.decode(FineTuningJob.self, try FinetuneJobs.call(socket, "POST", "/v1/fine_tuning/jobs", json: .object(body)))
        if now { _ = try FinetuneJobs.call(socket, "POST", "/v1/fine_tuning/run_pending") }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(job), as: UTF8.self))
        } else {
            print("created \(job.id) (\(job.status)\(now ? ", starting now" : ", trains when the device is idle")); follow it with `edgectl finetune logs \(job.id) -f`")
        }
    }
}

struct FinetuneList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List fine-tuning jobs, newest first.",
                                                    discussion: DaemonExit.helpText + "\n\n" + helpExamples("edgectl finetune list", "edgectl finetune list --json"))
    @OptionGroup var socket: SocketOptions
    @Flag(help: "Print the daemon's JSON.") var json = false

    func run() throws {
        let response = try FinetuneJobs.call(socket, "GET", "/v1/fine_tuning/jobs?limit=100")
        if json, response.status == 200 { print(String(decoding: response.body, as: UTF8.self)); return }
        let page = try FinetuneJobs.decode(FinetuneJobs.Page<FineTuningJob>.self, response)
        if page.data.isEmpty { print("no fine-tuning jobs"); return }
        for j in page.data { print(FinetuneJobs.line(j)) }
    }
}

struct FinetuneStatus: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show one fine-tuning job.",
                                                    discussion: DaemonExit.helpText + "\n\n" + helpExamples("edgectl finetune status ftjob-…", "edgectl finetune status ftjob-… --json"))
    @OptionGroup var socket: SocketOptions
    @Argument(help: "Job id (from `edgectl finetune list`).") var id: String
    @Flag(help: "Print the daemon's JSON.") var json = false

    func run() throws {
        let response = try FinetuneJobs.call(socket, "GET", "/v1/fine_tuning/jobs/\(id)")
        if json, response.status == 200 { print(String(decoding: response.body, as: UTF8.self)); return }
        let j = try FinetuneJobs.decode(FineTuningJob.self, response)
        print(FinetuneJobs.line(j))
        if let t = j.trainedTokens { print("trained tokens: \(t)") }
        if let e = j.error { print("error (\(e.code)): \(e.message)") }
        let events = try FinetuneJobs.allEvents(socket, id: id)
        if let last = events.last(where: { $0.data?["train_loss"] != nil }), let d = last.data {
            print(String(format: "step %.0f/%.0f, loss %.5f", d["step"] ?? 0, d["total_steps"] ?? 0, d["train_loss"] ?? 0))
        }
    }
}

struct FinetuneLogs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a job's events (loss per step, eval, promotion).",
                                                    discussion: DaemonExit.helpText + " With -f, status 2 when the job failed or was cancelled.\n\n"
                                                        + helpExamples("edgectl finetune logs ftjob-…", "edgectl finetune logs ftjob-… -f --plot loss.svg", "edgectl finetune logs ftjob-… --json"))
    @OptionGroup var socket: SocketOptions
    @Argument(help: "Job id.") var id: String
    @Flag(name: [.short, .customLong("follow")], help: "Keep printing new events until the job finishes.") var follow = false
    @Option(help: "Seconds between polls with -f.") var interval: Double = 2
    @Option(help: "Also draw the loss per step and the held-out (eval) losses into this SVG file (with -f: when the job ends).") var plot: String?
    @Flag(help: "Print each event as one JSON object per line (NDJSON).") var json = false

    func validate() throws { try PlotError.checkPath(plot) }

    func run() throws {
        var seen = Set<String>()
        while true {
            for e in try FinetuneJobs.allEvents(socket, id: id) where !seen.contains(e.id) {
                seen.insert(e.id)
                print(json ? FinetuneJobs.jsonLine(e) : FinetuneJobs.render(e))
            }
            guard follow else { try plotIfAsked(); return }
            let j = try FinetuneJobs.decode(FineTuningJob.self, try FinetuneJobs.call(socket, "GET", "/v1/fine_tuning/jobs/\(id)"))
            if ["succeeded", "failed", "cancelled"].contains(j.status) {
                for e in try FinetuneJobs.allEvents(socket, id: id) where !seen.contains(e.id) { print(json ? FinetuneJobs.jsonLine(e) : FinetuneJobs.render(e)) }
                if !json { print("job \(j.status)\(j.fineTunedModel.map { ": \($0)" } ?? "")") }
                try plotIfAsked()
                if j.status != "succeeded" { throw ExitCode(2) }
                return
            }
            Thread.sleep(forTimeInterval: max(0.1, interval))
        }
    }

    private func plotIfAsked() throws {
        guard let plot else { return }
        try LossPlot(job: id, events: try FinetuneJobs.allEvents(socket, id: id)).write(to: plot)
    }
}

struct FinetuneCancel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a queued or running fine-tuning job.",
                                                    discussion: DaemonExit.helpText + "\n\n" + helpExamples("edgectl finetune cancel ftjob-…"))
    @OptionGroup var socket: SocketOptions
    @Argument(help: "Job id.") var id: String

    func run() throws {
        let j = try FinetuneJobs.decode(FineTuningJob.self, try FinetuneJobs.call(socket, "POST", "/v1/fine_tuning/jobs/\(id)/cancel"))
        print("\(j.id) \(j.status)")
    }
}

struct FinetuneRunPending: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run-pending",
        abstract: "Ask the daemon to start queued fine-tuning jobs now, ignoring the idle timer (what edge-runtime-finetune.timer runs).",
        discussion: "Inference requests still preempt training. " + DaemonExit.helpText + "\n\n" + helpExamples("edgectl finetune run-pending"))
    @OptionGroup var socket: SocketOptions

    func run() throws {
        let page = try FinetuneJobs.decode(FinetuneJobs.Page<FineTuningJob>.self, try FinetuneJobs.call(socket, "POST", "/v1/fine_tuning/run_pending"))
        print(page.data.isEmpty ? "no pending fine-tuning jobs" : "\(page.data.count) pending job(s) started: " + page.data.map(\.id).joined(separator: ", "))
    }
}
