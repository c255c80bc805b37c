import ArgumentParser
import Foundation
import TMFTensor

/// `tmf bench [what]`: speed figures beside the machine's own limits (raw sgemm, memory copy),
/// so the ratios hold on any machine. Run from a release build.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure speed against this machine's sgemm peak and memory bandwidth (release builds).",
        discussion: "what: ops (sgemm shapes, elementwise ops, softmax, RMSNorm); llama (prefill, decode and a LoRA step of the Llama folder given by --llm); clip (CLIP images/s and texts/s, needs --clip DIR)."
    )

    @Argument(help: "What to measure: ops, llama, clip.")
    var what: String = "ops"

    @Option(help: "Llama folder (config.json + model.safetensors) for `llama`.")
    var llm: String?

    @Option(help: "CLIP checkpoint folder (Hugging Face layout) for `clip`.")
    var clip: String?

    @Option(help: "Batch size for `clip`.")
    var batch: Int = 16

    @Option(help: "Repetitions per figure (the median is reported).")
    var repeats: Int = 5

    @Option(help: "Tokens of the prefill figure for `llama`.")
    var prefill: Int = 256

    @Option(help: "Decoded tokens per repetition for `llama`.")
    var decode: Int = 64

    @Option(help: "Sequences × tokens of the LoRA step for `llama`, as BxT.")
    var loraBatch: String = "4x128"

    @OptionGroup var weights: WeightOptions

    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        guard ["ops", "llama", "clip"].contains(what) else { throw ValidationError("unknown benchmark '\(what)'; choose: ops, llama, clip") }
        if what == "llama" && llm == nil { throw ValidationError("`tmf bench llama` needs --llm DIR (a Llama folder)") }
        if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
        if !(1...65536).contains(prefill) || !(1...65536).contains(decode) {
            throw ValidationError("--prefill and --decode must be between 1 and 65536")
        }
        guard loraShape != nil else { throw ValidationError("--lora-batch must be BxT with B and T from 1 to 65536, got '\(loraBatch)'") }
        if what == "clip" && clip == nil { throw ValidationError("tmf bench clip needs --clip DIR (a Hugging Face CLIP folder)") }
    }

    func run() throws {
        let threads = compute.effectiveThreads
        BLAS.setThreads(threads)
        let timeout = ProcessInfo.processInfo.environment["OPENBLAS_THREAD_TIMEOUT"].map { "2^\($0) cycles (OPENBLAS_THREAD_TIMEOUT)" }
        print("OpenBLAS kernels: \(BLAS.coreName); its workers spin \(timeout ?? "OpenBLAS's default time") after a call")
        #if DEBUG
        print("warning: debug build; run `swift build -c release` and bench the release binary for real figures")
        #endif
        if what == "llama", let llm {
            print("tmf bench llama: \(threads) OpenBLAS thread(s); median of \(repeats)")
            do {
                let shape = loraShape!
                try LlamaBench(directory: URL(fileURLWithPath: llm), repeats: repeats, dtype: weights.storageType,
                               prefillTokens: prefill, decodeTokens: decode, batch: shape.0, sequence: shape.1).run()
            } catch {
                printError("tmf bench llama: \(describe(error))")
                throw ExitCode(1)
            }
            return
        }
        if what == "clip", let clip {
            print("tmf bench clip: \(threads) OpenBLAS thread(s); median of \(repeats)")
            do {
                try CLIPBench(directory: URL(fileURLWithPath: clip), repeats: repeats, batch: batch,
                              dtype: weights.storageType).run()
            } catch {
                printError("tmf bench clip: \(describe(error))")
                throw ExitCode.failure
            }
            return
        }
        print("tmf bench ops: \(threads) OpenBLAS thread(s); exp, SiLU, GELU, softmax and RMSNorm kernels on "
              + "\(Kernels.threads) thread(s), add/mul/scale on 1; median of \(repeats)")
        OpsBench(repeats: repeats).run()
    }
}

/// Median seconds of two bodies timed alternately (so a noisy neighbour slows both alike),
/// after the warm-up rounds of `alternatedMedianSeconds`.
func pairedMedianSeconds(_ repeats: Int, _ a: () -> Void, _ b: () -> Void) -> (Double, Double) {
    let t = withoutActuallyEscaping(a) { a in withoutActuallyEscaping(b) { b in alternatedMedianSeconds(repeats, [a, b]) } }
    return (t[0], t[1])
}

/// Median seconds of each body, the bodies timed in turn in every round, after three warm-up
/// rounds. One was not enough: the first op that uses the kernels' worker threads (exp) measured
/// 29-33% of memcpy over 5 rounds and 77% over 11 — a start-up transient of the just-started
/// workers (cause not pinned down: scheduler placement or fresh pages), gone after three rounds.
func alternatedMedianSeconds(_ repeats: Int, _ bodies: [() -> Void]) -> [Double] {
    for _ in 0..<3 { for body in bodies { body() } }
    var times = [[Double]](repeating: [], count: bodies.count)
    for _ in 0..<repeats {
        for (i, body) in bodies.enumerated() {
            let t0 = DispatchTime.now().uptimeNanoseconds
            body()
            times[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
    }
    return times.map { $0.sorted()[$0.count / 2] }
}

/// Seconds taken by `body`, median of `repeats` after one warm-up run.
func medianSeconds(_ repeats: Int, _ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    for _ in 0..<repeats {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
    times.sort()
    return times[times.count / 2]
}

struct OpsBench {
    let repeats: Int

    func run() {
        var rng = SeededRNG(seed: 0)
        print("\n== matmul (GFLOP/s; ours vs raw cblas_sgemm on the same buffers) ==")
        print(pad("shape (M×K·K×N)", 30) + pad("raw sgemm", 12) + pad("tmf", 12) + "ratio")
        for (m, k, n, label) in [(1024, 1024, 1024, "square 1024"), (2048, 2048, 2048, "square 2048"),
                                 (256, 4096, 4096, "M=256 K=4096 N=4096"), (256, 4096, 11008, "M=256 K=4096 N=11008"),
                                 (256, 11008, 4096, "M=256 K=11008 N=4096")] {
            let x = Tensor.normal([m, k], rng: &rng)
            let w = Tensor.normal([n, k], std: 0.02, rng: &rng)  // [out, in] like a checkpoint
            let c = Tensor(zeros: [m, n])
            let flops = 2.0 * Double(m) * Double(n) * Double(k)
            let (raw, ours) = pairedMedianSeconds(repeats, {
                BLAS.sgemm(transA: false, transB: true, m: m, n: n, k: k, a: x.pointer, lda: k,
                           b: w.pointer, ldb: k, beta: 0, c: c.pointer, ldc: n)
            }, { _ = withNoGrad { Tensor.linear(x, weight: w) } })
            print(pad(label, 30) + pad(gf(flops / raw), 12) + pad(gf(flops / ours), 12) + String(format: "%.1f%%", 100 * raw / ours))
        }

        let n = 1 << 24  // 16M floats, 64 MB per operand: far beyond the caches
        let a = Tensor.normal([n], rng: &rng), b = Tensor.normal([n], rng: &rng)
        let dst = Tensor(zeros: [n])
        // The reference is the faster of a one-thread memcpy and one split over the kernels' threads.
        let copyOne: () -> Void = { _ = memcpy(dst.pointer, a.pointer, n * 4) }
        let copySplit: () -> Void = { Kernels.parallelCopy(dst.pointer, a.pointer, count: n) }
        let copies = alternatedMedianSeconds(repeats, [copyOne, copySplit])
        let copy = copies.min()!
        let copyBW = Double(2 * n * 4) / copy
        print("\n== memory-bound ops over \(n / (1 << 20))M floats (GB/s = bytes read + written per second) ==")
        print(pad("op", 30) + pad("ns/element", 12) + pad("GB/s", 12) + "of copy")
        func report(_ name: String, bytesPerElement: Int, elements: Int, _ body: () -> Void) {
            // Timed alternately with both copies, so the ratio is to the faster copy's bandwidth right then.
            let t = withoutActuallyEscaping(body) { alternatedMedianSeconds(repeats, [$0, copyOne, copySplit]) }
            let secs = t[0], copyBW = Double(2 * n * 4) / min(t[1], t[2])
            let bw = Double(bytesPerElement * elements) / secs
            print(pad(name, 30) + pad(String(format: "%.3f", secs * 1e9 / Double(elements)), 12)
                  + pad(String(format: "%.1f", bw / 1e9), 12) + String(format: "%.0f%%", 100 * bw / copyBW))
        }
        print(pad("memcpy (reference)", 30) + pad(String(format: "%.3f", copy * 1e9 / Double(n)), 12)
              + pad(String(format: "%.1f", copyBW / 1e9), 12) + "100%"
              + String(format: "  (faster of 1 thread %.3f and %d threads %.3f ns/element)",
                       copies[0] * 1e9 / Double(n), Kernels.threads, copies[1] * 1e9 / Double(n)))
        withNoGrad {
            report("add", bytesPerElement: 12, elements: n, { _ = a + b })
            report("mul", bytesPerElement: 12, elements: n, { _ = a * b })
            report("add row-broadcast [.,4096]", bytesPerElement: 12, elements: n,
                   { _ = a.reshaped([n / 4096, 4096]) + Tensor(zeros: [4096]) })
            report("scale", bytesPerElement: 8, elements: n, { _ = a.scale(0.5) })
            report("exp", bytesPerElement: 8, elements: n, { _ = a.exp() })
            report("silu", bytesPerElement: 8, elements: n, { _ = a.silu() })
            report("gelu (erf)", bytesPerElement: 8, elements: n, { _ = a.gelu() })
            let rows = a.reshaped([n / 4096, 4096])
            let weight = Tensor(repeating: 1, shape: [4096])
            report("softmax rows of 4096", bytesPerElement: 8, elements: n, { _ = rows.softmax() })
            report("log-softmax rows of 4096", bytesPerElement: 8, elements: n, { _ = rows.logSoftmax() })
            report("RMSNorm rows of 4096", bytesPerElement: 8, elements: n,
                   { _ = Tensor.rmsNorm(rows, weight: weight, eps: 1e-5) })
        }
    }

    func gf(_ flopsPerSecond: Double) -> String { String(format: "%.1f", flopsPerSecond / 1e9) }
    func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
}

extension BenchCommand {
    /// `--lora-batch` parsed: (sequences, tokens), or nil when malformed.
    var loraShape: (Int, Int)? {
        let parts = loraBatch.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts.allSatisfy({ (1...65536).contains($0) }) else { return nil }
        return (parts[0], parts[1])
    }
}
