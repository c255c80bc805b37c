import Foundation
import XCTest
@testable import TMFTrainer
import TMFData
import TMFGraph
import TMFTestSupport

/// A fresh folder for a test's files (removed when the test process exits).
func scratchFolder() throws -> URL {
    let url = scratchURL("metrics")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Validation counts as `recommender.evaluate` returns them.
func evalMetrics(_ m: (examples: Int, valid: Int, correct: Int)) -> EvalMetrics {
    var e = EvalMetrics()
    e.examples = m.examples
    e.valid = m.valid
    e.correct = m.correct
    return e
}

/// A run of every stage: 40 pretraining steps with two held-out losses, 5 MBHT epochs, then 60
/// LLM steps (easy, then medium and hard mixed) with three validations.
func writeAllStages(to log: MetricsLog) throws {
    for step in 1...40 {
        try log.append(PretrainEvent.step(PretrainStepReport(step: step, loss: 6 - Float(step) * 0.1, learningRate: 1e-3,
                                                              gradientNorm: 1, tokensPerSecond: 1000)))
        if step % 20 == 0 { try log.append(PretrainEvent.evaluation(step: step, loss: 5.5 - Float(step) * 0.05)) }
    }
    try log.append(PretrainEvent.checkpoint(step: 40))  // not logged
    for epoch in 1...5 {
        try log.append(MBHTTrainingEvent.step(epoch: epoch, step: 1, stepsPerEpoch: 1, loss: 3))  // not logged
        try log.append(MBHTTrainingEvent.epochFinished(epoch: epoch, meanLoss: 3 - Float(epoch) * 0.3,
                                                       validationHitRate: Double(epoch + 2) / 10, seconds: 1))
    }
    let levels: [TaskLevel] = [.medium, .hard, .hard]
    for step in 1...60 {
        let level = step <= 20 ? TaskLevel.easy : levels[step % 3]
        let report = StepReport(step: step, level: level, loss: 4 - Float(step) * 0.05 + Float(step % 3) * 0.2,
                                learningRate: 5e-3 * Float(min(step, 10)) / 10, tokensPerSecond: 500, answerTokens: 40)
        try log.append(TrainingEvent.step(report))
        if step % 20 == 0 {
            try log.append(TrainingEvent.validation(step: step, metrics: evalMetrics((10, 4 + step / 20, 1 + step / 20)),
                                                    improved: true))
        }
        try log.append(TrainingEvent.checkpoint(step: step))  // not logged
    }
}

/// `MetricsLog`: the records every stage writes to metrics.jsonl, read back, and trimmed on resume.
final class MetricsLogTests: XCTestCase {
    func testEveryRecordNamesItsStage() throws {
        let dir = try scratchFolder()
        let log = MetricsLog(folder: dir)
        try writeAllStages(to: log)
        let lines = try String(contentsOf: log.url, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 40 + 2 + 5 + 60 + 3)
        var stages: [String: Int] = [:]
        for line in lines {
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            stages[try XCTUnwrap(object["stage"] as? String), default: 0] += 1
        }
        XCTAssertEqual(stages, ["pretrain": 42, "graph": 5, "llm": 63])
        // Keys sorted, the step report's own keys kept, Floats with their short digits.
        XCTAssertEqual(lines[0], #"{"grad_norm":1,"loss":5.9,"lr":0.001,"stage":"pretrain","step":1,"tokens_per_s":1000}"#)
        XCTAssertTrue(lines.contains(#"{"HitRate@1":0.3,"epoch":1,"loss":2.7,"stage":"graph"}"#))
        XCTAssertTrue(lines.contains(#"{"Examples":10,"HitRate@1":0.4,"HitRate@1(all)":0.2,"ValidRatio":0.5,"kind":"validation","stage":"llm","step":20}"#))
        let llmStep = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[47].utf8)) as? [String: Any])
        XCTAssertEqual(Set(llmStep.keys), ["stage", "step", "level", "loss", "lr", "tokens_per_s", "answer_tokens"])
        XCTAssertEqual(llmStep["level"] as? String, "easy")

        let records = try log.read()
        XCTAssertEqual(records.count, lines.count)
        XCTAssertEqual(records.filter { $0.stage == .pretrain && $0.kind == "validation" }.map { $0.numbers["step"] }, [20, 40])
        XCTAssertEqual(records.last, MetricsRecord(stage: .llm, kind: "validation",
                                                   numbers: ["step": 60, "Examples": 10, "HitRate@1": 4.0 / 7,
                                                             "ValidRatio": 0.7, "HitRate@1(all)": 0.4]))
    }

    /// Resuming drops only the LLM records after the checkpoint step (lines without a stage are
    /// LLM records); MBHT and pretraining records stay.
    func testResumeTrimKeepsOtherStages() throws {
        let dir = try scratchFolder()
        let lines = [
            #"{"stage":"pretrain","step":9,"loss":3}"#,
            #"{"stage":"graph","epoch":8,"loss":2}"#,
            #"{"level":"easy","loss":1,"lr":0.001,"step":2}"#,
            #"{"level":"easy","loss":1,"lr":0.001,"step":4}"#,
            #"{"stage":"llm","level":"easy","loss":1,"lr":0.001,"step":3}"#,
            #"{"stage":"llm","kind":"validation","step":3,"ValidRatio":1}"#,
            #"{"stage":"llm","level":"easy","loss":1,"lr":0.001,"step":5}"#,
            #"{"stage":"llm","kind":"validation","step":5,"ValidRatio":1}"#,
            #"{"stage":"llm","level":"easy","loss""#,
        ]
        try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("metrics.jsonl"))
        let s = try TinySetup()
        let trainer = try LLMTrainer(recommender: s.recommender, dataset: TinySetup.dataset, splits: s.splits,
                                     parameters: TrainingParameters(steps: 10), folder: dir)
        try trainer.trimMetrics(after: 3)
        let kept = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(kept, [lines[0], lines[1], lines[2], lines[4], lines[5]].joined(separator: "\n") + "\n")
    }
}
