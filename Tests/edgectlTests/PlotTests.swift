import EdgeRuntime
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import edgectl

/// The SVG charts behind `--plot`: well-formed XML, the expected series, and values that survive.
final class PlotTests: XCTestCase {
    /// Parses an SVG and keeps what the tests look at: every element with its attributes and, per
    /// `data-series` group, the elements inside it.
    final class SVGReader: NSObject, XMLParserDelegate {
        struct Element { var name: String; var attributes: [String: String]; var series: String? }
        var elements: [Element] = []
        var texts: [String] = []
        private var seriesStack: [String?] = []
        private var text = ""

        static func read(_ svg: String) throws -> SVGReader {
            let reader = SVGReader()
            let parser = XMLParser(data: Data(svg.utf8))
            parser.delegate = reader
            guard parser.parse() else {
                throw NSError(domain: "SVG", code: 1, userInfo: [NSLocalizedDescriptionKey: "not well-formed XML: \(parser.parserError.map { "\($0)" } ?? "?")\n\(svg.prefix(2000))"])
            }
            return reader
        }

        func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
            let inherited = seriesStack.last ?? nil
            seriesStack.append(attributes["data-series"] ?? inherited)
            elements.append(Element(name: name, attributes: attributes, series: attributes["data-series"] ?? inherited))
            text = ""
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }

        func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
            if name == "text" { texts.append(text) }
            seriesStack.removeLast()
        }

        var seriesNames: [String] {
            elements.filter { $0.name == "g" }.compactMap { $0.attributes["data-series"] }
        }

        func elements(_ name: String, inSeries series: String) -> [Element] {
            elements.filter { $0.name == name && $0.series == series }
        }
    }

    func testLossChartHasTrainLineAndEvalMarkers() throws {
        var events: [FineTuningEvent] = [FineTuningEvent(id: "e0", createdAt: 1, level: "info", message: "started")]
        events.append(FineTuningEvent(id: "e1", createdAt: 2, level: "info", message: "eval", type: "metrics", data: ["step": 0, "valid_loss": 4.5]))
        for s in 1...7 {
            events.append(FineTuningEvent(id: "s\(s)", createdAt: 2 + s, level: "info", message: "step", type: "metrics",
                                          data: ["step": Double(s), "total_steps": 7, "train_loss": 5 - 0.4 * Double(s)]))
        }
        events.append(FineTuningEvent(id: "e2", createdAt: 20, level: "info", message: "eval", type: "metrics",
                                      data: ["step": 7, "valid_loss": 2.25, "baseline_loss": 4.5]))
        let plot = LossPlot(job: "ftjob-<test>&", events: events)
        XCTAssertEqual(plot.trainLoss.count, 7)
        XCTAssertEqual(plot.heldOutLoss.map(\.y), [4.5, 2.25])

        let svg = try SVGReader.read(try plot.chart.render().text)
        XCTAssertEqual(svg.elements.first?.name, "svg")
        XCTAssertEqual(svg.seriesNames, ["train loss", "held-out loss"])
        let line = svg.elements("polyline", inSeries: "train loss")
        XCTAssertEqual(line.count, 1)
        XCTAssertEqual(line[0].attributes["points"]?.split(separator: " ").count, 7, "one vertex per optimiser step")
        let markers = svg.elements("circle", inSeries: "held-out loss")
        XCTAssertEqual(markers.compactMap { $0.attributes["data-y"].flatMap(Double.init) }, [4.5, 2.25])
        XCTAssertEqual(markers.compactMap { $0.attributes["data-x"] }, ["0", "7"])
        XCTAssertTrue(svg.texts.contains("fine-tuning job ftjob-<test>&"), "titles are escaped, not dropped: \(svg.texts)")
        // The falling loss is drawn falling: y grows downwards in SVG.
        let ys = line[0].attributes["points"]!.split(separator: " ").map { Double($0.split(separator: ",")[1])! }
        XCTAssertEqual(ys, ys.sorted(), "train loss decreases every step, so its y pixel must increase")
    }

    func testEmptyLossChartIsAnErrorNotAnEmptyPicture() {
        let plot = LossPlot(job: "j", events: [FineTuningEvent(id: "a", createdAt: 1, level: "info", message: "queued")])
        XCTAssertThrowsError(try plot.chart.render()) { error in
            XCTAssertEqual(error as? PlotError, .nothingToPlot(what: "fine-tuning job j has no data points yet"))
        }
    }

    func testKernelBarsOnePanelPerOpAndOneSeriesPerSetting() throws {
        // Rows as `bench kernels --json` prints them (the shape scripts depend on).
        func row(_ op: String, _ impl: String, _ m: Int, _ t: Int, _ cache: String, us: Double, gflops: Double, gbps: Double) throws -> KernelBenchmark.Row {
            let json = """
                {"op": "\(op)", "impl": "\(impl)", "m": \(m), "n": \(op == "gemv" ? 1 : 128), "k": 576, "threads": \(t), "cache": "\(cache)",
                 "us": \(us), "gflops": \(gflops), "weight_gbps": \(gbps)}
                """
            return try JSONDecoder().decode(KernelBenchmark.Row.self, from: Data(json.utf8))
        }
        let rows = [
            try row("gemv", "nf4-avx2", 576, 1, "hot", us: 10, gflops: 0.06, gbps: 8.5),
            try row("gemv", "openblas-sgemv", 576, 1, "hot", us: 30, gflops: 0.02, gbps: 44.2),
            try row("gemv", "nf4-avx2", 576, 2, "cold", us: 6, gflops: 0.1, gbps: 13.25),
            try row("gemm", "nf4-avx2", 576, 2, "hot", us: 900, gflops: 96.5, gbps: 0.4),
            try row("lora", "lora-bgmv-avx2", 576, 2, "hot", us: 41.5, gflops: 1, gbps: 0),
        ]
        let svg = try SVGReader.read(try BenchPlots.kernels(rows).render().text)
        let panels = svg.elements.filter { $0.name == "g" && $0.attributes["class"] == "panel" }.compactMap { $0.attributes["data-panel"] }
        XCTAssertEqual(panels, ["gemv", "gemm", "lora"])
        XCTAssertEqual(Set(svg.seriesNames), ["1 thr, hot", "2 thr, cold", "2 thr, hot"])
        let bars = svg.elements.filter { $0.name == "rect" && $0.attributes["data-value"] != nil }
        XCTAssertEqual(bars.count, rows.count)
        // GEMV is drawn in weight GB/s, GEMM in GFLOP/s, LoRA in µs.
        XCTAssertEqual(bars.compactMap { $0.attributes["data-value"].flatMap(Double.init) }, [8.5, 44.2, 13.25, 96.5, 41.5])
        XCTAssertEqual(bars[1].attributes["data-label"], "openblas-sgemv 576x576 n=1")
        let width = { (b: SVGReader.Element) in Double(b.attributes["width"]!)! }
        XCTAssertGreaterThan(width(bars[1]), width(bars[0]) * 4, "bar lengths follow the values (44.2 vs 8.5 GB/s)")
    }

    func testGenerateBarsIncludeLlamaCppWhenMeasured() throws {
        let result: [String: Any] = [
            "engine": "edge-runtime", "prefill_tokens_per_s": 812.5, "decode_tokens_per_s": 61.0, "ttft_ms": 157.5,
            "prompt_tokens": 128, "decode_tokens": 64,
            "llama_cpp": ["Q4_0": ["prefill_tokens_per_s": 1000.0, "decode_tokens_per_s": 70.0],
                          "IQ4_NL": ["prefill_tokens_per_s": 900.0, "decode_tokens_per_s": 66.0]],
        ]
        let svg = try SVGReader.read(try BenchPlots.generate(result).render().text)
        XCTAssertEqual(svg.seriesNames.filter { $0 == "edge-runtime" }.count, 3, "prefill, decode and TTFT panels")
        XCTAssertEqual(Set(svg.seriesNames), ["edge-runtime", "llama.cpp IQ4_NL", "llama.cpp Q4_0"])
        let decode = svg.elements.filter { $0.name == "rect" && $0.attributes["data-value"] != nil }.map { ($0.series!, $0.attributes["data-value"]!) }
        XCTAssertTrue(decode.contains { $0 == ("llama.cpp Q4_0", "70.0") }, "\(decode)")
        XCTAssertTrue(decode.contains { $0 == ("edge-runtime", "157.5") }, "\(decode)")

        // Without llama.cpp figures (unavailable): edge-runtime alone, and no legend entry for others.
        let alone = try SVGReader.read(try BenchPlots.generate(["prefill_tokens_per_s": 10.0, "decode_tokens_per_s": 2.0, "ttft_ms": 5.0,
                                                                "llama_cpp": ["unavailable": "no llama_cpp"]]).render().text)
        XCTAssertEqual(Set(alone.seriesNames), ["edge-runtime"])
    }

    func testWriteIsAtomicAndRefusesOtherExtensions() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("plot-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("loss.svg").path
        var plot = LossPlot(title: "t")
        plot.trainLoss = [(1, 2), (2, 1)]
        try plot.chart.render().write(to: path)
        try plot.chart.render().write(to: path)  // replacing an existing file
        XCTAssertNoThrow(try SVGReader.read(try String(contentsOfFile: path, encoding: .utf8)))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["loss.svg"], "no temp file left behind")

        XCTAssertThrowsError(try PlotError.checkPath("loss.png")) { XCTAssertEqual($0 as? PlotError, .notSVG(path: "loss.png")) }
        XCTAssertNoThrow(try PlotError.checkPath("Loss.SVG"))
        XCTAssertThrowsError(try plot.chart.render().write(to: dir.appendingPathComponent("missing/loss.svg").path)) {
            XCTAssertTrue("\($0)".contains("missing/loss.svg"), "\($0)")
        }
    }

    func testAxisTicksAreNiceAndCoverTheData() {
        let a = PlotAxis(covering: [0.37, 4.9])
        XCTAssertLessThanOrEqual(a.lower, 0.37)
        XCTAssertGreaterThanOrEqual(a.upper, 4.9)
        XCTAssertEqual(a.ticks, [0, 1, 2, 3, 4, 5])
        let flat = PlotAxis(covering: [3, 3])
        XCTAssertLessThan(flat.lower, 3)
        XCTAssertGreaterThan(flat.upper, 3)
        XCTAssertEqual(SVGDocument.escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot; ")
    }
}
