// Half-precision weight × fp32 activation products (halfmatmul.c). Not API: TMFTensor's
// HalfMatMul wraps these.
//
// W is a weight in bf16 or f16 (raw 16-bit patterns), row-major [out, in] as PyTorch's
// nn.Linear stores it; activations and results are fp32, rows contiguous.
//   tmf_half_matmul:            y[m, out] (+)= x[m, in] · Wᵀ      (forward)
//   tmf_half_matmul_input_grad: dx[m, in] (+)= dy[m, out] · W     (input gradient)
// With `accumulate` the product is computed as without it and then added, once, to the old
// value (y = y_old + s, one fp32 rounding); otherwise it is stored.
//
// Paths, chosen at run time (TMF_KERNELS=portable in the environment, read once, forces the
// portable one in these kernels only):
// - AVX512-BF16, bf16 weights only: vdpbf16ps. The activation operand (x, or dy) is rounded to
//   bf16 (to nearest, ties to even); weight × activation products are exact and every sum is
//   fp32. The instruction treats bf16 subnormals (inputs and results) as zero.
// - AVX-512F (+BW) and AVX2 + FMA (+F16C): weights widened to fp32 exactly (bf16 by a 16-bit
//   shift, f16 by vcvtph2ps), activations not rounded, fp32 fused multiply-adds and sums.
//   Also taken for f16 weights on AVX512-BF16 CPUs.
// - portable C: the same exact widening, fp32 multiplies and sums.
// Each output is summed in an order that depends only on the path and on `in` (forward) or
// `out` (input gradient), never on m, on where the row is in a tile or on the thread count:
// work is split over the kernel threads (tmf_set_kernel_threads) at output rows or columns
// only, so results are bit-identical for every thread count.
//
// Decoding (m = 1: one tile of x rows) reads each row of W once, whole. With more rows the
// forward takes k in blocks of 1024: up to 128 rows of W × 1024 columns (≤ 256 KB) stay in L2
// while every tile of x rows (4; 2 on AVX2) passes over them with its 1024 columns in L1, four
// W rows at a time. The input gradient copies each strip of 32 columns of W (16 on AVX2) into a
// contiguous buffer and walks it once per 8 rows of dy (6 on AVX2).
//
// Measured 2026-12-03, 1 thread (CPU time, median), on a 2-core AVX-512F Xeon VM without
// AVX512-BF16 while another job ran: decoding through a 4096 × 4096 bf16 weight takes 1.85 ms
// on the AVX-512F path (18 GB/s of weights), cblas_sgemv on the same weight in fp32 4.5 ms
// (15 GB/s, OpenBLAS 0.3.21 with OPENBLAS_CORETYPE=SkylakeX; 6-8 ms with the Prescott kernels it
// picks by itself on this VM). m = 256: forward ~100 GFLOP/s, input gradient ~120, sgemm ~135.
#ifndef TMF_HALFMATMUL_H
#define TMF_HALFMATMUL_H
#include <stddef.h>
#include <stdint.h>

/// Weight storage formats.
enum { TMF_HALF_BF16 = 0, TMF_HALF_F16 = 1 };

/// Code paths (tmf_half_set_path, tmf_half_path).
enum {
    TMF_HALF_PATH_AUTO = 0,
    TMF_HALF_PATH_PORTABLE = 1,
    TMF_HALF_PATH_AVX2 = 2,
    TMF_HALF_PATH_AVX512 = 3,
    TMF_HALF_PATH_AVX512_BF16 = 4,
    /// The AVX512-BF16 path's code with vdpbf16ps replaced by two exact fp32 FMAs per pair (what
    /// the instruction computes for normal numbers): lets CPUs without AVX512-BF16 test the
    /// path's packing, pairing and tails. Never chosen automatically.
    TMF_HALF_PATH_AVX512_BF16_EMULATED = 5,
};

/// y[m, out] = x[m, in] · Wᵀ, or y += x · Wᵀ when `accumulate` (format: TMF_HALF_*). x and y
/// must not overlap.
void tmf_half_matmul(int format, const uint16_t *w, const float *x, float *y, size_t m, size_t in, size_t out,
                     int accumulate);

/// dx[m, in] = dy[m, out] · W, or dx += dy · W when `accumulate`. dy and dx must not overlap.
/// dst[i] = the Float32 value of src[i] (exact), i < n.
void tmf_half_widen(int format, const uint16_t *src, float *dst, size_t n);

void tmf_half_matmul_input_grad(int format, const uint16_t *w, const float *dy, float *dx, size_t m, size_t in,
                                size_t out, int accumulate);

/// Test and benchmark hook: makes every later call take `path` (TMF_HALF_PATH_AUTO: choose from
/// the CPU again). Returns 1 when this CPU can run it (then it is in force), 0 if not (nothing
/// changes). Process-wide; not for use while another thread runs these kernels.
int tmf_half_set_path(int path);

/// 1 when this CPU can run `path` (always for the portable path; only it under
/// TMF_KERNELS=portable).
int tmf_half_path_supported(int path);

/// The path the kernels take for weights of `format` now.
int tmf_half_path(int format);

/// How many parts the forward (backward = 0) or input gradient (backward = 1) of this shape is
/// split into at the current kernel thread count (fewer run when the pool is busy).
int tmf_half_planned_parts(int backward, size_t m, size_t in, size_t out);

#endif
