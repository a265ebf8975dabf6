/// Horizontal bar charts for benchmark tables: one panel per metric, one bar per table row, bars
/// coloured by a grouping column (e.g. the cache state) with a legend. Each panel is a
/// `<g class="panel" data-panel="TITLE">`, each bar a `<rect data-label=… data-value=…>` inside a
/// `<g data-series="GROUP">`.
struct BarChart {
    struct Bar {
        var label: String
        var value: Double
        var group: String
    }

    struct Panel {
        var title: String
        var unit: String
        var bars: [Bar]
    }

    var title: String
    var panels: [Panel]
    var width = 900.0

    private static let barHeight = 16.0, gap = 4.0, labelWidth = 330.0

    func render() throws(PlotError) -> SVGDocument {
        let shown = panels.filter { !$0.bars.isEmpty }
        guard !shown.isEmpty else { throw .nothingToPlot(what: "\(title) has no rows") }
        var groups: [String] = []
        for p in shown { for b in p.bars where !groups.contains(b.group) { groups.append(b.group) } }
        let panelHeights = shown.map { 48 + Double($0.bars.count) * (Self.barHeight + Self.gap) + 28 }
        let height = 40 + panelHeights.reduce(0, +) + 30
        var svg = SVGDocument(width: width, height: height)
        svg.text(title, x: width / 2, y: 24, size: 15, anchor: .middle, bold: true)
        var y0 = 40.0
        let left = Self.labelWidth, right = width - 80
        for (panel, h) in zip(shown, panelHeights) {
            svg.beginGroup([("class", "panel"), ("data-panel", panel.title)])
            svg.text("\(panel.title) (\(panel.unit))", x: 10, y: y0 + 18, size: 13, bold: true)
            let axis = PlotAxis(covering: panel.bars.map(\.value), includeZero: true)
            let top = y0 + 30, bottom = top + Double(panel.bars.count) * (Self.barHeight + Self.gap)
            for t in axis.ticks {
                let x = axis.map(t, from: left, to: right)
                svg.line(x1: x, y1: top, x2: x, y2: bottom, stroke: "#e3e3e3")
                svg.text(PlotAxis.label(t), x: x, y: bottom + 14, size: 10, anchor: .middle)
            }
            let zero = axis.map(0, from: left, to: right)
            for g in groups {
                let bars = panel.bars.enumerated().filter { $0.element.group == g }
                guard !bars.isEmpty else { continue }
                svg.beginGroup([("class", "series"), ("data-series", g)])
                let color = PlotPalette.color(groups.firstIndex(of: g)!)
                for (i, b) in bars {
                    let y = top + Double(i) * (Self.barHeight + Self.gap)
                    let x = axis.map(b.value, from: left, to: right)
                    svg.rect(x: min(zero, x), y: y, width: Swift.abs(x - zero), height: Self.barHeight, fill: color,
                             extra: [("data-label", b.label), ("data-value", "\(b.value)")])
                    svg.text(b.label, x: left - 6, y: y + Self.barHeight - 4, size: 11, anchor: .end)
                    svg.text(PlotAxis.label(b.value), x: max(zero, x) + 4, y: y + Self.barHeight - 4, size: 10)
                }
                svg.endGroup()
            }
            svg.line(x1: zero, y1: top, x2: zero, y2: bottom, stroke: "#333333")
            svg.endGroup()
            y0 += h
        }
        if groups.count > 1 {
            svg.beginGroup([("class", "legend")])
            var x = 10.0
            for (i, g) in groups.enumerated() {
                svg.rect(x: x, y: height - 24, width: 12, height: 12, fill: PlotPalette.color(i))
                svg.text(g, x: x + 17, y: height - 14, size: 12)
                x += 30 + Double(g.count) * 7
            }
            svg.endGroup()
        }
        return svg
    }
}
