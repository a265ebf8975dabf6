import ArgumentParser
import EdgeRuntime
import Foundation

/// `edgectl eval perplexity`: llama-perplexity's method — the text is cut into non-overlapping
/// chunks of `ctx` tokens (BOS first when the tokenizer adds one), each chunk is evaluated from an
/// empty cache, and only the second half of each chunk is scored.
struct EvalPerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text file, computed as llama-perplexity does (last line: PPL = x).",
        discussion: helpExamples("edgectl eval perplexity --model ~/models/m --file text.txt --ctx 256"))

    @OptionGroup var engine: EngineOptions

    @Option(name: .long, help: "The text file.")
    var file: String

    func run() throws {
        // --ctx names the chunk size here, as in llama-perplexity (-c).
        let ctx = engine.ctx ?? 512
        guard ctx >= 4 else { throw ValidationError("--ctx must be at least 4") }
        var options = engine
        options.ctx = nil
        let (local, model, mix) = try options.open(defaultPrecision: .f32)
        guard ctx <= local.hyperparameters.contextLength else {
            throw ValidationError("--ctx \(ctx) exceeds the model's context length \(local.hyperparameters.contextLength)")
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read '\(file)'") }
        let text = String(decoding: data, as: UTF8.self)
        let bos = local.addsBOS ? local.tokenizer.bosID : nil
        // As llama-perplexity: BOS before the text, and each chunk's first token replaced by BOS.
        let tokens = (bos.map { [$0] } ?? []) + local.tokenizer.encode(text, addSpecial: false, parseSpecial: false)
        let chunks = tokens.count / ctx
        guard chunks > 0 else { throw ValidationError("'\(file)' has \(tokens.count) tokens, fewer than one chunk of \(ctx)") }
        let vocab = local.hyperparameters.vocabularySize
        let first = ctx / 2
        var nll = 0.0
        var count = 0
        printError("perplexity: \(tokens.count) tokens, \(chunks) chunks of \(ctx), scoring the second half of each")
        var line = ""
        for c in 0..<chunks {
            var chunkTokens = Array(tokens[(c * ctx)..<((c + 1) * ctx)])
            if let bos { chunkTokens[0] = bos }
            let runner = SequenceRunner(model: model, adapters: mix, capacity: ctx, prefillChunk: 128)
            let logits = try runner.feed(chunkTokens, allLogits: true)
            logits.withUnsafeBufferPointer { all in
                for j in first..<(ctx - 1) {
                    let row = UnsafeBufferPointer(rebasing: all[(j * vocab)..<((j + 1) * vocab)])
                    let lse = Logprobs.logSumExp(row)
                    nll += lse - Double(row[Int(chunkTokens[j + 1])])
                    count += 1
                }
            }
            line += "[\(c + 1)]" + String(format: "%.4f", exp(nll / Double(count))) + ","
            printError(line)
        }
        print(String(format: "PPL = %.4f", exp(nll / Double(count))))
    }
}
