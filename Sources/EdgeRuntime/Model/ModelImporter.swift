import AdapterCache
import Foundation

/// The dtype unquantised tensors (embeddings, norms, an untied lm_head) are written in.
public enum KeptTensorDType: String, Sendable, CaseIterable {
    case f32, f16, bf16

    var safetensors: SafetensorsDType { switch self { case .f32: .f32; case .f16: .f16; case .bf16: .bf16 } }
    var torchName: String { switch self { case .f32: "float32"; case .f16: "float16"; case .bf16: "bfloat16" } }
}

/// What `edgectl model import` accepts.
public enum ModelSourceKind: String, Sendable {
    case gguf, safetensors, nf4
}

public struct ModelImportProgress: Sendable {
    public enum Phase: String, Sendable { case quantising, writing, copying }
    public let phase: Phase
    /// 1-based index of the tensor just finished, and the total.
    public let tensor: Int
    public let tensorCount: Int
    public let bytesDone: Int
    public let bytesTotal: Int
}

public struct ModelImportSummary: Sendable {
    public let output: String
    public let kind: ModelSourceKind
    public let tensorCount: Int
    public let quantisedCount: Int
    public let modelBytes: Int
    public let seconds: Double
}

/// Writes the model directory of DESIGN.md §2 from a GGUF file, a Hugging Face safetensors directory or
/// an NF4 directory. Everything goes into a temporary directory beside the output, which is renamed
/// into place only when complete: a failure (disk full included) leaves nothing behind.
public final class ModelImporter {
    public let source: String
    public let output: String
    public var force = false
    public var keepDType: KeptTensorDType = .f32
    public var progress: ((ModelImportProgress) -> Void)?
    /// Test hook: fail with `diskFull` after producing this many tensors of model.safetensors.
    var failAfterTensors: Int?
    /// Packed codes are kept between the quantising pass and the writing pass up to this many bytes;
    /// beyond it they are recomputed, so memory stays bounded for any model size.
    var packedCacheBudget = 512 << 20

    public init(source: String, output: String) {
        self.source = source
        self.output = output
    }

    /// What `path` is, from its contents.
    public static func detect(_ path: String) throws(ModelError) -> ModelSourceKind {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw .missingFile(path: path, what: "nothing to import here")
        }
        if !isDir.boolValue {
            guard let h = FileHandle(forReadingAtPath: path) else { throw .io(path: path, reason: "cannot open the file") }
            defer { try? h.close() }
            let magic = (try? h.read(upToCount: 4)) ?? Data()
            guard magic == Data("GGUF".utf8) else {
                throw .unsupportedSource(path: path, reason: "it is neither a GGUF file nor a model directory (config.json + safetensors)")
            }
            return .gguf
        }
        guard FileManager.default.fileExists(atPath: path + "/config.json") else {
            throw .missingFile(path: path + "/config.json", what: "a model directory needs config.json (a Hugging Face Llama config)")
        }
        let single = path + "/model.safetensors"
        if FileManager.default.fileExists(atPath: single) {
            do {
                let f = try SafetensorsFile(path: single)
                if f.tensors.keys.contains(where: { $0.hasSuffix(".quant_state.bitsandbytes__nf4") }) { return .nf4 }
            } catch { throw .safetensors(error) }
        }
        return .safetensors
    }

    @discardableResult
    public func run() throws(ModelError) -> ModelImportSummary {
        let start = Date()
        let outURL = URL(fileURLWithPath: output).standardizedFileURL
        let fm = FileManager.default
        Self.recoverInterrupted(output: outURL.path)
        if fm.fileExists(atPath: outURL.path), !force { throw .outputExists(path: outURL.path) }
        let kind = try Self.detect(source)
        let parent = outURL.deletingLastPathComponent().path
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) } catch {
            throw .write(path: parent, reason: error.localizedDescription)
        }
        let temp = parent + "/." + outURL.lastPathComponent + ".importing-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(temp, 0o755) == 0 else { throw ModelFileIO.failure(temp) }
        var tensorCount = 0, quantised = 0
        do {
            switch kind {
            case .gguf:
                (tensorCount, quantised) = try write(source: try GGUFModelSource(path: source), into: temp)
            case .safetensors:
                (tensorCount, quantised) = try write(source: try SafetensorsModelSource(directory: source), into: temp)
            case .nf4:
                (tensorCount, quantised) = try copyNF4(into: temp)
            }
            try syncDirectory(temp)
            try moveIntoPlace(temp, outURL.path)
        } catch {
            try? fm.removeItem(atPath: temp)
            throw error
        }
        let size = (try? fm.attributesOfItem(atPath: outURL.path + "/model.safetensors")[.size] as? Int) ?? 0
        return ModelImportSummary(output: outURL.path, kind: kind, tensorCount: tensorCount, quantisedCount: quantised,
                                  modelBytes: size, seconds: Date().timeIntervalSince(start))
    }

    // MARK: - Quantise and write

    private struct Quantised {
        let state: NF4QuantState
        let q8: [UInt8]
        let nested: [Float]
        let offset: Float
        var packed: [UInt8]?
    }

    private func write(source: ImportSource, into dir: String) throws(ModelError) -> (Int, Int) {
        var config = source.config
        config.torchDtype = keepDType.torchName
        try ModelFileIO.writeText(config.jsonObject(quantizationConfig: LlamaConfig.nf4QuantizationConfig).serialized(), to: dir + "/config.json")
        try source.writeTokenizer(into: dir)

        let required = LlamaTensorNames.required(config)
        // Pass 1: quantise every projection to learn its statistics (the header needs the offset's
        // decimal spelling, hence its length, before any tensor byte is written).
        var stats: [String: Quantised] = [:]
        var cached = 0
        let toQuantise = required.filter(\.quantised)
        for (i, t) in toQuantise.enumerated() {
            let values = try source.tensors[t.name]!.load()
            let q = NF4Quantizer.quantize(values, shape: t.shape)
            guard case .double(let q8, let nested, let offset) = q.absmax else { preconditionFailure("double quantisation expected") }
            let keep = cached + q.packed.count <= packedCacheBudget
            if keep { cached += q.packed.count }
            stats[t.name] = Quantised(state: q.state, q8: q8, nested: nested, offset: offset, packed: keep ? q.packed : nil)
            progress?(ModelImportProgress(phase: .quantising, tensor: i + 1, tensorCount: toQuantise.count, bytesDone: 0, bytesTotal: 0))
        }

        // Pass 2: the file, tensors sorted as Python's safetensors sorts them (wider dtypes first, then by
        // name), which also keeps every F32 tensor 4-byte aligned for zero-copy use.
        struct Entry { let name: String; let dtype: SafetensorsDType; let shape: [Int]; let bytes: Int; let produce: SafetensorsWriter.Producer }
        var entries: [Entry] = []
        var deferredError: ModelError?
        var produced = 0
        let failAfter = failAfterTensors
        let outPath = dir + "/model.safetensors"
        func guarded(_ body: @escaping (UnsafeMutableRawBufferPointer) throws(ModelError) -> Void) -> SafetensorsWriter.Producer {
            return { out in
                if let failAfter, produced >= failAfter {
                    deferredError = .diskFull(path: outPath)
                    throw ModelError.diskFull(path: outPath)
                }
                do throws(ModelError) { try body(out) } catch { deferredError = error; throw error }
                produced += 1
            }
        }
        let kept = keepDType
        for t in required {
            let tensor = source.tensors[t.name]!
            if !t.quantised {
                entries.append(Entry(name: t.name, dtype: kept.safetensors, shape: t.shape, bytes: tensor.elementCount * kept.safetensors.byteSize,
                                     produce: guarded { (out) throws(ModelError) in
                    let values = try tensor.load()
                    Self.store(values, as: kept, into: out)
                }))
                continue
            }
            let q = stats[t.name]!
            let w = t.name
            let n = tensor.elementCount
            entries.append(Entry(name: w, dtype: .u8, shape: [(n + 1) / 2, 1], bytes: (n + 1) / 2, produce: guarded { (out) throws(ModelError) in
                var packed = q.packed
                if packed == nil {
                    let again = NF4Quantizer.quantize(try tensor.load(), shape: t.shape)
                    guard case .double(_, _, let offset) = again.absmax, offset == q.offset else {
                        throw ModelError.write(path: outPath, reason: "tensor '\(w)' quantised differently on the second pass (its source changed while importing)")
                    }
                    packed = again.packed
                }
                packed!.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
            entries.append(Entry(name: w + ".absmax", dtype: .u8, shape: [q.q8.count], bytes: q.q8.count, produce: guarded { out in
                q.q8.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
            entries.append(Entry(name: w + ".quant_map", dtype: .f32, shape: [16], bytes: 64, produce: guarded { out in
                NF4Tables.codes.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
            entries.append(Entry(name: w + ".nested_absmax", dtype: .f32, shape: [q.nested.count], bytes: q.nested.count * 4, produce: guarded { out in
                q.nested.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
            entries.append(Entry(name: w + ".nested_quant_map", dtype: .f32, shape: [256], bytes: 1024, produce: guarded { out in
                NF4Tables.dynamicMap.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
            let json = Array(q.state.encoded().utf8)
            entries.append(Entry(name: w + ".quant_state.bitsandbytes__nf4", dtype: .u8, shape: [json.count], bytes: json.count, produce: guarded { out in
                json.withUnsafeBytes { out.copyMemory(from: $0) }
            }))
        }
        entries.sort { a, b in a.dtype.byteSize != b.dtype.byteSize ? a.dtype.byteSize > b.dtype.byteSize : a.name < b.name }
        var writer = SafetensorsWriter(metadata: ["format": "pt"])
        var offsets: [Int] = []
        var total = 0
        for e in entries {
            writer.add(e.name, dtype: e.dtype, shape: e.shape, byteCount: e.bytes, produce: e.produce)
            total += e.bytes
            offsets.append(total)
        }
        let report = progress
        do {
            try writer.write(to: outPath) { done, count in
                report?(ModelImportProgress(phase: .writing, tensor: done, tensorCount: count, bytesDone: offsets[done - 1], bytesTotal: total))
            }
        } catch {
            if let deferredError { throw deferredError }
            if case .write(let p, let reason) = error, reason == "the disk is full" { throw .diskFull(path: p) }
            throw .safetensors(error)
        }
        return (entries.count, toQuantise.count)
    }

    static func store(_ values: [Float], as dtype: KeptTensorDType, into out: UnsafeMutableRawBufferPointer) {
        switch dtype {
        case .f32:
            values.withUnsafeBytes { out.copyMemory(from: $0) }
        case .f16:
            let p = out.bindMemory(to: UInt16.self)
            for (i, v) in values.enumerated() { p[i] = Float16(v).bitPattern.littleEndian }
        case .bf16:
            let p = out.bindMemory(to: UInt16.self)
            for (i, v) in values.enumerated() { p[i] = FloatConversion.bfloat16Bits(v).littleEndian }
        }
    }

    // MARK: - NF4 directories

    /// Validates an NF4 directory completely (as the daemon would) and copies it, never re-quantising.
    private func copyNF4(into dir: String) throws(ModelError) -> (Int, Int) {
        let model = try NF4Model(directory: source)
        guard FileManager.default.fileExists(atPath: source + "/tokenizer.json") else {
            throw .missingFile(path: source + "/tokenizer.json", what: "the model directory has no tokenizer.json")
        }
        let files = ["config.json", "model.safetensors"] + SafetensorsModelSource.companionFiles
        let present = files.filter { FileManager.default.fileExists(atPath: source + "/" + $0) }
        for (i, name) in present.enumerated() {
            try ModelFileIO.copyFile(from: source + "/" + name, to: dir + "/" + name)
            progress?(ModelImportProgress(phase: .copying, tensor: i + 1, tensorCount: present.count, bytesDone: 0, bytesTotal: 0))
        }
        return (model.file.tensors.count, model.layers.count * LlamaProjection.allCases.count)
    }

    // MARK: - Atomic replacement

    /// Cleans up after imports to `output` that were killed: their temporary directories are
    /// removed, and a previous model a `--force` import had moved aside (`….old`) goes back into
    /// place if the new one never arrived. Directories of imports still running are left alone.
    static func recoverInterrupted(output: String) {
        let fm = FileManager.default
        let url = URL(fileURLWithPath: output)
        let parent = url.deletingLastPathComponent().path
        let prefix = "." + url.lastPathComponent + ".importing-"
        let entries = ((try? fm.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(prefix) }
        // The aside copies first: one may be the only complete model left.
        for entry in entries.sorted(by: { $0.hasSuffix(".old") && !$1.hasSuffix(".old") }) {
            guard let pid = Int32(entry.dropFirst(prefix.count).prefix { $0 != "-" }), pid > 0 else { continue }
            if pid == getpid() || kill(pid, 0) == 0 || errno == EPERM { continue }
            let path = parent + "/" + entry
            if entry.hasSuffix(".old"), !fm.fileExists(atPath: output), rename(path, output) == 0 { continue }
            try? fm.removeItem(atPath: path)
        }
        let fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    private func syncDirectory(_ path: String) throws(ModelError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ModelFileIO.failure(path) }
        defer { close(fd) }
        _ = fsync(fd)
    }

    private func moveIntoPlace(_ temp: String, _ out: String) throws(ModelError) {
        let fm = FileManager.default
        var old: String?
        if fm.fileExists(atPath: out) {
            // --force: move the old directory aside first, so a failure never leaves neither.
            let aside = temp + ".old"
            guard rename(out, aside) == 0 else { throw .write(path: out, reason: "cannot replace it: \(String(cString: strerror(errno)))") }
            old = aside
        }
        guard rename(temp, out) == 0 else {
            let reason = String(cString: strerror(errno))
            if let old { _ = rename(old, out) }
            throw .write(path: out, reason: "cannot move the finished model into place: \(reason)")
        }
        if let old { try? fm.removeItem(atPath: old) }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        let fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}
