// Private shim: the few kernels Swift cannot vectorise on the default target (vectorised exp,
// bf16 dot products). Each has a portable C path and an AVX2+FMA path, exp, softmax, SiLU and
// the bf16 dots an AVX-512 path too, chosen at run time from the CPU's flags. Large inputs are
// split over a few persistent kernel threads (tmf_set_kernel_threads). Half-precision weight ×
// activation matrix products are in tmf_halfmatmul.h (halfmatmul.c).
// Not API: TMFTensor wraps these and carries a Swift fallback with a parity test.
#ifndef TMF_CKERNELS_H
#define TMF_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Keeps large freed blocks in the heap (glibc mallopt) so per-op tensors reuse warm pages.
void tmf_configure_malloc(void);

/// 1 when the AVX-512F paths are in use on this CPU.
int tmf_has_avx512(void);
/// 1 when the AVX2 + FMA paths are available (used when AVX-512 is not).
int tmf_has_avx2(void);
/// The best OpenBLAS x86 kernel family this CPU runs: 2 SkylakeX (AVX-512 F, BW, DQ, VL, CD),
/// 1 Haswell (AVX2 + FMA), 0 neither.
int tmf_blas_core_hint(void);
/// 1 when the CPU has AVX-512 BF16 dot products (vdpbf16ps).
int tmf_has_avx512bf16(void);

/// Threads that the elementwise kernels (exp, SiLU, GELU) and the row kernels (softmax,
/// log-softmax, RMSNorm, softmax and RMSNorm backward) split large inputs over; at least 1, at
/// most 64. The default is the number of online cores. Results are bit-identical for every count:
/// work is cut only at element and row boundaries and nothing is reduced across threads.
void tmf_set_kernel_threads(int n);
/// The current kernel thread count.
int tmf_get_kernel_threads(void);

/// memcpy split over the kernel threads as the kernels split their work (a bandwidth reference
/// for benchmarks).
void tmf_parallel_copy(void *dst, const void *src, size_t bytes);

/// Runs fn(ctx, begin, end) over [0, total) on the kernel threads, in one contiguous part per
/// thread (all on the caller with one thread, or when the threads are busy with another job).
void tmf_parallel_for(void (*fn)(void *ctx, size_t begin, size_t end), void *ctx, size_t total);

/// y[i] = exp(x[i]) for n elements (x and y may alias). Relative error below 2e-7; inputs whose
/// result is subnormal, zero or infinite, and NaN, get libm's expf.
void tmf_vexp(const float *x, float *y, size_t n);

/// Row-wise stable softmax over `rows` rows of `cols` floats: y = exp(x - max) / sum. Entries
/// whose exp(x - max) would be subnormal become 0; a row that is all -inf, or holds a NaN or
/// +inf, becomes NaN.
void tmf_softmax_rows(const float *x, float *y, size_t rows, size_t cols);

/// One query's attention products, on the calling thread (decoding: a BLAS call per head would
/// wake its thread pool for a few thousand multiply-adds). Rows of `a` are `lda` apart.
/// tmf_rows_dot:  y[j] = alpha · Σ_k a[j·lda + k] · x[k] for j < m (scores against m keys of n).
/// tmf_rows_axpy: y[k] = Σ_j p[j] · a[j·lda + k] for k < n (the probabilities' mix of m values).
void tmf_rows_dot(const float *a, size_t lda, const float *x, size_t m, size_t n, float alpha, float *y);
void tmf_rows_axpy(const float *a, size_t lda, const float *p, size_t m, size_t n, float *y);

/// Matrix-vector product for decoding with Float32 weights: y[o] = Σ_k w[o·in + k] · x[k]
/// (added to y when `accumulate`), for o < out; w is (out, in) row-major. Rows are split over the
/// kernel threads; the AVX-512, AVX2 + FMA or portable path is chosen at run time.
void tmf_matvec_f32(const float *w, const float *x, float *y, size_t out, size_t in, int accumulate);

/// tmf_matvec_f32's paths, for tests: each is run where `tmf_matvec_path_supported` says the CPU
/// can (TMF_KERNELS=portable leaves only the portable one); an unsupported path runs the portable.
enum { TMF_MATVEC_PORTABLE = 0, TMF_MATVEC_AVX2 = 1, TMF_MATVEC_AVX512 = 2 };
int tmf_matvec_path_supported(int path);
void tmf_matvec_f32_path(int path, const float *w, const float *x, float *y, size_t out, size_t in, int accumulate);

/// Row-wise log-softmax: y = x - max - log(sum(exp(x - max))).
void tmf_log_softmax_rows(const float *x, float *y, size_t rows, size_t cols);

/// RMSNorm over rows: y = x / sqrt(mean(x²) + eps) · w; writes each row's 1/rms into inv
/// (when inv is not NULL).
void tmf_rmsnorm_rows(const float *x, const float *w, float *y, float *inv, size_t rows, size_t cols, float eps);

/// GELU family, elementwise: mode 0 exact x·Φ(x) (absolute error below 2e-7·max(1, |x|); for
/// x < −13.1, −∞ included, the AVX2 path gives −1.7e-38), 1 tanh approximation, 2 QuickGELU
/// x·σ(1.702x).
void tmf_gelu(const float *x, float *y, size_t n, int mode);

/// Σ a[i]·b[i] in Float32 (vectorised).
float tmf_dot(const float *a, const float *b, size_t n);

/// Softmax backward over rows, accumulating: dx += y ⊙ (dy − Σ dy⊙y).
void tmf_softmax_backward_rows(const float *y, const float *dy, float *dx, size_t rows, size_t cols);

/// RMSNorm backward over rows, accumulating into dx and dw (either may be NULL), given the
/// forward's per-row 1/rms in inv.
void tmf_rmsnorm_backward_rows(const float *x, const float *w, const float *inv, const float *dy,
                               float *dx, float *dw, size_t rows, size_t cols);

/// y[i] = x[i] * sigmoid(x[i]) (SiLU), n elements.
void tmf_silu(const float *x, float *y, size_t n);

/// Dot product of two bf16 vectors (raw uint16 bits), accumulated in fp32.
float tmf_dot_bf16(const uint16_t *a, const uint16_t *b, size_t n);

/// Dot product of a bf16 vector with an fp32 vector, accumulated in fp32.
float tmf_dot_bf16_f32(const uint16_t *a, const float *b, size_t n);

// Matrix products with bf16 / f16 weights.
#include "tmf_halfmatmul.h"

#endif
