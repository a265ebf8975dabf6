import AdapterCache
import Foundation
import XCTest

/// The reference logits of Tests/Fixtures/logits (transformers f32 over bnb-dequantised NF4
/// weights), one entry per prompt.
struct LogitsFixture {
    struct Prompt {
        var name: String
        var inputIDs: [Int32]
        /// [n][10], largest first.
        var top10IDs: [[Int32]]
        var top10Logits: [[Float]]
        var lastLogits: [Float]
        var greedyIDs: [Int32]
        /// [32][10]: step j is the distribution after greedyIDs[j] (it predicts greedyIDs[j + 1]).
        var greedyTop10IDs: [[Int32]]
        var greedyTop10Logits: [[Float]]
    }

    var prompts: [Prompt]

    static var directory: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/logits")
    }

    /// `file`: nf4.safetensors (base) or adapter_a.safetensors.
    init(file: String) throws {
        let dir = Self.directory
        let promptsJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("prompts.json"))) as! [[String: Any]]
        let st = try SafetensorsFile(path: dir.appendingPathComponent(file).path)
        func ints(_ name: String) throws -> [Int32] {
            let info = try st.info(name)
            let raw = try st.bytes(of: name)
            precondition(info.dtype == .i64, "\(name) must be I64")
            return (0..<info.elementCount).map { Int32(truncatingIfNeeded: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        }
        func rows<T>(_ flat: [T], _ width: Int) -> [[T]] { stride(from: 0, to: flat.count, by: width).map { Array(flat[$0..<($0 + width)]) } }
        prompts = try promptsJSON.map { p in
            let name = p["name"] as! String
            return Prompt(
                name: name, inputIDs: try ints("\(name).input_ids"), top10IDs: rows(try ints("\(name).top10_ids"), 10),
                top10Logits: rows(try st.floats("\(name).top10_logits"), 10), lastLogits: try st.floats("\(name).last_logits"),
                greedyIDs: try ints("\(name).greedy_ids"), greedyTop10IDs: rows(try ints("\(name).greedy_top10_ids"), 10),
                greedyTop10Logits: rows(try st.floats("\(name).greedy_top10_logits"), 10))
        }
    }
}

/// Agreement statistics of our logits against the reference.
struct LogitsAgreement {
    var positions = 0
    var top1Matches = 0
    var klSum = 0.0
    var klCount = 0
    var worstKL = 0.0

    var top1Rate: Double { positions == 0 ? 0 : Double(top1Matches) / Double(positions) }
    var meanKL: Double { klCount == 0 ? 0 : klSum / Double(klCount) }

    /// A position where the reference gives only its top-10: top-1 agreement and the KL of the two
    /// distributions renormalised over the reference's 10 tokens.
    mutating func add(ours: UnsafeBufferPointer<Float>, refIDs: [Int32], refLogits: [Float]) {
        positions += 1
        var best = 0
        for i in 0..<ours.count where ours[i] > ours[best] { best = i }
        if Int32(best) == refIDs[0] { top1Matches += 1 }
        let refMax = Double(refLogits.max()!)
        let refLSE = refMax + log(refLogits.reduce(0.0) { $0 + exp(Double($1) - refMax) })
        let ourVals = refIDs.map { Double(ours[Int($0)]) }
        let ourMax = ourVals.max()!
        let ourLSE = ourMax + log(ourVals.reduce(0.0) { $0 + exp($1 - ourMax) })
        var kl = 0.0
        for j in 0..<refIDs.count {
            let lp = Double(refLogits[j]) - refLSE
            kl += exp(lp) * (lp - (ourVals[j] - ourLSE))
        }
        addKL(kl)
    }

    /// The last position, where the reference has the full distribution.
    mutating func addFull(ours: UnsafeBufferPointer<Float>, ref: [Float]) {
        positions += 1
        var best = 0, refBest = 0
        for i in 0..<ours.count where ours[i] > ours[best] { best = i }
        for i in 0..<ref.count where ref[i] > ref[refBest] { refBest = i }
        if best == refBest { top1Matches += 1 }
        let refMax = Double(ref[refBest]), ourMax = Double(ours[best])
        let refLSE = refMax + log(ref.reduce(0.0) { $0 + exp(Double($1) - refMax) })
        var ourSum = 0.0
        for v in ours { ourSum += exp(Double(v) - ourMax) }
        let ourLSE = ourMax + log(ourSum)
        var kl = 0.0
        for i in 0..<ref.count {
            let lp = Double(ref[i]) - refLSE
            kl += exp(lp) * (lp - (Double(ours[i]) - ourLSE))
        }
        addKL(kl)
    }

    private mutating func addKL(_ kl: Double) {
        klSum += kl
        klCount += 1
        worstKL = max(worstKL, kl)
    }
}
