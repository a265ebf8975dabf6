import Foundation
import XCTest
@testable import EdgeRuntime

/// A stand-in formatter: one token per UTF-8 byte, a fixed template. Enough to test parsing,
/// labelling, limits and splitting independently of the real tokenizer.
struct ByteFormatter: TrainingPromptFormatter {
    let padId: Int32 = 0
    func promptIds(_ messages: [TrainingMessage]) throws -> [Int32] {
        messages.flatMap { Array("<\($0.role)>\($0.content)".utf8).map { Int32($0) } } + [1]
    }
    func answerIds(_ content: String) throws -> [Int32] { Array(content.utf8).map { Int32($0) } + [2] }
}

final class TrainingDatasetTests: XCTestCase {
    func testBadRowsAreReportedByLineNumber() throws {
        var lines: [String] = [
            #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}"#,   // 1 ok
            #"{"messages": [{"role": "user", "content": "hi"}]}"#,                                            // 2 no answer
            #"{"messages": [{"content": "hi"}, {"role": "assistant", "content": "ok"}]}"#,                    // 3 no role
            #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}"#,    // 4 empty
            #"{"messages": [{"role": "user", "content": "hi"}, "#,                                            // 5 bad JSON
            "",                                                                                                // 6 blank: fine
            #"{"instruction": "Add", "input": "1 2", "output": "3"}"#,                                        // 7 ok
            #"{"instruction": "Add", "input": 5, "output": "3"}"#,                                            // 8 input type
            #"{"prompt": "x"}"#,                                                                              // 9 unknown shape
            #"{"messages": [{"role": "user", "content": "\#(String(repeating: "long ", count: 40))"}, {"role": "assistant", "content": "ok"}]}"#, // 10 too long
            #"{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "ok"}]}"#,  // 11 role
        ]
        var data = Data(lines.joined(separator: "\n").utf8)
        data.append(contentsOf: [0x0A, 0xFF, 0xFE, 0x0A])  // 12: invalid UTF-8
        lines.append("")
        XCTAssertThrowsError(try TrainingDataset(data: data, file: "train.jsonl", formatter: ByteFormatter(), maxLength: 64)) { error in
            guard case let TrainingError.badRows(file, rows) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(file, "train.jsonl")
            XCTAssertEqual(rows.map(\.line), [2, 3, 4, 5, 8, 9, 10, 11, 12])
            XCTAssertTrue(rows[0].reason.contains("assistant"), rows[0].reason)
            XCTAssertTrue(rows[1].reason.contains("role"), rows[1].reason)
            XCTAssertTrue(rows[3].reason.contains("JSON"), rows[3].reason)
            XCTAssertTrue(rows[6].reason.contains("too long"), rows[6].reason)
            XCTAssertTrue(rows[8].reason.contains("UTF-8"), rows[8].reason)
            XCTAssertTrue("\(error)".contains("line 10"))
        }
        let lenient = try TrainingDataset(data: data, file: "train.jsonl", formatter: ByteFormatter(), maxLength: 64, skipBadRows: true)
        XCTAssertEqual(lenient.examples.map(\.line), [1, 7])
        XCTAssertEqual(lenient.skipped.count, 9)
    }

    func testLabelsCoverTheAnswerOnlyAndBatchesPadRight() throws {
        let text = """
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "ab"}, {"role": "assistant", "content": "xy"}]}
        {"instruction": "Do", "input": "", "output": "z"}
        """
        let ds = try TrainingDataset(data: Data(text.utf8), file: "t.jsonl", formatter: ByteFormatter(), maxLength: 100)
        let e = ds.examples[0]
        XCTAssertEqual(e.promptIds, try ByteFormatter().promptIds([.init(role: "system", content: "S"), .init(role: "user", content: "ab")]))
        XCTAssertEqual(e.answerIds, [120, 121, 2])
        let seq = e.sequence
        XCTAssertEqual(seq.labels.filter { $0 != -100 }, [120, 121, 2])
        XCTAssertEqual(ds.examples[1].promptIds, try ByteFormatter().promptIds([.init(role: "user", content: "Do")]))
        let batches = try ds.batches(batchSize: 2, padId: 0)
        XCTAssertEqual(batches.count, 1)
        let b = batches[0]
        XCTAssertEqual(b.seqLen, e.tokenCount)
        XCTAssertEqual(b.validLengths, [e.tokenCount, ds.examples[1].tokenCount])
        // padding: id 0, label -100
        XCTAssertEqual(b.inputIds[b.seqLen + ds.examples[1].tokenCount], 0)
        XCTAssertEqual(b.labels[2 * b.seqLen - 1], -100)
        XCTAssertEqual(b.supervisedCount, 3 + 2)
    }

    func testHeldOutSplitIsSeededAndTooSmallIsRefused() throws {
        let rows = (0..<20).map { #"{"instruction": "q\#($0)", "output": "a\#($0)"}"# }.joined(separator: "\n")
        let ds = try TrainingDataset(data: Data(rows.utf8), file: "d.jsonl", formatter: ByteFormatter(), maxLength: 100)
        let (t1, h1) = try ds.split(heldOutFraction: 0.1, seed: 7, minimumTrain: 4)
        let (t2, h2) = try ds.split(heldOutFraction: 0.1, seed: 7, minimumTrain: 4)
        XCTAssertEqual(h1.examples.count, 2)
        XCTAssertEqual(t1.examples.count, 18)
        XCTAssertEqual(h1.examples, h2.examples)
        XCTAssertEqual(t1.examples, t2.examples)
        XCTAssertTrue(Set(h1.examples.map(\.line)).isDisjoint(with: t1.examples.map(\.line)))
        let (_, h3) = try ds.split(heldOutFraction: 0.1, seed: 8, minimumTrain: 4)
        XCTAssertEqual(h3.examples.count, 2)
        let small = TrainingDataset(file: "s.jsonl", examples: Array(ds.examples.prefix(3)))
        XCTAssertThrowsError(try small.split(heldOutFraction: 0.2, seed: 1, minimumTrain: 4)) { error in
            guard case TrainingError.datasetTooSmall = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("s.jsonl"))
        }
    }
}
