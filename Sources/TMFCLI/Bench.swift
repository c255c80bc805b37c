import ArgumentParser
import Foundation
import TMFTensor

/// `tmf bench [what]`: speed figures beside the machine's own limits.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure speed against this machine's sgemm peak and memory bandwidth (release builds)."
    )

    @Argument(help: "What to measure: ops.")
    var what: String = "ops"

    @OptionGroup var compute: ComputeOptions

    func run() throws {
        throw ValidationError("bench '\(what)' is not implemented yet")
    }
}
