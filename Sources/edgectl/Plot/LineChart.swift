/// An x/y chart of one or more series — lines, markers or both — with axes, grid and a legend.
/// `edgectl finetune logs --plot` and `finetune run --plot` draw training loss per step as a line
/// and held-out (eval) loss as markers. Each series is one `<g data-series="NAME">` in the SVG.
struct LineChart {
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
        var line = true
        var markers = false
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series] = []

    var width = 760.0
    var height = 440.0

    func render() throws(PlotError) -> SVGDocument {
        let drawn = series.filter { !$0.points.isEmpty }
        guard !drawn.isEmpty else { throw .nothingToPlot(what: "\(title) has no data points yet") }
        let xs = drawn.flatMap { $0.points.map(\.x) }, ys = drawn.flatMap { $0.points.map(\.y) }
        let xAxis = PlotAxis(covering: xs), yAxis = PlotAxis(covering: ys)
        // Plot area in pixels: room on the left for tick labels, at the bottom for the x label.
        let left = 70.0, right = width - 20, top = 40.0, bottom = height - 70
        var svg = SVGDocument(width: width, height: height)
        svg.text(title, x: width / 2, y: 24, size: 15, anchor: .middle, bold: true)

        svg.beginGroup([("class", "axes")])
        for t in yAxis.ticks {
            let y = yAxis.map(t, from: bottom, to: top)
            svg.line(x1: left, y1: y, x2: right, y2: y, stroke: "#dddddd")
            svg.text(PlotAxis.label(t), x: left - 6, y: y + 4, size: 11, anchor: .end)
        }
        for t in xAxis.ticks {
            let x = xAxis.map(t, from: left, to: right)
            svg.line(x1: x, y1: bottom, x2: x, y2: bottom + 4, stroke: "#333333")
            svg.text(PlotAxis.label(t), x: x, y: bottom + 17, size: 11, anchor: .middle)
        }
        svg.line(x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#333333")
        svg.line(x1: left, y1: top, x2: left, y2: bottom, stroke: "#333333")
        svg.text(xLabel, x: (left + right) / 2, y: bottom + 36, size: 12, anchor: .middle)
        svg.text(yLabel, x: 18, y: (top + bottom) / 2, size: 12, anchor: .middle, rotate: -90)
        svg.endGroup()

        for (i, s) in drawn.enumerated() {
            let color = PlotPalette.color(i)
            svg.beginGroup([("class", "series"), ("data-series", s.name)])
            let px = s.points.map { (xAxis.map($0.x, from: left, to: right), yAxis.map($0.y, from: bottom, to: top)) }
            if s.line { svg.polyline(px, stroke: color) }
            if s.markers || px.count == 1 {
                for (p, v) in zip(px, s.points) {
                    svg.circle(cx: p.0, cy: p.1, r: 4, fill: color, extra: [("data-x", SVGDocument.number(v.x)), ("data-y", "\(v.y)")])
                }
            }
            svg.endGroup()
        }

        // Legend along the bottom edge, one swatch per series.
        svg.beginGroup([("class", "legend")])
        var x = left
        for (i, s) in drawn.enumerated() {
            svg.rect(x: x, y: height - 22, width: 12, height: 12, fill: PlotPalette.color(i))
            svg.text(s.name, x: x + 17, y: height - 12, size: 12)
            x += 30 + Double(s.name.count) * 7
        }
        svg.endGroup()
        return svg
    }
}
