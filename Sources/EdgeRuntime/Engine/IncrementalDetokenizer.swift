/// Turns generated token ids into text as they arrive, holding back bytes of an unfinished UTF-8
/// character. The tokenizer's `StreamingDetokenizer` conforms; the scheduler only needs this.
public protocol IncrementalDetokenizer {
    mutating func feed(_ id: Int32) -> String
    mutating func flush() -> String
}
