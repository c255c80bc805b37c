import ArgumentParser
import Foundation
import TMFData

/// `tmf synth OUT`: writes a deterministic synthetic shop (DESIGN.md §2, §3).
struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a synthetic shop (items with images and text, view/cart/purchase histories)."
    )

    @Argument(help: "Output folder (must not exist or be empty).")
    var out: String

    @Option(help: "Number of users.")
    var users: Int = 1000

    @Option(help: "Number of items (at least 11).")
    var items: Int = 500

    @Option(help: "Seed: equal seeds give byte-identical shops.")
    var seed: UInt64 = 1

    @Option(help: "Image side in pixels.")
    var imageSize: Int = 32

    @Flag(help: "Print nothing.")
    var quiet = false

    func run() throws {
        do {
            let start = Date()
            let report = try synthesizeShop(
                to: URL(fileURLWithPath: out),
                options: SynthOptions(users: users, items: items, seed: seed, imageSize: imageSize))
            if !quiet {
                printError(String(format: "tmf: wrote %@: %d items, %d users, %d events in %.1f s",
                                  out, report.items, report.users, report.events, Date().timeIntervalSince(start)))
            }
        } catch {
            printError("tmf: \(describe(error))")
            throw ExitCode(1)
        }
    }
}
