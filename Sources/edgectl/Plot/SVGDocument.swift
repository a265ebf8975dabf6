import Foundation

/// A minimal SVG 1.1 writer: shapes and text appended in paint order, attributes escaped, numbers
/// written with two decimals so the files diff cleanly. Coordinates are SVG user units (pixels),
/// origin top-left, y down. Value type; build one per picture on one thread.
struct SVGDocument {
    let width: Double
    let height: Double
    private var elements: [String] = []
    private var openGroups = 0

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// Starts a `<g>`; every shape until `endGroup()` belongs to it. `attributes` name a series
    /// (`data-series`) or a role (`class`) so readers and tests can find what was drawn.
    mutating func beginGroup(_ attributes: [(String, String)]) {
        elements.append("<g" + Self.attributes(attributes) + ">")
        openGroups += 1
    }

    mutating func endGroup() {
        precondition(openGroups > 0, "endGroup() without beginGroup()")
        elements.append("</g>")
        openGroups -= 1
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, extra: [(String, String)] = []) {
        elements.append("<rect" + Self.attributes([("x", Self.number(x)), ("y", Self.number(y)), ("width", Self.number(max(0, width))),
                                                   ("height", Self.number(max(0, height))), ("fill", fill)] + extra) + "/>")
    }

    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, strokeWidth: Double = 1, dashed: Bool = false) {
        var a = [("x1", Self.number(x1)), ("y1", Self.number(y1)), ("x2", Self.number(x2)), ("y2", Self.number(y2)),
                 ("stroke", stroke), ("stroke-width", Self.number(strokeWidth))]
        if dashed { a.append(("stroke-dasharray", "4 3")) }
        elements.append("<line" + Self.attributes(a) + "/>")
    }

    /// An open path through `points` (in drawing order).
    mutating func polyline(_ points: [(Double, Double)], stroke: String, strokeWidth: Double = 1.5) {
        guard !points.isEmpty else { return }
        let list = points.map { Self.number($0.0) + "," + Self.number($0.1) }.joined(separator: " ")
        elements.append("<polyline" + Self.attributes([("points", list), ("fill", "none"), ("stroke", stroke),
                                                       ("stroke-width", Self.number(strokeWidth)), ("stroke-linejoin", "round")]) + "/>")
    }

    mutating func circle(cx: Double, cy: Double, r: Double, fill: String, extra: [(String, String)] = []) {
        elements.append("<circle" + Self.attributes([("cx", Self.number(cx)), ("cy", Self.number(cy)), ("r", Self.number(r)), ("fill", fill)] + extra) + "/>")
    }

    enum Anchor: String { case start, middle, end }

    mutating func text(_ string: String, x: Double, y: Double, size: Double = 12, anchor: Anchor = .start, bold: Bool = false, rotate: Double? = nil) {
        var a = [("x", Self.number(x)), ("y", Self.number(y)), ("font-size", Self.number(size)), ("text-anchor", anchor.rawValue)]
        if bold { a.append(("font-weight", "bold")) }
        if let rotate { a.append(("transform", "rotate(\(Self.number(rotate)) \(Self.number(x)) \(Self.number(y)))")) }
        elements.append("<text" + Self.attributes(a) + ">" + Self.escape(string) + "</text>")
    }

    /// The whole document: XML declaration, `<svg>` with a white background, the elements.
    var text: String {
        precondition(openGroups == 0, "SVGDocument.text with \(openGroups) unclosed group(s)")
        let header = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            + "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(Self.number(width))\" height=\"\(Self.number(height))\" "
            + "viewBox=\"0 0 \(Self.number(width)) \(Self.number(height))\" font-family=\"sans-serif\">\n"
            + "<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        return header + elements.joined(separator: "\n") + "\n</svg>\n"
    }

    /// Writes the document to `path` through a temporary file and a rename, so a reader never sees
    /// half a picture.
    func write(to path: String) throws(PlotError) {
        let url = URL(fileURLWithPath: path)
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try Data(text.utf8).write(to: tmp)
            // rename(2) replaces an existing file atomically (FileManager's replaceItemAt does not
            // on Linux).
            guard rename(tmp.path, url.path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw .unwritable(path: path, reason: (error as NSError).localizedDescription)
        }
    }

    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for ch in s.unicodeScalars {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            // Control characters are not allowed in XML 1.0 at all.
            case _ where ch.value < 0x20 && ch != "\n" && ch != "\t": out += " "
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    static func number(_ v: Double) -> String {
        guard v.isFinite else { return "0" }
        let s = String(format: "%.2f", v)
        if s.hasSuffix(".00") { return String(s.dropLast(3)) }
        return s == "-0" ? "0" : s
    }

    private static func attributes(_ list: [(String, String)]) -> String {
        list.map { " \($0.0)=\"\(escape($0.1))\"" }.joined()
    }
}
