import ArgumentParser
import Foundation
import TMFTrainer

/// `tmf plot`: redraws a model folder's training curves (`training.png`) from its `metrics.jsonl`.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Redraw MODEL/training.png from MODEL/metrics.jsonl.",
        discussion: "Panels for the stages that logged records: pretraining loss, MBHT loss and valid HitRate@1 per epoch, "
            + "LLM loss per task level, learning rate and validation HitRate@1(all) / ValidRatio. Prints the path written."
    )

    @Argument(help: "Model folder.")
    var model: String = "tmf-model"

    func run() throws {
        try reportingErrors {
            let url = try TrainingPlot.write(modelFolder: URL(fileURLWithPath: model))
            print(url.path)
        }
    }
}

/// Draws `folder/training.png` at the end of `tmf train`. A folder without training records yet
/// gets none; any other failure is one warning line, never a failed training.
func drawTrainingPlot(in folder: URL) {
    do {
        try TrainingPlot.write(modelFolder: folder)
    } catch MetricsError.missingFile, MetricsError.noRecords {
        return
    } catch {
        printError("tmf: warning: training.png not drawn: \(error.localizedDescription)")
    }
}
