import Foundation
import XCTest
@testable import EdgeRuntime

/// The eval gate's held-out answer check: the JSON-with-fields and exact-match scores, the gate's
/// verdicts, the engine-backed greedy evaluator, and the `[finetune]` keys that configure them.
final class AnswerMetricTests: XCTestCase {
    func testScoresJSONFieldsAndExactMatch() {
        var s = AnswerScore()
        let ref = #"{"renewal_date": "2026-07-02", "notice_days": 30}"#
        s.add(answer: ref, reference: ref)
        s.add(answer: #" {"renewal_date": "2026-07-03", "notice_days": 30} "#, reference: ref)   // right fields, wrong value
        s.add(answer: #"{"renewal_date": "2026-07-02"}"#, reference: ref)                         // a field missing
        s.add(answer: #"{"renewal_date": "2026-07-02", "notice_days": 30"#, reference: ref)       // truncated JSON
        s.add(answer: #"The renewal date is July 2."#, reference: ref)
        s.add(answer: #"{"key": {"key": 1}}"#, reference: ref)
        s.add(answer: "blue", reference: "blue")                                                   // not JSON: exact only
        XCTAssertEqual(s, AnswerScore(prompts: 7, exact: 2, jsonWithFields: 2))
        XCTAssertEqual(s.rate(.jsonFields), 2.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(s.rate(.exactMatch), 2.0 / 7, accuracy: 1e-12)
        XCTAssertEqual(AnswerScore().rate(.jsonFields), 0)
    }

    func testGateNeedsTheAnswerRateWhenConfigured() {
        let gate = EvalGate(relativeMargin: 0.02, answerMetric: .jsonFields, minimumAnswerRate: 0.75)
        XCTAssertEqual(gate.decide(newLoss: 0.1, previousLoss: 1, answers: AnswerScore(prompts: 8, exact: 0, jsonWithFields: 6)), .promote)
        guard case .reject(let why) = gate.decide(newLoss: 0.1, previousLoss: 1, answers: AnswerScore(prompts: 8, exact: 8, jsonWithFields: 5)) else {
            return XCTFail("5/8 is below 75%")
        }
        XCTAssertTrue(why.contains("5/8 valid JSON") && why.contains("75%"), why)
        XCTAssertNotEqual(gate.decide(newLoss: 0.1, previousLoss: 1, answers: nil), .promote, "a configured metric that was not scored cannot pass")
        XCTAssertNotEqual(gate.decide(newLoss: 0.99, previousLoss: 1, answers: AnswerScore(prompts: 8, exact: 8, jsonWithFields: 8)), .promote,
                          "the loss margin still applies")
        XCTAssertEqual(EvalGate().decide(newLoss: 0.5, previousLoss: 1, answers: nil), .promote, "loss only by default")
    }

    /// The evaluator's greedy answers are the engine's: a reference made of the model's own greedy
    /// continuation scores as exact, any other reference does not.
    func testEvaluatorScoresTheEnginesGreedyAnswer() throws {
        let dir = try FineTuningTestRig.model()
        let evaluator = try HeldOutAnswerEvaluator(modelDirectory: dir)
        let prompt = evaluator.model.tokenizer.encode("colour of item 3?", addSpecial: true, parseSpecial: false)
        let runner = SequenceRunner(model: evaluator.llama, capacity: prompt.count + 16)
        let greedy = try runner.greedy(after: try runner.feed(prompt), count: 6, stop: evaluator.model.endOfGeneration)
        XCTAssertEqual(greedy.count, 6, "the untrained tiny model does not stop within 6 tokens")
        // slack 0: the budget is the reference's length, so the answer is exactly the greedy tokens.
        let same = TrainingExample(line: 1, promptIds: prompt, answerIds: greedy)
        let otherText = "\(evaluator.model.tokenizer.decode(greedy, skipSpecial: true)) and more"
        let other = TrainingExample(line: 2, promptIds: prompt, answerIds: evaluator.model.tokenizer.encode(otherText, addSpecial: false, parseSpecial: false))
        let (score, answers) = try evaluator.score(lora: nil, examples: [same, other], slack: 0)
        XCTAssertEqual(answers.count, 2)
        XCTAssertEqual(answers[0], evaluator.model.tokenizer.decode(greedy, skipSpecial: true))
        XCTAssertEqual(score.prompts, 2)
        XCTAssertEqual(score.exact, 1)
        // Interrupted between tokens: abandoned with the trainer's error.
        XCTAssertThrowsError(try evaluator.score(lora: nil, examples: [same], interruption: { true })) { e in
            XCTAssertEqual(e as? TrainingError, .interrupted)
        }
    }

    func testFinetuneConfigKeysAreValidated() throws {
        let c = try DaemonConfiguration.parse("""
            [finetune]
            state_dir = "/srv/edge-state"
            checkpoint_every = 5
            eval_margin = 0.05
            eval_answers = "json_fields"
            min_answer_rate = 0.8
            """, path: "c.toml")
        XCTAssertEqual(c.finetune.stateDir, "/srv/edge-state")
        let s = try FineTuningJobManager.settings(c.finetune)
        XCTAssertEqual(s.checkpointEvery, 5)
        XCTAssertEqual(s.gate, EvalGate(relativeMargin: 0.05, answerMetric: .jsonFields, minimumAnswerRate: 0.8))
        for (bad, key) in [("state_dir = \"relative/dir\"", "state_dir"), ("eval_answers = \"bleu\"", "eval_answers"),
                           ("min_answer_rate = 1.5", "min_answer_rate"), ("checkpoint_every = 0", "checkpoint_every"), ("eval_margin = -1", "eval_margin")] {
            XCTAssertThrowsError(try DaemonConfiguration.parse("[finetune]\n\(bad)\n", path: "c.toml")) { e in
                XCTAssertTrue("\(e)".contains("[finetune] \(key)"), "\(e)")
            }
        }
        // Start-up check of the directory itself: a file in its place is refused with the key named.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("edge-state-file-\(UUID().uuidString)").path
        try Data().write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        XCTAssertThrowsError(try FineTuningJobManager.validateStateDirectory(file, configured: true)) { e in
            XCTAssertTrue("\(e)".contains("[finetune] state_dir") && "\(e)".contains("not a directory"), "\(e)")
        }
        let fresh = FileManager.default.temporaryDirectory.appendingPathComponent("edge-state-\(UUID().uuidString)/a/b").path
        defer { try? FileManager.default.removeItem(atPath: (fresh as NSString).deletingLastPathComponent) }
        XCTAssertNoThrow(try FineTuningJobManager.validateStateDirectory(fresh, configured: true))
    }
}
