import Foundation

/// Encode/decode throughput of a tokenizer on a text, for `edgectl bench` style reporting. Numbers
/// come from this function run in a release build, never from unit-test timings.
public enum TokenizerBenchmark {
    public struct Result: Sendable, CustomStringConvertible {
        public let characters: Int
        public let tokens: Int
        /// Best of the repetitions, cold word cache excluded (the first pass fills it).
        public let encodeTokensPerSecond: Double
        public let coldEncodeTokensPerSecond: Double
        public let decodeTokensPerSecond: Double

        public var description: String {
            String(format: "chars=%d tokens=%d encode_cold=%.0f tok/s encode_warm=%.0f tok/s decode=%.0f tok/s",
                   characters, tokens, coldEncodeTokensPerSecond, encodeTokensPerSecond, decodeTokensPerSecond)
        }
    }

    public static func run(_ tokenizer: Tokenizer, text: String, repetitions: Int = 5) -> Result {
        func seconds(_ body: () -> Void) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        var ids = [Int32]()
        let cold = seconds { ids = tokenizer.encode(text) }
        var warm = Double.infinity, decode = Double.infinity
        for _ in 0..<max(1, repetitions) {
            warm = min(warm, seconds { ids = tokenizer.encode(text) })
            decode = min(decode, seconds { _ = tokenizer.decode(ids) })
        }
        let n = Double(ids.count)
        return Result(characters: text.count, tokens: ids.count, encodeTokensPerSecond: n / warm,
                      coldEncodeTokensPerSecond: n / cold, decodeTokensPerSecond: n / decode)
    }
}
