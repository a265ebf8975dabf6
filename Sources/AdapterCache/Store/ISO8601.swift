import Foundation

/// Timestamps in manifests, indexes and listings: ISO 8601 UTC with milliseconds when written, and
/// read with or without fractional seconds (hand-written indexes usually have none).
enum ISO8601 {
    static func string(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    /// The date, or the distant past for an unreadable string (sorts oldest).
    static func parse(_ s: String) -> Date {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s) ?? .distantPast
    }
}
