import Foundation

/// A linear axis over [lower, upper] with "nice" tick values (1, 2 or 5 × 10ⁿ apart), as plotting
/// libraries choose them, mapped onto a pixel range.
struct PlotAxis {
    let lower: Double
    let upper: Double
    let ticks: [Double]

    /// Covers `values` (with `includeZero`, also 0) using about `tickCount` ticks.
    init(covering values: [Double], includeZero: Bool = false, tickCount: Int = 5) {
        var lo = values.filter(\.isFinite).min() ?? 0
        var hi = values.filter(\.isFinite).max() ?? 1
        if includeZero { lo = min(lo, 0); hi = max(hi, 0) }
        if hi - lo < 1e-12 {
            let pad = Swift.abs(hi) > 0 ? Swift.abs(hi) * 0.1 : 1
            lo -= pad
            hi += pad
        }
        let step = Self.niceStep((hi - lo) / Double(max(1, tickCount)))
        lower = (lo / step).rounded(.down) * step
        upper = (hi / step).rounded(.up) * step
        var t: [Double] = []
        var v = lower
        while v <= upper + step * 1e-9 {
            t.append(Swift.abs(v) < step * 1e-9 ? 0 : v)
            v += step
        }
        ticks = t
    }

    /// `value` on a pixel range: `from` is where `lower` lands, `to` where `upper` does.
    func map(_ value: Double, from: Double, to: Double) -> Double {
        from + (value - lower) / (upper - lower) * (to - from)
    }

    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let magnitude = pow(10, floor(log10(raw)))
        let f = raw / magnitude
        let nice: Double = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10
        return nice * magnitude
    }

    /// A tick label short enough for an axis: 3 significant digits, k/M for large values.
    static func label(_ v: Double) -> String {
        let a = Swift.abs(v)
        if a >= 1e6 { return String(format: "%.3g", v / 1e6) + "M" }
        if a >= 1e4 { return String(format: "%.3g", v / 1e3) + "k" }
        if a == 0 { return "0" }
        return String(format: a >= 1 ? "%.4g" : "%.3g", v)
    }
}

/// The colours series are drawn in (a colour-blind-safe palette, Okabe–Ito).
enum PlotPalette {
    static let colors = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
    static func color(_ i: Int) -> String { colors[i % colors.count] }
}
