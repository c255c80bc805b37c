import ArgumentParser
import Foundation
import TMFTensor
import TMFTrainer

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

    /// Leaves an MPI job at a normal exit (nothing without one).
    public static func finish() { ProcessGroup.finish() }
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

/// `--dtype`, for commands that load a Llama or CLIP.
struct WeightOptions: ParsableArguments {
    @Option(help: "How to hold the frozen matrices of the LLM (tmf embed, bench clip: of CLIP): bf16, f16 or f32 (default: as the checkpoint stores them; 16-bit checkpoints are used in place, memory-mapped). Item features are encoded by CLIP as its checkpoint stores it.")
    var dtype: String?

    /// The parsed value (nil: the checkpoint's own type; `validate` refuses any other string).
    var storageType: WeightStorageType? { dtype.flatMap(WeightStorageType.init(rawValue:)) }

    func validate() throws {
        if let dtype, storageType == nil { throw refuseLimit("--dtype must be bf16, f16 or f32, got '\(dtype)'") }
    }
}

/// Writes one line to standard error.
func printError(_ message: String) {
    writeToStandardError(message + "\n")
}

extension TMFCommand {
    /// Restarts this process with `OPENBLAS_CORETYPE` set when OpenBLAS fell back to its generic
    /// kernels on a CPU that runs faster ones (`BLAS.fasterCoreType`), and with
    /// `OPENBLAS_THREAD_TIMEOUT` set where OpenBLAS's spinning workers would slow our own kernel
    /// threads (`BLAS.workerSpinTimeout`): OpenBLAS reads both when it loads, before any of our
    /// code runs, so they need a new process. A variable already set is kept (a user's choice);
    /// nothing happens when `TMF_KEEP_BLAS_CORE` is set; returns (and runs on as it is) if the
    /// exec fails.
    public static func useFasterBLASKernels() {
        let env = ProcessInfo.processInfo.environment
        guard env["TMF_KEEP_BLAS_CORE"] == nil else { return }
        var set: [String] = []
        if env["OPENBLAS_CORETYPE"] == nil, let core = BLAS.fasterCoreType {
            setenv("OPENBLAS_CORETYPE", core, 1)
            set.append("OPENBLAS_CORETYPE")
        }
        if env["OPENBLAS_THREAD_TIMEOUT"] == nil, let timeout = BLAS.workerSpinTimeout {
            setenv("OPENBLAS_THREAD_TIMEOUT", timeout, 1)
            set.append("OPENBLAS_THREAD_TIMEOUT")
        }
        guard !set.isEmpty else { return }
        setenv("TMF_KEEP_BLAS_CORE", "1", 1)  // never twice, even if OpenBLAS ignores the variables
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        for name in set { unsetenv(name) }
        unsetenv("TMF_KEEP_BLAS_CORE")
    }
}
