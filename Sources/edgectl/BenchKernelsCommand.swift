import ArgumentParser
import EdgeRuntime
import Foundation
import Kernels

/// `edgectl bench kernels [--json] [--threads N] [--quick]`: NF4 GEMV/GEMM/LoRA kernels against
/// OpenBLAS f32 and a plain memory read, at 1 thread and all threads, hot and cold.
struct BenchKernelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Time the NF4 kernels against OpenBLAS sgemv/sgemm and the memory read bandwidth.",
        discussion: """
            Shapes are m x k (out x in features) with n activation rows: GEMV n=1, GEMM n=128, LoRA n=8 rows \
            with 8 different rank-16 adapters on the 7 projections of a SmolLM2 layer, adapters stored f32 \
            (lora-bgmv-VARIANT), f16 (lora-bgmv-f16-VARIANT) and int8 (lora-bgmv-i8-VARIANT) next to the base \
            GEMV of the same rows. "cold" \
            cycles through copies totalling 256 MiB (LoRA: 30 layers) so weights come from DRAM. Build with \
            -c release before measuring.

            """ + helpExamples("edgectl bench kernels", "edgectl bench kernels --quick --json --plot kernels.svg")
    )

    @Flag(help: "Print a JSON list of rows {op, impl, m, n, k, threads, cache, us, gflops, weight_gbps}.")
    var json = false

    @Option(help: "The \"all threads\" setting (default: online cores); 1 thread is always measured too.")
    var threads: Int?

    @Flag(help: "Fewer shapes and shorter timing (a smoke run, not for quoting numbers).")
    var quick = false

    @Option(help: "Also draw the table as bar charts into this SVG file.")
    var plot: String?

    @Option(name: .customLong("op"), help: ArgumentHelp("Only these ops (repeatable): gemv, gemm, lora, decode. Default: all.", valueName: "OP"))
    var ops: [String] = []

    func validate() throws {
        if let threads, threads < 1 || threads > 256 {
            throw ValidationError("--threads must be between 1 and 256 (got \(threads))")
        }
        try PlotError.checkPath(plot)
        for op in ops where !KernelBenchmark.allOps.contains(op) {
            throw ValidationError("--op must be one of \(KernelBenchmark.allOps.joined(separator: ", ")) (got '\(op)')")
        }
    }

    func run() async throws {
        let stderr = FileHandle.standardError
        stderr.write(Data((String(cString: ek_dispatch_description()) + "\n").utf8))
        let bench = KernelBenchmark(options: .init(threads: threads, quick: quick, ops: ops.isEmpty ? Set(KernelBenchmark.allOps) : Set(ops)))
        let report = bench.run { line in stderr.write(Data("bench: \(line)\n".utf8)) }
        try BenchPlots.write(BenchPlots.kernels(report.rows), to: plot)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let data = try encoder.encode(report.rows)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print(report.kernelsLine)
        print("openblas: \(report.openblasConfig)")
        print(Self.table(report.rows))
        for line in Self.summary(report.rows) { print(line) }
    }

    static func table(_ rows: [KernelBenchmark.Row]) -> String {
        var out = ["op    impl                     m      n    k      thr cache        us     GFLOP/s   GB/s"]
        for r in rows {
            out.append(
                pad(r.op, 5) + " " + pad(r.impl, 24) + " " + lpad("\(r.m)", 6) + " " + lpad("\(r.n)", 4) + " "
                    + lpad("\(r.k)", 6) + " " + lpad("\(r.threads)", 3) + " " + pad(r.cache, 5) + " "
                    + lpad(String(format: "%.1f", r.us), 10) + " " + lpad(String(format: "%.2f", r.gflops), 9) + " "
                    + lpad(String(format: "%.2f", r.weight_gbps), 7))
        }
        return out.joined(separator: "\n")
    }

    /// The issue's targets, computed from rows of the same run.
    static func summary(_ rows: [KernelBenchmark.Row]) -> [String] {
        var lines: [String] = []
        func find(_ op: String, _ impl: String, _ m: Int, _ k: Int, _ t: Int, _ cache: String) -> KernelBenchmark.Row? {
            rows.first { $0.op == op && $0.impl == impl && $0.m == m && $0.n == 1 && $0.k == k && $0.threads == t && $0.cache == cache }
        }
        let threadCounts = Set(rows.map(\.threads)).sorted()
        let impls = Set(rows.filter { $0.op == "gemv" && $0.impl.hasPrefix("nf4-") }.map(\.impl)).sorted()
        for t in threadCounts {
            // Decode batches: what 8 activation rows cost over one (the daemon's 8 streams vs one), and
            // n=1 against the memory read and sgemv of the same shape in the same run.
            for one in rows where one.op == "gemv" && one.n == 1 && one.threads == t && one.cache == "cold"
                && (one.impl.hasPrefix("q8head-") || one.impl.hasSuffix("-int8")) {
                guard let eight = rows.first(where: { $0.op == "gemv" && $0.impl == one.impl && $0.n == 8 && $0.m == one.m && $0.k == one.k
                    && $0.threads == t && $0.cache == "cold" }) else { continue }
                var line = String(format: "decode %@ %dx%d cold thr=%d: n=8 costs %.2fx n=1 (%.1f vs %.1f us)", one.impl, one.m, one.k, t,
                                  eight.us / one.us, eight.us, one.us)
                if let read = rows.last(where: { $0.op == "gemv" && $0.impl == "memread" && $0.m == one.m && $0.k == one.k && $0.threads == t && $0.cache == "cold" }) {
                    line += String(format: "; n=1 %.2f GB/s = %.0f%% of memread", one.weight_gbps, 100 * one.weight_gbps / read.weight_gbps)
                }
                if let blas = rows.last(where: { $0.op == "gemv" && $0.impl == "openblas-sgemv" && $0.m == one.m && $0.k == one.k && $0.threads == t && $0.cache == "cold" }) {
                    line += String(format: ", %.1fx sgemv", blas.us / one.us)
                }
                lines.append(line)
            }
            if let read = find("gemv", "memread", 4096, 11008, t, "cold"), let blas = find("gemv", "openblas-sgemv", 4096, 11008, t, "cold") {
                for impl in impls {
                    guard let g = find("gemv", impl, 4096, 11008, t, "cold") else { continue }
                    lines.append(String(format: "target gemv 4096x11008 cold thr=%d %@: %.0f%% of read bandwidth (%.2f of %.2f GB/s), %.1fx openblas sgemv",
                                        t, impl, 100 * g.weight_gbps / read.weight_gbps, g.weight_gbps, read.weight_gbps, blas.us / g.us))
                }
            }
            for blas in rows where blas.op == "gemm" && blas.impl == "openblas-sgemm" && blas.threads == t && blas.cache == "hot" {
                for g in rows where g.op == "gemm" && g.impl.hasPrefix("nf4-") && g.m == blas.m && g.k == blas.k && g.threads == t && g.cache == "hot" {
                    lines.append(String(format: "target gemm %dx%d n=%d thr=%d %@: %.0f%% of openblas sgemm GFLOP/s",
                                        g.m, g.k, g.n, t, g.impl, 100 * g.gflops / blas.gflops))
                }
            }
            // lora-bgmv-VARIANT (f32 adapters), lora-bgmv-f16-VARIANT and lora-bgmv-i8-VARIANT against
            // nf4-VARIANT-base-7proj, same cache.
            for l in rows where l.op == "lora" && l.impl.hasPrefix("lora-bgmv-") && l.threads == t {
                let rest = l.impl.dropFirst("lora-bgmv-".count)
                let dtype = ["f16", "i8"].first { rest.hasPrefix($0 + "-") } ?? "f32"
                let v = dtype == "f32" ? rest : rest.dropFirst(dtype.count + 1)
                if let base = rows.first(where: { $0.op == "lora" && $0.impl == "nf4-\(v)-base-7proj" && $0.threads == t && $0.cache == l.cache }) {
                    var line = String(format: "target lora 8 rows x 8 adapters r16 x 7 proj thr=%d %@ %@ %@: %.1f%% of base GEMV time",
                                      t, l.cache, String(v), dtype, 100 * l.us / base.us)
                    if dtype != "f32", let f32 = rows.first(where: { $0.op == "lora" && $0.impl == "lora-bgmv-\(v)" && $0.threads == t && $0.cache == l.cache }) {
                        line += String(format: " (%@ %.2fx faster than f32)", dtype, f32.us / l.us)
                    }
                    lines.append(line)
                }
            }
        }
        return lines
    }

    static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
    static func lpad(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
}
