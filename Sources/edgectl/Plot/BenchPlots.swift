import Foundation
import EdgeRuntime

/// The bar charts behind `edgectl bench kernels --plot` and `bench generate --plot`, built from the
/// same values their tables and `--json` print.
enum BenchPlots {
    /// One panel per op: GEMV in weight GB/s (it is bandwidth-bound), GEMM in GFLOP/s, anything
    /// else (the LoRA rows) in microseconds. Bars are coloured by threads and cache state.
    static func kernels(_ rows: [KernelBenchmark.Row]) -> BarChart {
        var ops: [String] = []
        for r in rows where !ops.contains(r.op) { ops.append(r.op) }
        let panels = ops.map { op -> BarChart.Panel in
            let mine = rows.filter { $0.op == op }
            let (unit, value): (String, (KernelBenchmark.Row) -> Double) =
                op == "gemv" ? ("weight GB/s, higher is better", { $0.weight_gbps })
                : op == "gemm" ? ("GFLOP/s, higher is better", { $0.gflops })
                : ("µs, lower is better", { $0.us })
            return BarChart.Panel(title: op, unit: unit, bars: mine.map {
                BarChart.Bar(label: "\($0.impl) \($0.m)x\($0.k) n=\($0.n)", value: value($0), group: "\($0.threads) thr, \($0.cache)")
            })
        }
        return BarChart(title: "edgectl bench kernels", panels: panels)
    }

    /// `result` is the object `bench generate --json` prints: edge-runtime's figures at the top
    /// level and, when measured, `llama_cpp: {VARIANT: {prefill_tokens_per_s, decode_tokens_per_s, …}}`.
    static func generate(_ result: [String: Any]) -> BarChart {
        var engines: [(String, [String: Any])] = [("edge-runtime", result)]
        if let l = result["llama_cpp"] as? [String: Any] {
            for key in l.keys.sorted() { if let f = l[key] as? [String: Any] { engines.append(("llama.cpp \(key)", f)) } }
        }
        func panel(_ title: String, _ unit: String, _ key: String) -> BarChart.Panel {
            BarChart.Panel(title: title, unit: unit, bars: engines.compactMap { name, f in
                guard let v = number(f[key]) else { return nil }
                return BarChart.Bar(label: name, value: v, group: name)
            })
        }
        let prompt = number(result["prompt_tokens"]).map { " (\(Int($0)) tokens)" } ?? ""
        let decode = number(result["decode_tokens"]).map { " (\(Int($0)) tokens)" } ?? ""
        return BarChart(title: "edgectl bench generate", panels: [
            panel("prefill\(prompt)", "tokens/s, higher is better", "prefill_tokens_per_s"),
            panel("decode\(decode)", "tokens/s, higher is better", "decode_tokens_per_s"),
            panel("time to first token", "ms, lower is better", "ttft_ms"),
        ])
    }

    private static func number(_ v: Any?) -> Double? {
        switch v {
        case let d as Double: return d
        case let i as Int: return Double(i)
        case let f as Float: return Double(f)
        default: return nil
        }
    }

    /// Draws `chart` into `path` when `--plot` was given and says where it went (on stderr, so
    /// `--json` output stays clean).
    static func write(_ chart: @autoclosure () -> BarChart, to path: String?) throws {
        guard let path else { return }
        try chart().render().write(to: path)
        FileHandle.standardError.write(Data("plot written to \(path)\n".utf8))
    }
}
