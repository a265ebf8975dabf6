import AdapterCache
import ArgumentParser
import Foundation

/// `edgectl adapter bench`: the adapter path's timings and sizes on a synthetic 1B-model adapter
/// (hidden 2048, intermediate 5632, 22 layers, 4 KV heads of 64, rank 16, all seven projections,
/// f16), plus artifact size against plain `zstd -19` for a given PEFT directory and its f16
/// conversion. Build with `-c release`; debug numbers mean nothing.
struct AdapterBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench", abstract: "Measure adapter pack/decode/pull/hit times and artifact sizes.",
        discussion: helpExamples("edgectl adapter bench", "edgectl adapter bench --peft ./my-peft --rank 16 --json"))

    @Option(name: .long, help: "A real PEFT directory to measure artifact size on (also converted to f16).") var peft: String?
    @Option(name: .long, help: "Rank of the synthetic adapter.") var rank = 16
    @Option(name: .long, help: "Repetitions for each timing (the best and the median are reported).") var iterations = 7
    @Option(name: .long, help: "Use this running store URL for the pull timing instead of starting python3 -m http.server.") var store: String?
    @Flag(name: .long, help: "Print JSON.") var json = false

    struct SizeRow: Encodable {
        var adapter: String
        var safetensorsBytes: Int
        var zstd19Bytes: Int
        var artifactBytes: Int
        var ratioVsZstd19: Double
        var zstdDecompressGBps: Double
        var artifactDecodeGBps: Double
    }

    struct Result: Encodable {
        var syntheticSafetensorsBytes: Int
        var syntheticArtifactBytes: Int
        var decodedBytes: Int
        var packSeconds: Double
        var warmRAMHitMs: Double
        var diskToRAMMs: Double
        var diskToRAMThroughCacheMs: Double
        var pullVerifyDecodeMs: Double
        var diskToRAMMedianMs: Double
        var pullVerifyDecodeMedianMs: Double
        var sizes: [SizeRow]
    }

    func run() async throws {
        try await reportingErrors {
            let work = NSTemporaryDirectory() + "edge-adapter-bench-\(getpid())"
            try? FileManager.default.removeItem(atPath: work)
            try AtomicFile.makeDirectory(work)
            defer { try? FileManager.default.removeItem(atPath: work) }

            // Synthetic adapter.
            let synth = work + "/synthetic"
            try SyntheticAdapter.write(to: synth, layers: 22, hidden: 2048, intermediate: 5632, kvDim: 256, rank: rank, seed: 7)
            let synthBytes = try FileManager.default.attributesOfItem(atPath: synth + "/adapter_model.safetensors")[.size] as! NSNumber
            var packSeconds: [Double] = []
            var artifact = Data()
            for _ in 0..<max(1, min(iterations, 3)) {
                let t = Clock.now()
                artifact = try AdapterArtifact.pack(directory: synth, options: .init(name: try AdapterName("bench"), version: try AdapterName("1"))).artifact
                packSeconds.append(Clock.since(t))
            }
            let artifactPath = work + "/bench-1.tar.zst"
            try AtomicFile.write(artifact, to: artifactPath)

            step("packed")
            // Disk → RAM, direct (page cache warm).
            var decodeTimes: [Double] = []
            var decodedBytes = 0
            for _ in 0..<iterations {
                let t = Clock.now()
                let a = try AdapterArtifact.open(path: artifactPath).decode()
                decodeTimes.append(Clock.since(t))
                decodedBytes = a.byteCount
            }

            step("decoded")
            // Store + loopback HTTP.
            let storeDir = work + "/store"
            try StorePublisher.publish(artifact: artifactPath, to: storeDir)
            var server: Process?
            let storeURL: String
            if let s = store { storeURL = s } else {
                let port = Int.random(in: 20000..<60000)
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                p.arguments = ["python3", "-c", Self.serverScript, storeDir, String(port)]
                p.standardOutput = FileHandle.nullDevice
                p.standardError = FileHandle.nullDevice
                try p.run()
                server = p
                storeURL = "http://127.0.0.1:\(port)"
            }
            defer { server?.terminate() }
            let fetcher = AdapterFetcher(store: try StoreLocation(storeURL))
            var ready = false
            for _ in 0..<100 where !ready {
                if (try? await fetcher.fetchIndex(name: AdapterName("bench"))) != nil { ready = true } else { try await Task.sleep(nanoseconds: 100_000_000) }
            }
            guard ready else { throw AdapterError.network(url: storeURL, reason: "the benchmark store server did not come up") }

            step("store ready")
            var pullTimes: [Double] = []
            var throughCache: [Double] = []
            var hitMs = 0.0
            for i in 0..<iterations {
                var config = AdapterCacheConfiguration(directory: work + "/cache-\(i)")
                config.store = try StoreLocation(storeURL)
                do {
                    let cache = try AdapterCache(configuration: config)
                    let t = Clock.now()
                    let lease = try await cache.acquire(AdapterReference("bench"))
                    pullTimes.append(Clock.since(t))
                    await cache.release(lease)
                    if i == 0 {
                        let n = 20000
                        let t2 = Clock.now()
                        for _ in 0..<n {
                            let l = try await cache.acquire(AdapterReference("bench"))
                            await cache.release(l)
                        }
                        hitMs = Clock.since(t2) / Double(n) * 1000
                    }
                    try await cache.flush()
                }
                // A fresh cache on the same directory: the first acquire is a disk hit.
                var reopened: AdapterCache?
                for _ in 0..<50 where reopened == nil {
                    // The first cache's lock goes with its last reference; give it a moment.
                    reopened = try? AdapterCache(configuration: config)
                    if reopened == nil { try await Task.sleep(nanoseconds: 20_000_000) }
                }
                let cache2 = try reopened ?? AdapterCache(configuration: config)
                let t3 = Clock.now()
                let lease2 = try await cache2.acquire(AdapterReference("bench"))
                throughCache.append(Clock.since(t3))
                await cache2.release(lease2)
            }

            step("pulls done")
            // Sizes against zstd -19.
            var rows: [SizeRow] = []
            rows.append(try sizeRow(label: "synthetic f16 r\(rank)", dir: synth, work: work))
            if let peft {
                rows.append(try sizeRow(label: "\(peft) (as stored)", dir: peft, work: work))
                let f16 = work + "/peft-f16"
                try SyntheticAdapter.convertToF16(from: peft, to: f16)
                rows.append(try sizeRow(label: "\(peft) → f16", dir: f16, work: work))
            }

            let result = Result(syntheticSafetensorsBytes: synthBytes.intValue, syntheticArtifactBytes: artifact.count, decodedBytes: decodedBytes,
                                packSeconds: median(packSeconds), warmRAMHitMs: hitMs, diskToRAMMs: decodeTimes.min()! * 1000,
                                diskToRAMThroughCacheMs: throughCache.min()! * 1000, pullVerifyDecodeMs: pullTimes.min()! * 1000,
                                diskToRAMMedianMs: median(decodeTimes) * 1000, pullVerifyDecodeMedianMs: median(pullTimes) * 1000, sizes: rows)
            if json { printJSON(result); return }
            print("synthetic adapter: safetensors \(result.syntheticSafetensorsBytes) B, artifact \(result.syntheticArtifactBytes) B, decoded f32 \(decodedBytes) B, pack \(String(format: "%.2f", result.packSeconds)) s")
            print(String(format: "warm RAM hit (acquire+release):      %.4f ms", result.warmRAMHitMs))
            print(String(format: "disk → RAM (open+decode): best %.2f ms, median %.2f ms", result.diskToRAMMs, result.diskToRAMMedianMs))
            print(String(format: "disk → RAM through a new cache: best %.2f ms", result.diskToRAMThroughCacheMs))
            print(String(format: "pull over loopback + verify + decode: best %.2f ms, median %.2f ms", result.pullVerifyDecodeMs, result.pullVerifyDecodeMedianMs))
            for r in rows {
                print("\(r.adapter): safetensors \(r.safetensorsBytes), zstd -19 \(r.zstd19Bytes), artifact \(r.artifactBytes) → "
                      + String(format: "%.3f× smaller than zstd -19; zstd decompress %.2f GB/s, artifact open+decode %.2f GB/s", r.ratioVsZstd19, r.zstdDecompressGBps, r.artifactDecodeGBps))
            }
        }
    }

    /// A threaded static file server on loopback that exits when its parent (this process) does.
    static let serverScript = """
    import functools, http.server, os, sys, threading, time
    root, port, parent = sys.argv[1], int(sys.argv[2]), os.getppid()
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=root)).serve_forever()
    """

    private func step(_ what: String) {
        if !json { FileHandle.standardError.write(Data("bench: \(what)\n".utf8)) }
    }

    private func sizeRow(label: String, dir: String, work: String) throws -> SizeRow {
        let st = try Data(contentsOf: URL(fileURLWithPath: dir + "/adapter_model.safetensors"))
        let z = try st.withUnsafeBytes { try Zstd.compress($0, level: 19, label: dir) }
        let packed = try AdapterArtifact.pack(directory: dir, options: .init(name: try AdapterName("size"), version: try AdapterName("1"))).artifact
        let path = work + "/size-\(UUID().uuidString).tar.zst"
        try AtomicFile.write(packed, to: path)
        var zt: [Double] = [], at: [Double] = []
        var outBytes = 0
        for _ in 0..<iterations {
            let t = Clock.now()
            let out = try packed.withUnsafeBytes { try Zstd.decompress($0, limit: 1 << 31, label: path) }
            zt.append(Clock.since(t))
            outBytes = out.count
            let t2 = Clock.now()
            _ = try AdapterArtifact.open(path: path).decode()
            at.append(Clock.since(t2))
        }
        return SizeRow(adapter: label, safetensorsBytes: st.count, zstd19Bytes: z.count, artifactBytes: packed.count,
                       ratioVsZstd19: Double(z.count) / Double(packed.count),
                       zstdDecompressGBps: Double(outBytes) / zt.min()! / 1e9, artifactDecodeGBps: Double(outBytes) / at.min()! / 1e9)
    }
}

func median(_ xs: [Double]) -> Double {
    guard !xs.isEmpty else { return 0 }
    let s = xs.sorted()
    return s[s.count / 2]
}

enum Clock {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func since(_ t: UInt64) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9 }
}
