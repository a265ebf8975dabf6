import AdapterCache
import EdgeRuntime
import Foundation
import HummingbirdCore

/// Every parser that reads outside input, as a `bytes → parse` entry point. The libFuzzer driver
/// (Sources/FuzzDriver, built with EDGE_FUZZ=1) calls `run` for each generated input, and the
/// regression tests replay Tests/Fuzz/regressions/<rawValue>/* through the same call in the normal
/// build. A parser *error* is the expected outcome for most inputs and is ignored; a crash, a trap
/// (overflow, out-of-range index), an ASan report or a hang is the finding.
///
/// Each entry point goes on past a successful parse into what the runtime does next with the result
/// (decode tensors, tokenize, render), because that is where declared sizes and offsets get used.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// An adapter's `adapter_model.safetensors` (8-byte length, JSON header, data).
    case safetensors
    /// A GGUF model file: header, metadata, tensor table, then the tokenizer metadata converter.
    case gguf
    /// A Hugging Face `tokenizer.json`, then encoding and decoding a fixed text with it.
    case tokenizer
    /// A PEFT `adapter_config.json`.
    case adapterConfig = "adapter-config"
    /// An adapter artifact. Inputs that start with the zstd magic are opened as they are; anything
    /// else is treated as the tar inside and compressed first, so the fuzzer mutates the tar and its
    /// members rather than spending its time on zstd's frame checks.
    case artifact
    /// An adapter store's `<name>/index.json`.
    case storeIndex = "store-index"
    /// The daemon's `config.toml`.
    case configToml = "config-toml"
    /// An HTTP request as the router sees it: `METHOD TARGET` on the first line, the body after the
    /// first empty line (see `HTTPRequestFuzzing`).
    case httpRequest = "http-request"
    /// A fine-tuning JSONL file (chat `messages` rows or instruction/input/output rows).
    case trainingJSONL = "training-jsonl"
    /// A chat template (the Jinja subset), rendered with a fixed conversation.
    case chatTemplate = "chat-template"
    /// A model directory's `config.json` (import from safetensors).
    case llamaConfig = "llama-config"

    /// Feeds one input to the parser. Never throws: errors are the parser doing its job.
    public func run(_ data: Data) {
        switch self {
        case .safetensors: Self.safetensors(data)
        case .gguf: Self.gguf(data)
        case .tokenizer: Self.tokenizer(data)
        case .adapterConfig: Self.adapterConfig(data)
        case .artifact: Self.artifact(data)
        case .storeIndex: Self.storeIndex(data)
        case .configToml: _ = try? DaemonConfiguration.parse([UInt8](data), path: "fuzz/config.toml")
        case .httpRequest: HTTPRequestFuzzing.run(data)
        case .trainingJSONL: Self.trainingJSONL(data)
        case .chatTemplate: Self.chatTemplate(data)
        case .llamaConfig: _ = try? LlamaConfig.decode(data, path: "fuzz/config.json")
        }
    }

    /// Inputs larger than this are skipped: every parser caps its own input well below, and the
    /// fuzzer's time is better spent on structure than on multi-megabyte blobs.
    static let decodeLimit = 1 << 20

    static func safetensors(_ data: Data) {
        guard let file = try? SafetensorsFile(data: data, label: "fuzz.safetensors") else { return }
        for name in file.tensors.keys.sorted() {
            _ = try? file.info(name)
            _ = try? file.bytes(of: name)
            _ = try? file.floats(name)
        }
    }

    static func gguf(_ data: Data) {
        // GGUFFile maps a path (the real reader path, including its mapping code); a per-process
        // scratch file in /dev/shm (RAM) keeps that cheap.
        let path = FuzzScratchFile.shared.write(data)
        guard let file = try? GGUFFile(path: path) else { return }
        for t in file.tensors where t.byteCount <= decodeLimit {
            _ = file.bytes(of: t)
            _ = try? file.dequantize(t)
        }
        if let converter = try? GGUFTokenizerConverter(gguf: file) {
            _ = converter.tokenizerJSON()
            _ = converter.tokenizerConfigJSON(modelMaxLength: 2048)
        }
    }

    static let sampleText = "Hello, world! Ça va? 1234 — <|im_start|>user\n\tdon't  stop 日本語 🙂\n"

    static func tokenizer(_ data: Data) {
        guard let tok = try? Tokenizer(tokenizerJSON: data, config: nil) else { return }
        let ids = tok.encode(sampleText, addSpecial: true)
        _ = tok.decode(ids)
        _ = tok.decode(ids, skipSpecial: true)
        _ = tok.decode([0, 1, 2, -1, Int32.max])
        for id in ids.prefix(8) { _ = tok.tokenString(id) }
    }

    static func adapterConfig(_ data: Data) {
        guard let config = try? PEFTConfig(data: data, label: "fuzz/adapter_config.json") else { return }
        for module in ["model.layers.0.self_attn.q_proj", "model.layers.11.mlp.down_proj", "lm_head"] {
            _ = config.targets(module: module)
            let (rank, alpha) = config.rankAndAlpha(forModule: module)
            _ = config.scale(rank: rank, alpha: alpha)
        }
    }

    static let zstdMagic: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]

    static func artifact(_ data: Data) {
        var limits = ArtifactLimits()
        limits.maxDecompressedBytes = 64 << 20
        limits.maxMemberBytes = 32 << 20
        let compressed: Data
        if data.starts(with: zstdMagic) {
            compressed = data
        } else {
            guard let c = try? data.withUnsafeBytes({ buf throws(AdapterError) in try Zstd.compress(buf, level: 1, label: "fuzz") }) else { return }
            compressed = c
        }
        let opened = compressed.withUnsafeBytes { buf in try? AdapterArtifact.open(compressed: buf, label: "fuzz.tar.zst", limits: limits) }
        guard let artifact = opened else { return }
        _ = artifact.contentDigests()
        _ = try? artifact.verifyContent()
        _ = artifact.safetensorsData()
        _ = try? artifact.decode()
    }

    static func storeIndex(_ data: Data) {
        guard let name = try? AdapterName("fuzz") else { return }
        _ = try? StoreIndex.decode(data, url: "https://store.invalid/fuzz/index.json", expectedName: name)
    }

    static func trainingJSONL(_ data: Data) {
        _ = TrainingDataset.parseRows(data)
        _ = try? TrainingDataset(data: data, file: "fuzz.jsonl", formatter: ByteFormatter(), maxLength: 4096, skipBadRows: true)
        guard let strict = try? TrainingDataset(data: data, file: "fuzz.jsonl", formatter: ByteFormatter(), maxLength: 4096) else { return }
        _ = try? strict.split(heldOutFraction: 0.1, seed: 1, minimumTrain: 1)
        _ = try? strict.batches(batchSize: 4, padId: 0)
    }

    static let conversation = [
        ChatMessage(role: "system", content: "Be brief."),
        ChatMessage(role: "user", content: "Hi {{ there }} {% if %}"),
        ChatMessage(role: "assistant", content: "Hello."),
        ChatMessage(role: "user", content: "Again?"),
    ]

    static func chatTemplate(_ data: Data) {
        let source = String(decoding: data, as: UTF8.self)
        guard let template = try? ChatTemplate(source: source, bosToken: "<s>", eosToken: "</s>") else { return }
        _ = try? template.render(messages: conversation, addGenerationPrompt: true)
        _ = try? template.render(messages: [], addGenerationPrompt: false)
    }
}

/// Token ids are the UTF-8 bytes: enough for the dataset loader's own logic (row parsing, length
/// checks, prompt/answer split, batching) without a tokenizer model in the loop.
struct ByteFormatter: TrainingPromptFormatter {
    func promptIds(_ messages: [TrainingMessage]) throws -> [Int32] {
        messages.flatMap { Array($0.role.utf8) + Array($0.content.utf8) }.map { Int32($0) }
    }
    func answerIds(_ content: String) throws -> [Int32] { content.utf8.map { Int32($0) } + [2] }
    var padId: Int32 { 0 }
}
