/// Finds stop strings in streamed text, across token boundaries: text that could be the start of
/// a stop string is held back until the next piece shows whether it is one. On a match everything
/// before the stop string is released and the stop string itself never is.
public struct StopStringMatcher: Sendable {
    public let stops: [String]
    public private(set) var stopped = false
    private var held = ""
    private let longest: Int

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
        longest = self.stops.map(\.count).max() ?? 0
    }

    /// Adds a piece of text; returns what may be shown now and whether a stop string was found.
    public mutating func push(_ piece: String) -> (text: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard longest > 0 else { return (piece, false) }
        let buffer = held + piece
        var earliest: String.Index?
        for s in stops {
            if let r = buffer.range(of: s), earliest == nil || r.lowerBound < earliest! { earliest = r.lowerBound }
        }
        if let cut = earliest {
            stopped = true
            held = ""
            return (String(buffer[..<cut]), true)
        }
        var keep = min(longest - 1, buffer.count)
        while keep > 0 {
            let tail = buffer.suffix(keep)
            if stops.contains(where: { $0.hasPrefix(tail) }) { break }
            keep -= 1
        }
        held = String(buffer.suffix(keep))
        return (String(buffer.dropLast(keep)), false)
    }

    /// The end of the stream: whatever was held back (it was not a stop string).
    public mutating func finish() -> String {
        defer { held = "" }
        return stopped ? "" : held
    }
}
