import CKernels
import COpenBLAS

/// The BLAS entry points tmf uses. `TMFTensor` is the only module that calls BLAS; other
/// modules go through `Tensor` ops or, for benchmarks, through these wrappers.
public enum BLAS {
    /// OpenBLAS's worker threads. Set it once (e.g. from `--threads`); default all cores.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
    }

    /// The kernel family OpenBLAS chose for this CPU ("SkylakeX", "Haswell", "Prescott", …).
    public static var coreName: String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

    /// The `OPENBLAS_CORETYPE` to run with when OpenBLAS fell back to its generic SSE3 kernels
    /// ("Prescott") on a CPU it does not recognise but that runs better ones — Debian's 0.3.21
    /// does so on recent Xeons, where its sgemm then reaches a fifth of SkylakeX's: "SkylakeX"
    /// with AVX-512 (F, BW, DQ, VL, CD), "Haswell" with AVX2 + FMA. nil when OpenBLAS chose
    /// anything else. OpenBLAS reads the variable when it loads, so it takes a new process.
    public static var fasterCoreType: String? {
        guard coreName.lowercased() == "prescott" else { return nil }
        switch tmf_blas_core_hint() {
        case 2: return "SkylakeX"
        case 1: return "Haswell"
        default: return nil
        }
    }

    /// The `OPENBLAS_THREAD_TIMEOUT` to run with: "4" (its minimum, 2⁴ cycles) on a CPU with
    /// AVX512-BF16, nil elsewhere. OpenBLAS's workers spin for about 2²⁸ cycles after each call
    /// before they sleep. Where bf16 weights run on our own kernel threads (the AVX512-BF16 path),
    /// the attention's small sgemm calls come between those products, and the spinning workers
    /// took cores from our threads: 110M bf16 on a 2-core Zen 4, alternated, medians of 4:
    /// prefill 1,222 → 1,442 tok/s, LoRA step 491 → 552 tok/s; Float32 unchanged (all its
    /// products are OpenBLAS's). OpenBLAS reads the variable when it loads.
    public static var workerSpinTimeout: String? {
        Kernels.hasAVX512BF16 ? "4" : nil
    }

    /// Runs `body` with OpenBLAS on one thread (for products that callers run side by side on
    /// their own threads), then restores its thread count.
    public static func withOneThread<T>(_ body: () throws -> T) rethrows -> T {
        let n = openblas_get_num_threads()
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(n) }
        return try body()
    }

    /// Sets OpenBLAS's thread count (at least 1), and the same count for the elementwise and
    /// row kernels (`Kernels.threads`).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        Kernels.setThreads(n)
    }

    /// Row-major C[M, N] = alpha · op(A) · op(B) + beta · C, with op(A) [M, K] and op(B) [K, N].
    /// A is stored [M, K] (or [K, M] when `transA`), B is stored [K, N] (or [N, K] when `transB`);
    /// `lda`, `ldb`, `ldc` are the row strides of the stored matrices.
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // C = beta · C
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(TMFCblasRowMajor, transA ? TMFCblasTrans : TMFCblasNoTrans,
                    transB ? TMFCblasTrans : TMFCblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Row-major y[M] = alpha · A[M, N] · x[N] + beta · y (or Aᵀ·x with `trans`, y then [N]).
    public static func sgemv(trans: Bool, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             x: UnsafePointer<Float>, beta: Float, y: UnsafeMutablePointer<Float>) {
        cblas_sgemv(TMFCblasRowMajor, trans ? TMFCblasTrans : TMFCblasNoTrans, Int32(m), Int32(n),
                    alpha, a, Int32(lda), x, 1, beta, y, 1)
    }
}
