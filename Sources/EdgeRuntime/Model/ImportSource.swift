import Foundation

/// One tensor an import source can produce, already in Hugging Face naming and layout.
struct ImportTensor {
    /// HF name, e.g. `model.layers.3.self_attn.q_proj.weight`.
    let name: String
    /// Row-major shape, `[out, in]` for a Linear weight.
    let shape: [Int]
    /// Produces the values as f32 (dequantised / converted / un-permuted), row-major.
    let load: () throws(ModelError) -> [Float]

    var elementCount: Int { shape.reduce(1, *) }
}

/// What an importer needs from a source: the configuration, the tensors, and the tokenizer files.
protocol ImportSource {
    var path: String { get }
    var config: LlamaConfig { get }
    /// Every tensor the config needs, by HF name.
    var tensors: [String: ImportTensor] { get }
    /// Writes tokenizer.json, tokenizer_config.json (and any companion files) into `directory`.
    func writeTokenizer(into directory: String) throws(ModelError)
}

/// The HF tensor names a Llama config needs, with their shapes.
enum LlamaTensorNames {
    static func required(_ c: LlamaConfig) -> [(name: String, shape: [Int], quantised: Bool)] {
        var out: [(String, [Int], Bool)] = [("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize], false)]
        for l in 0..<c.numHiddenLayers {
            out.append(("model.layers.\(l).input_layernorm.weight", [c.hiddenSize], false))
            for p in c.projections { out.append(("model.layers.\(l).\(p.name).weight", p.shape, true)) }
            out.append(("model.layers.\(l).post_attention_layernorm.weight", [c.hiddenSize], false))
        }
        out.append(("model.norm.weight", [c.hiddenSize], false))
        if !c.tieWordEmbeddings { out.append(("lm_head.weight", [c.vocabSize, c.hiddenSize], false)) }
        return out
    }
}

/// Writes small text files completely and durably (fsync), mapping ENOSPC to `diskFull`.
enum ModelFileIO {
    static func writeText(_ text: String, to path: String) throws(ModelError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path) }
        defer { close(fd) }
        var bytes = Array(text.utf8)
        if bytes.last != 0x0a { bytes.append(0x0a) }
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0 {
                if errno == EINTR { continue }
                throw failure(path)
            }
            done += n
        }
        guard fsync(fd) == 0 else { throw failure(path) }
    }

    static func copyFile(from source: String, to destination: String) throws(ModelError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw .io(path: source, reason: String(cString: strerror(errno))) }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw failure(destination) }
        defer { close(output) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer, 1 << 20)
            if n < 0 { if errno == EINTR { continue }; throw .io(path: source, reason: String(cString: strerror(errno))) }
            if n == 0 { break }
            var done = 0
            while done < n {
                let w = Foundation.write(output, buffer + done, n - done)
                if w < 0 { if errno == EINTR { continue }; throw failure(destination) }
                done += w
            }
        }
        guard fsync(output) == 0 else { throw failure(destination) }
    }

    /// The current errno as a write error (ENOSPC / EDQUOT / EFBIG as disk full).
    static func failure(_ path: String) -> ModelError {
        let e = errno
        if e == ENOSPC || e == EDQUOT || e == EFBIG { return .diskFull(path: path) }
        return .write(path: path, reason: String(cString: strerror(e)))
    }
}
