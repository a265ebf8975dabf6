/// Why a `--plot FILE.svg` could not be drawn or written; each description says what to change.
enum PlotError: Error, CustomStringConvertible, Equatable {
    case unwritable(path: String, reason: String)
    case nothingToPlot(what: String)
    case notSVG(path: String)

    var description: String {
        switch self {
        case .unwritable(let path, let reason):
            return "cannot write the plot to \(path) (\(reason)): give --plot a file in a writable directory"
        case .nothingToPlot(let what):
            return "there is nothing to plot: \(what)"
        case .notSVG(let path):
            return "--plot writes SVG: give a file name ending in .svg, not '\(path)'"
        }
    }

    /// Refuses paths that are not `.svg` before any work is done.
    static func checkPath(_ path: String?) throws(PlotError) {
        guard let path else { return }
        guard path.lowercased().hasSuffix(".svg") else { throw .notSVG(path: path) }
    }
}
