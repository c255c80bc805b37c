import Foundation
import TMFLlama
import TMFLoRA
import TMFTensor

#if canImport(Glibc)
import Glibc
#endif

/// `tmf bench llama --llm DIR`: prefill, decode and one LoRA training step on a Llama folder,
/// each beside the raw sgemm rate (or memory copy rate) of the same shapes on this machine.
/// Shapes match Scripts/bench_llama_torch.py: prefill 256 tokens (logits for the last only),
/// decode 64 tokens after a 16-token prompt, LoRA r=8 α=16 on q_proj,v_proj over batch 4 × 128
/// (cross-entropy on every position, backward, Adam).
struct LlamaBench {
    let directory: URL
    let repeats: Int
    /// How to hold the matrices (nil: as the checkpoint stores them).
    var dtype: WeightStorageType?
    var prefillTokens = 256, decodeTokens = 64, batch = 4, sequence = 128
    static let promptTokens = 16

    func run() throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let model = try LlamaModel.load(directory: directory, dtype: dtype)
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let c = model.configuration
        print(String(format: "model: %@ (%.1fM parameters, hidden %d, %d layers, %d heads / %d KV, FFN %d, vocab %d%@); loaded in %.2f s",
                     directory.path, Double(c.parameterCount) / 1e6, c.hiddenSize, c.hiddenLayers, c.attentionHeads,
                     c.kvHeads, c.intermediateSize, c.vocabularySize, c.tieWordEmbeddings ? ", tied" : "", loadSeconds))
        print("weights: \(model.storageType.rawValue) matrices" + (model.storageType == .f32 ? ""
              : " (\(HalfMatMul.path(for: model.storageType.halfPrecision!)) kernels)"))
        var rng = SeededRNG(seed: 0)
        let ids = (0..<max(prefillTokens, Self.promptTokens)).map { _ in 3 + rng.nextInt(below: c.vocabularySize - 3) }

        // Prefill.
        let prefill = medianSeconds(repeats) { _ = withNoGrad { model(.tokens([Array(ids[..<prefillTokens])]), logits: .last) } }
        let prefillFlops = forwardFlops(c, rows: prefillTokens, sequence: prefillTokens, headRows: 1)
        let rawPrefill = rawSgemmSeconds(c, rows: prefillTokens, headRows: 1)
        print("\n== prefill \(prefillTokens) tokens (logits for the last position) ==")
        print(String(format: "tmf: %.1f tok/s (%.1f ms) = %.1f GFLOP/s; raw sgemm on the same shapes: %.1f GFLOP/s; ratio %.0f%%",
                     Double(prefillTokens) / prefill, prefill * 1e3, prefillFlops / prefill / 1e9,
                     prefillFlops / rawPrefill / 1e9, 100 * rawPrefill / prefill))

        // Decode.
        var decodeTimes: [Double] = []
        for _ in 0...repeats {
            let cache = KVCache(configuration: c, batchSize: 1, capacity: Self.promptTokens + decodeTokens + 1)
            withNoGrad {
                var logits = model(.tokens([Array(ids[..<Self.promptTokens])]), logits: .last, cache: cache)
                let start = DispatchTime.now().uptimeNanoseconds
                for _ in 0..<decodeTokens {
                    var best = 0
                    for i in 0..<c.vocabularySize where logits.pointer[i] > logits.pointer[best] { best = i }
                    logits = model(.tokens([[best]]), logits: .last, cache: cache)
                }
                decodeTimes.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 / Double(decodeTokens))
            }
        }
        decodeTimes.removeFirst()
        decodeTimes.sort()
        let perToken = decodeTimes[decodeTimes.count / 2]
        let weightBytes = Double(c.parameterCount) * (model.storageType == .f32 ? 4 : 2)
        let copyRate = memcpyBytesPerSecond()
        print("\n== decode (\(decodeTokens) tokens after a \(Self.promptTokens)-token prompt, batch 1) ==")
        print(String(format: "tmf: %.1f tok/s (%.2f ms/token); weights read %.1f GB/s; memcpy on this machine %.1f GB/s "
                     + "(bytes read + written); ratio %.0f%%", 1 / perToken, perToken * 1e3, weightBytes / perToken / 1e9,
                     copyRate / 1e9, 100 * weightBytes / perToken / copyRate))

        // LoRA training step.
        model.recomputesActivations = model.isLargeForTraining  // as tmf train
        let lora = LoRAModel(base: model, configuration: try LoRAConfiguration(rank: 8, alpha: 16, targetModules: ["q_proj", "v_proj"]), seed: 1)
        let adam = Adam(parameters: lora.parameters, learningRate: 1e-4)
        let tokens = (0..<batch).map { _ in (0..<sequence).map { _ in 3 + rng.nextInt(below: c.vocabularySize - 3) } }
        let targets = tokens.flatMap { $0 }
        let step = medianSeconds(repeats) {
            adam.zeroGrad()
            let logits = model(.tokens(tokens), training: true)
            let loss = Tensor.crossEntropy(logits.reshaped([-1, c.vocabularySize]), targets: targets)
            loss.backward()
            adam.step()
        }
        let rows = batch * sequence
        // Forward, then backward through every frozen matmul for the input gradient only (≈ the
        // same FLOPs again); LoRA's own matmuls are negligible.
        let stepFlops = 2 * forwardFlops(c, rows: rows, sequence: sequence, headRows: rows)
        let rawStep = 2 * rawSgemmSeconds(c, rows: rows, headRows: rows)
        print("\n== LoRA training step (r=8 on q_proj,v_proj; batch \(batch)×\(sequence); forward + backward + Adam"
              + (model.recomputesActivations ? "; activations recomputed per layer, as tmf train does for 1B+ weights" : "") + ") ==")
        print(String(format: "tmf: %.1f tok/s (%.0f ms) = %.1f GFLOP/s; raw sgemm on the same shapes: %.1f GFLOP/s; ratio %.0f%%",
                     Double(rows) / step, step * 1e3, stepFlops / step / 1e9, stepFlops / rawStep / 1e9, 100 * rawStep / step))
        lora.detach()

        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        print(String(format: "\npeak memory (maxrss): %.0f MB", Double(usage.ru_maxrss) / 1024))
    }

    /// FLOPs of one forward pass: the projections over `rows` tokens, attention over sequences
    /// of `sequence` (full T×S products, as computed), and the LM head over `headRows` rows.
    func forwardFlops(_ c: LlamaConfiguration, rows: Int, sequence: Int, headRows: Int) -> Double {
        let d = Double(c.hiddenSize), q = Double(c.attentionHeads * c.headDim), kv = Double(c.kvHeads * c.headDim)
        let perLayer = 2 * Double(rows) * (d * q + 2 * d * kv + q * d + 3 * d * Double(c.intermediateSize))
        let attention = 4 * Double(rows) * Double(sequence) * q
        return Double(c.hiddenLayers) * (perLayer + attention) + 2 * Double(headRows) * d * Double(c.vocabularySize)
    }

    /// Seconds raw sgemm takes for the projections and LM head of one forward pass (one layer's
    /// shapes timed, times the number of layers).
    func rawSgemmSeconds(_ c: LlamaConfiguration, rows: Int, headRows: Int) -> Double {
        var rng = SeededRNG(seed: 9)
        let d = c.hiddenSize, q = c.attentionHeads * c.headDim, kv = c.kvHeads * c.headDim, f = c.intermediateSize
        let shapes = [(q, d), (kv, d), (kv, d), (d, q), (f, d), (f, d), (d, f)]  // (out, in)
        let x = Tensor.normal([rows, max(d, f, q)], rng: &rng)
        let y = Tensor(zeros: [rows, max(f, q, c.vocabularySize)])
        let weights = shapes.map { Tensor.normal([$0.0, $0.1], std: 0.02, rng: &rng) }
        let layer = medianSeconds(repeats) {
            for (w, (o, i)) in zip(weights, shapes) {
                BLAS.sgemm(transA: false, transB: true, m: rows, n: o, k: i, a: x.pointer, lda: i, b: w.pointer, ldb: i,
                           beta: 0, c: y.pointer, ldc: o)
            }
        }
        let head = Tensor.normal([c.vocabularySize, d], std: 0.02, rng: &rng)
        let lm = medianSeconds(repeats) {
            BLAS.sgemm(transA: false, transB: true, m: headRows, n: c.vocabularySize, k: d, a: x.pointer, lda: d,
                       b: head.pointer, ldb: d, beta: 0, c: y.pointer, ldc: c.vocabularySize)
        }
        return Double(c.hiddenLayers) * layer + lm
    }

    /// Bytes read + written per second by memcpy of 256 MB.
    func memcpyBytesPerSecond() -> Double {
        let n = 1 << 26
        let a = Tensor(repeating: 1, shape: [n]), b = Tensor(zeros: [n])
        let t = medianSeconds(repeats) { memcpy(b.pointer, a.pointer, n * 4) }
        return Double(2 * n * 4) / t
    }
}
