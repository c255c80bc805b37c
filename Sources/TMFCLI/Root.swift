import ArgumentParser
import Foundation

/// The `tmf` command: a root with one subcommand per task (DESIGN.md §2).
public struct TMFCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "tmf",
        abstract: "Train and serve a Triple Modality Fusion recommender on CPUs.",
        subcommands: [TrainCommand.self, EvalCommand.self, RecommendCommand.self, GenerateCommand.self, EmbedCommand.self,
                      PretrainCommand.self, SynthCommand.self, ImportCommand.self, BenchCommand.self,
                      PlotCommand.self]
    )

    public init() {}
}

/// Options shared by commands that run numeric work.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for OpenBLAS and the elementwise/row kernels (default: all cores; more than the cores are clamped to the cores; at most 1024).")
    var threads: Int?

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let threads, threads > CommandLimits.threads {
            throw refuseLimit("--threads \(threads) is more than the \(CommandLimits.threads) allowed; give at most the machine's cores (\(ProcessInfo.processInfo.activeProcessorCount) here)")
        }
    }
}

/// Writes one line to standard error.
func printError(_ message: String) {
    writeToStandardError(message + "\n")
}
