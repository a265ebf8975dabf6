import EdgeRuntime
import Foundation

/// Training-loss charts: loss per optimiser step as a line, held-out (eval) loss as markers.
struct LossPlot {
    var title: String
    var trainLoss: [(x: Double, y: Double)] = []
    var heldOutLoss: [(x: Double, y: Double)] = []

    /// From a fine-tuning job's events: metrics events carry `step` with `train_loss` or
    /// `valid_loss` (the eval before the first step and after the last).
    init(job: String, events: [FineTuningEvent]) {
        title = "fine-tuning job \(job)"
        for e in events {
            guard let d = e.data, let step = d["step"] else { continue }
            if let l = d["train_loss"] { trainLoss.append((step, l)) }
            if let l = d["valid_loss"] { heldOutLoss.append((step, l)) }
        }
    }

    init(title: String) { self.title = title }

    var chart: LineChart {
        LineChart(title: title, xLabel: "optimiser step", yLabel: "loss (cross-entropy, nats/token)", series: [
            .init(name: "train loss", points: trainLoss),
            .init(name: "held-out loss", points: heldOutLoss, line: false, markers: true),
        ])
    }

    func write(to path: String) throws {
        try chart.render().write(to: path)
        FileHandle.standardError.write(Data("plot written to \(path)\n".utf8))
    }
}
