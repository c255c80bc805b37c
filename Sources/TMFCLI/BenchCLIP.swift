import Foundation
import TMFCLIP
import TMFTensor

/// `tmf bench clip --clip DIR`: CLIP image and text throughput, with the GFLOP/s they imply
/// beside raw sgemm running the very same matrix products (shapes and count) on its own.
struct CLIPBench {
    let directory: URL
    let repeats: Int
    let batch: Int
    /// How to hold the matrices (nil: as the checkpoint stores them).
    var dtype: WeightStorageType? = nil

    /// One matrix product of the forward pass: C[m, n] = A[m, k] · B[k, n], done `count` times.
    struct GEMM {
        var m: Int, n: Int, k: Int, count = 1
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(count) }
    }

    /// The products of one encoder over `batch` sequences of `t` tokens of width `d`, as TMFCLIP
    /// runs them: every layer on all tokens, except that the last one computes only the pooled
    /// token's query, attention row, output projection and MLP (keys and values for all tokens).
    static func encoderGEMMs(batch: Int, t: Int, d: Int, intermediate: Int, heads: Int, layers: Int) -> [GEMM] {
        let rows = batch * t, dh = d / heads
        func layer(queries: Int) -> [GEMM] {
            [GEMM(m: batch * queries, n: d, k: d, count: 2),              // q and out projections
             GEMM(m: rows, n: d, k: d, count: 2),                         // k and v projections
             GEMM(m: queries, n: t, k: dh, count: batch * heads),         // scores = q · kᵀ per sequence and head
             GEMM(m: queries, n: dh, k: t, count: batch * heads),         // softmax · v
             GEMM(m: batch * queries, n: intermediate, k: d),             // fc1
             GEMM(m: batch * queries, n: d, k: intermediate)]             // fc2
        }
        return (0..<(layers - 1)).flatMap { _ in layer(queries: t) } + layer(queries: 1)
    }

    /// Seconds raw sgemm takes for `gemms` on preallocated buffers (median of `repeats`).
    func rawSeconds(_ gemms: [GEMM]) -> Double {
        let maxA = gemms.map { $0.m * $0.k }.max()!, maxB = gemms.map { $0.k * $0.n }.max()!
        let maxC = gemms.map { $0.m * $0.n }.max()!
        var rng = SeededRNG(seed: 1)
        let a = Tensor.normal([maxA], rng: &rng), b = Tensor.normal([maxB], std: 0.02, rng: &rng)
        let c = Tensor(zeros: [maxC])
        return medianSeconds(repeats) {
            for g in gemms {
                for _ in 0..<g.count {
                    BLAS.sgemm(transA: false, transB: true, m: g.m, n: g.n, k: g.k, a: a.pointer, lda: g.k,
                               b: b.pointer, ldb: g.k, beta: 0, c: c.pointer, ldc: g.n)
                }
            }
        }
    }

    func run() throws {
        let model = try CLIPModel.load(directory: directory, dtype: dtype)
        let c = model.configuration, v = c.vision, tc = c.text
        print("CLIP \(directory.path): vision \(v.hiddenSize) wide × \(v.hiddenLayers) layers, \(v.imageSize)px "
              + "patch \(v.patchSize) (\(v.tokenCount) tokens); text \(tc.hiddenSize) wide × \(tc.hiddenLayers) layers; "
              + "projection \(c.projectionDim)")
        print(pad("", 26) + pad("items/s", 12) + pad("tmf GFLOP/s", 14) + pad("raw sgemm GFLOP/s", 20) + "of sgemm")

        // Images: batch × (C, S, S) standard-normal pixels.
        var rng = SeededRNG(seed: 0)
        let pixels = Tensor.normal(model.vision.pixelShape(count: batch), rng: &rng)
        let p2 = v.channels * v.patchSize * v.patchSize
        let imageGEMMs = [GEMM(m: batch * v.gridSize * v.gridSize, n: v.hiddenSize, k: p2)]  // patch embedding
            + Self.encoderGEMMs(batch: batch, t: v.tokenCount, d: v.hiddenSize, intermediate: v.intermediateSize,
                                heads: v.attentionHeads, layers: v.hiddenLayers)
            + [GEMM(m: batch, n: c.projectionDim, k: v.hiddenSize)]                           // visual projection
        var failure: Error?
        let imageSeconds = medianSeconds(repeats) {
            do { _ = try model.imageEmbeddings(pixels) } catch { failure = error }
        }
        if let failure { throw failure }
        report("images (batch \(batch))", imageGEMMs, imageSeconds)

        // Texts: batch × full-length sequences (bos, random ids, eos at the end), no padding.
        let t = tc.maxPositionEmbeddings
        let eos = tc.eosTokenID < tc.vocabSize ? tc.eosTokenID : tc.vocabSize - 1
        let ids = (0..<batch).map { _ in
            (0..<(t - 1)).map { _ in Int(rng.next() % UInt64(max(tc.vocabSize - 2, 1))) } + [eos]
        }
        let textGEMMs = Self.encoderGEMMs(batch: batch, t: t, d: tc.hiddenSize, intermediate: tc.intermediateSize,
                                          heads: tc.attentionHeads, layers: tc.hiddenLayers)
            + [GEMM(m: batch, n: c.projectionDim, k: tc.hiddenSize)]                          // text projection
        let textSeconds = medianSeconds(repeats) {
            do { _ = try model.textEmbeddings(ids) } catch { failure = error }
        }
        if let failure { throw failure }
        report("texts (batch \(batch)×\(t))", textGEMMs, textSeconds)
        print("(GFLOP/s count the matrix products executed: \(amount(imageGEMMs.map(\.flops).reduce(0, +) / Double(batch)))"
              + " GFLOP per image, \(amount(textGEMMs.map(\.flops).reduce(0, +) / Double(batch))) per text)")
    }

    func report(_ label: String, _ gemms: [GEMM], _ seconds: Double) {
        let flops = gemms.map(\.flops).reduce(0, +)
        let raw = rawSeconds(gemms)
        print(pad(label, 26) + pad(String(format: "%.1f", Double(batch) / seconds), 12)
              + pad(gf(flops / seconds), 14) + pad(gf(flops / raw), 20) + String(format: "%.0f%%", 100 * raw / seconds))
    }

    func gf(_ x: Double) -> String { String(format: "%.1f", x / 1e9) }
    /// GFLOP to three significant figures: a tiny model's 0.00131 GFLOP per image is not "0.0".
    func amount(_ x: Double) -> String { String(format: "%.3g", x / 1e9) }
    func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count) }
}
