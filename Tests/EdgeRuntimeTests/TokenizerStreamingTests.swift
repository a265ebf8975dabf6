import Foundation
import XCTest
@testable import EdgeRuntime

final class TokenizerStreamingTests: XCTestCase {
    private let texts = ["Emoji: 😀🎉👍 👨‍👩‍👧 and 中文分词测试，你好世界！", "Привет, мир! Ça va? naïve café",
                         "<|im_start|>assistant\nSure — ∑ᵢ xᵢ² ≤ ∞<|im_end|>", "plain ascii text, nothing special"]

    /// Fed one id at a time, the detokenizer emits exactly the full decode, and never a replacement
    /// character for a multi-byte character still being spelled out byte by byte.
    private func check(_ tok: Tokenizer, skipSpecial: Bool) {
        for text in texts {
            let ids = tok.encode(text)
            var stream = StreamingDetokenizer(tokenizer: tok, skipSpecial: skipSpecial)
            var pieces = [String]()
            for id in ids { pieces.append(stream.feed(id)) }
            pieces.append(stream.flush())
            XCTAssertEqual(pieces.joined(), tok.decode(ids, skipSpecial: skipSpecial), text)
            for p in pieces { XCTAssertFalse(p.unicodeScalars.contains("\u{FFFD}"), "half a character emitted for \(text.debugDescription): \(pieces)") }
            XCTAssertGreaterThan(pieces.filter { !$0.isEmpty }.count, 3, "text arrives incrementally")
        }
    }

    func testByteLevelStreaming() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        check(tok, skipSpecial: true)
        check(tok, skipSpecial: false)
        // A lone first byte of "😀" is held back, then the rest completes it.
        let emoji = tok.encode("😀")
        XCTAssertGreaterThan(emoji.count, 1)
        var s = StreamingDetokenizer(tokenizer: tok)
        XCTAssertEqual(s.feed(emoji[0]), "")
        XCTAssertEqual(emoji.dropFirst().map { s.feed($0) }.joined() + s.flush(), "😀")
    }

    func testSentencePieceStreaming() throws {
        let tok = try TokenizerFixtures.spLlama.get()
        check(tok, skipSpecial: true)
        // The leading-space strip of the first token must not eat the space of later words.
        var s = StreamingDetokenizer(tokenizer: tok)
        let ids = tok.encode("Hello world again")
        XCTAssertEqual(ids.map { s.feed($0) }.joined() + s.flush(), "Hello world again")
    }

    func testUnfinishedCharacterComesOutAtFlush() throws {
        let tok = try TokenizerFixtures.smolLM2.get()
        var s = StreamingDetokenizer(tokenizer: tok)
        XCTAssertEqual(s.feed(tok.encode("ok")[0]), "ok")
        XCTAssertEqual(s.feed(tok.encode("😀")[0]), "")
        XCTAssertEqual(s.flush(), "\u{FFFD}")
    }
}
