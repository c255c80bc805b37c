import ArgumentParser
import Foundation
import TMFData

/// `tmf import recbole DIR OUT`: converts other formats to the dataset folder of DESIGN.md §3.
struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Convert a dataset to tmf's format (recbole: RecBole atomic .inter + .item files)."
    )

    @Argument(help: "Source format: recbole.")
    var format: String

    @Argument(help: "Folder with the source files.")
    var source: String

    @Argument(help: "Output dataset folder (must not exist or be empty).")
    var out: String

    @Option(help: "Atomic-file base name (NAME.inter, NAME.item); default: the only .inter file.")
    var name: String?

    @Option(help: "Without a behavior field: ratings at or above this are rate_high (the target), below rate_low.")
    var ratingThreshold: Double = 4

    @Option(help: "Target behavior (default: buy/purchase/pay/order if present, else rate_high).")
    var target: String?

    @Flag(help: "Print nothing.")
    var quiet = false

    func run() throws {
        do {
            guard format == "recbole" else {
                throw DataError.invalidArgument("unknown import format '\(format)'; supported: recbole")
            }
            let r = try importRecBole(
                from: URL(fileURLWithPath: source), to: URL(fileURLWithPath: out),
                options: RecBoleImportOptions(name: name, ratingThreshold: ratingThreshold, target: target))
            if !quiet {
                var line = "tmf: wrote \(out): \(r.items) items, \(r.events) events, behaviors \(r.behaviors.joined(separator: ", ")) (target \(r.target))"
                if r.droppedUnknownItems > 0 { line += "; dropped \(r.droppedUnknownItems) interactions with items missing from .item" }
                if r.renamedTitles > 0 { line += "; \(r.renamedTitles) duplicate titles got their item id appended" }
                printError(line)
            }
        } catch {
            printError("tmf: \(describe(error))")
            throw ExitCode(1)
        }
    }
}
