import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl model import|info`: local model management, no daemon needed.
struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Import a base model into the NF4 model directory format, or describe one.",
        discussion: helpExamples("edgectl model import model.gguf --out ~/models/m", "edgectl model info ~/models/m --json"),
        subcommands: [ModelImportCommand.self, ModelInfoCommand.self, ModelPullDefaultCommand.self]
    )
}

struct ModelImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Write an NF4 model directory from a GGUF file, a Hugging Face safetensors directory or an NF4 directory.",
        discussion: """
        SRC is a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K or Q6_K tensors), a Hugging Face Llama \
        directory (config.json + model.safetensors or shards, f32/f16/bf16), or a directory already in \
        bitsandbytes NF4 form (validated and copied, never re-quantised). The decoder projections become NF4 \
        with double quantisation (block 64, nested block 256), bit-exact with bitsandbytes.

        """ + helpExamples("edgectl model import SmolLM2-135M-Instruct.Q4_1.gguf --out /var/lib/edge-runtime/models/default",
                           "edgectl model import ~/hf/Llama-3.2-1B --out ~/models/llama-1b --keep-dtype bf16")
    )

    @Argument(help: "The GGUF file or model directory to import.")
    var source: String

    @Option(name: .long, help: "The model directory to write.")
    var out: String

    @Flag(name: .long, help: "Replace --out if it exists.")
    var force = false

    @Option(name: .customLong("keep-dtype"), help: "dtype of embeddings, norms and an untied lm_head: f32, f16 or bf16.")
    var keepDType: String = "f32"

    func validate() throws {
        guard KeptTensorDType(rawValue: keepDType) != nil else {
            throw ValidationError("--keep-dtype must be f32, f16 or bf16 (got '\(keepDType)')")
        }
    }

    func run() throws {
        let importer = ModelImporter(source: source, output: out)
        importer.force = force
        importer.keepDType = KeptTensorDType(rawValue: keepDType)!
        let line = ProgressLine(enabled: isatty(STDERR_FILENO) == 1)
        importer.progress = { p in line.show(p) }
        do {
            let summary = try importer.run()
            line.finish()
            print(String(format: "imported %@ (%@) into %@: %d tensors, %d NF4 projections, %.1f MB in %.2f s",
                         source, summary.kind.rawValue, summary.output, summary.tensorCount, summary.quantisedCount,
                         Double(summary.modelBytes) / 1e6, summary.seconds))
        } catch {
            line.finish()
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// One self-overwriting progress line on a terminal (stderr); nothing when stderr is piped.
final class ProgressLine: @unchecked Sendable {
    private let enabled: Bool
    private var last = Date.distantPast
    private var shown = false

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ p: ModelImportProgress) {
        guard enabled else { return }
        let now = Date()
        guard p.tensor == p.tensorCount || now.timeIntervalSince(last) > 0.1 else { return }
        last = now
        var text = "\r\(p.phase.rawValue) tensor \(p.tensor)/\(p.tensorCount)"
        if p.bytesTotal > 0 { text += String(format: "  %.1f/%.1f MB", Double(p.bytesDone) / 1e6, Double(p.bytesTotal) / 1e6) }
        FileHandle.standardError.write(Data((text + "\u{1B}[K").utf8))
        shown = true
    }

    func finish() {
        if enabled && shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

struct ModelInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Describe an NF4 model directory: architecture, sizes, bits per weight and its digest.",
        discussion: helpExamples("edgectl model info /var/lib/edge-runtime/models/default", "edgectl model info ~/models/m --json")
    )

    @Argument(help: "The model directory.")
    var directory: String

    @Flag(name: .long, help: "Print JSON for scripts.")
    var json = false

    @Flag(name: .long, help: "Also print (to stderr) how long opening and validating took and the mapping's memory after open.")
    var timing = false

    func run() throws {
        do {
            let start = DispatchTime.now()
            let model = try NF4Model(directory: directory)
            let opened = DispatchTime.now()
            if timing {
                let ms = Double(opened.uptimeNanoseconds - start.uptimeNanoseconds) / 1e6
                let m = MappingMemory.of(address: model.file.fileBytes.baseAddress!) ?? MappingMemory()
                FileHandle.standardError.write(Data(String(format: "open+validate %.2f ms; mapping after open: rss %d kB, private dirty %d kB, anonymous %d kB (file %.1f MB)\n",
                                                           ms, m.rssKB, m.privateDirtyKB, m.anonymousKB, Double(model.file.fileBytes.count) / 1e6).utf8))
            }
            let info = ModelReport(model: model)
            if timing {
                let ms = Double(DispatchTime.now().uptimeNanoseconds - opened.uptimeNanoseconds) / 1e6
                FileHandle.standardError.write(Data(String(format: "digest (sha256 of the whole file) %.1f ms\n", ms).utf8))
            }
            print(json ? info.json.serialized() : info.text)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
