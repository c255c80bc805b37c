import Foundation
import XCTest
@testable import TMFTrainer
import TMFImage
import TMFTestSupport

/// `TrainingPlot` drawing metrics records of every stage into a PNG that is decoded back and
/// inspected panel by panel, and its errors for bad metrics files.
final class TrainingPlotTests: XCTestCase {
    /// Every series of every panel is drawn, in its own colour, inside its panel's frame.
    func testPlotOfAllStagesHasEachSeriesInItsPanel() throws {
        let dir = try scratchFolder()
        try writeAllStages(to: MetricsLog(folder: dir))
        let url = try TrainingPlot.write(modelFolder: dir)
        XCTAssertEqual(url, dir.appendingPathComponent("training.png"))
        let image = try RGBImage(contentsOfPNG: url)
        XCTAssertEqual(image.width, 1000)
        XCTAssertEqual(image.height, 700)

        let plot = try TrainingPlot(metricsFile: dir.appendingPathComponent("metrics.jsonl"))
        XCTAssertEqual(plot.panels.map(\.title), ["Pretraining loss", "MBHT loss", "MBHT valid HitRate@1", "LLM loss",
                                                  "LLM learning rate", "LLM validation"])
        XCTAssertEqual(plot.panels[3].series.map(\.name), ["easy", "medium", "hard", "smoothed"])
        XCTAssertEqual(plot.panels[5].series.map(\.name), ["HitRate@1(all)", "ValidRatio"])
        XCTAssertEqual(plot.render(), image, "the file is the rendering, and rendering is deterministic")

        let areas = plot.plotAreas()
        func count(_ color: PlotColor, in area: PixelRect) -> Int {
            var n = 0
            for y in area.y..<(area.y + area.height) {
                for x in area.x..<(area.x + area.width) {
                    let i = 3 * (y * image.width + x)
                    if image.pixels[i] == color.red && image.pixels[i + 1] == color.green && image.pixels[i + 2] == color.blue { n += 1 }
                }
            }
            return n
        }
        for (panel, area) in zip(plot.panels, areas) {
            XCTAssertTrue(area.x >= 0 && area.y >= 0 && area.x + area.width <= 1000 && area.y + area.height <= 700)
            for s in panel.series {
                XCTAssertGreaterThan(count(s.color, in: area), 20, "\(s.name) in \(panel.title)")
                for (other, otherArea) in zip(plot.panels, areas) where other.title != panel.title {
                    if !other.series.contains(where: { $0.color == s.color }) {
                        XCTAssertEqual(count(s.color, in: otherArea), 0, "\(s.name) of \(panel.title) drawn in \(other.title)")
                    }
                }
            }
        }
        // The panels do not overlap, and the background is white.
        for (i, a) in areas.enumerated() {
            for b in areas[(i + 1)...] {
                XCTAssertTrue(a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y)
            }
        }
        XCTAssertEqual(Array(image.pixels[0..<3]), [255, 255, 255])
    }

    /// Only the stages present get panels; a stage trained again from step 1 shows its last run.
    func testPanelsOfPresentStagesAndTheLastRun() throws {
        let dir = try scratchFolder()
        let log = MetricsLog(folder: dir)
        for step in [1, 2, 3, 4, 5, 1, 2, 3] {
            try log.append(TrainingEvent.step(StepReport(step: step, level: .easy, loss: Float(step), learningRate: 1e-3,
                                                         tokensPerSecond: 1, answerTokens: 1)))
        }
        let plot = try TrainingPlot(metricsFile: log.url)
        XCTAssertEqual(plot.panels.map(\.title), ["LLM loss", "LLM learning rate"])
        XCTAssertEqual(plot.panels[0].series.first?.x, [1, 2, 3])
        let image = plot.render(width: 640, height: 360)
        XCTAssertEqual(image.width, 640)
        XCTAssertEqual(image.height, 360)

        // Lines of older runs, without a stage, are LLM records.
        try Data(#"{"level":"hard","loss":2.5,"lr":0.001,"step":7}"#.utf8).write(to: log.url)
        XCTAssertEqual(try TrainingPlot(metricsFile: log.url).panels[0].series.map(\.name), ["hard"],
                       "no smoothed line below 60 points")
    }

    func testBadMetricsFilesAreTypedErrorsNamingFileAndLine() throws {
        let dir = try scratchFolder()
        let url = dir.appendingPathComponent("metrics.jsonl")
        func assertError(_ expected: MetricsError, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try TrainingPlot.write(modelFolder: dir), file: file, line: line) { error in
                XCTAssertEqual(error as? MetricsError, expected, file: file, line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("training.png").path),
                           "nothing written", file: file, line: line)
        }
        assertError(.missingFile(path: url.path))
        try Data().write(to: url)
        assertError(.noRecords(path: url.path))
        let good = #"{"stage":"graph","epoch":1,"loss":2}"#
        try Data("\(good)\n\n{\"stage\":\"llm\",\"step\":3,\"loss\":\n".utf8).write(to: url)
        assertError(.malformedLine(path: url.path, line: 3, reason: "not a JSON object"))
        try Data("\(good)\n{\"stage\":\"pretrain\",\"loss\":2}\n".utf8).write(to: url)
        assertError(.malformedLine(path: url.path, line: 2, reason: "a pretrain record without \"step\""))
        try Data("\(good)\n{\"stage\":\"graph\",\"epoch\":2}\n".utf8).write(to: url)
        assertError(.malformedLine(path: url.path, line: 2, reason: "a graph record without \"loss\""))
        try Data("{\"stage\":7,\"step\":1,\"loss\":2}\n".utf8).write(to: url)
        assertError(.malformedLine(path: url.path, line: 1, reason: "\"stage\" is not a string"))
        // A record of a stage this version does not know is skipped.
        try Data("{\"stage\":\"distill\",\"step\":1,\"loss\":2}\n".utf8).write(to: url)
        assertError(.noRecords(path: url.path))

        let message = MetricsError.malformedLine(path: url.path, line: 3, reason: "not a JSON object").localizedDescription
        XCTAssertTrue(message.contains(url.path) && message.contains("line 3"), message)
        let missing = dir.appendingPathComponent("nothing")
        XCTAssertThrowsError(try TrainingPlot.write(modelFolder: missing)) {
            XCTAssertEqual($0 as? MetricsError, .noModelFolder(path: missing.path))
        }
    }
}
