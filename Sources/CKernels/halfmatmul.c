// Matrix products of a half-precision weight (bf16 or f16, row-major [out, in]) with fp32
// activations: shapes, paths and rounding are documented in include/tmf_halfmatmul.h.
//
// Forward y = x·Wᵀ: every output is a dot product of a row of x with a row of W, both contiguous
// in k. The SIMD paths keep one vector accumulator per output, walk k in chunks of 32 (AVX-512)
// or 16 (AVX2) and add the lanes up at the end; x is first packed once per call into the
// layout the path multiplies (zero-padded to whole chunks, so the tail chunk of W is loaded
// masked or from a zero-padded copy and nothing beyond a row is read).
// Input gradient dx = dy·W: every output column of dx is a running sum over W's rows, so the
// SIMD paths broadcast dy[i, o] and multiply it into a 32- (16-) column strip of W's row o.
#include "CKernels.h"
#include "internal.h"
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define HM_X86 1
#else
#define HM_X86 0
#endif

#define HM_INLINE static inline __attribute__((always_inline))

// Smallest part worth waking a kernel thread for, in multiply-adds (~10 µs of weight reads
// when decoding).
#define HM_MIN_PART_MACS ((size_t)1 << 16)
// The forward keeps this many bytes of W rows in cache while every row of x passes over them.
#define HM_W_BLOCK_BYTES ((size_t)256 << 10)

static inline size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

// ---- scalar conversions ----

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// IEEE binary16 → fp32, exact (a NaN keeps sign and payload and is made quiet, as vcvtph2ps does).
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, mant = h & 0x3FF, u;
    if (e == 0) {
        float f = (float)mant * 0x1p-24f;  // zero or subnormal: mant · 2⁻²⁴, exact
        memcpy(&u, &f, 4);
        u |= sign;
    } else if (e == 0x1F) {
        u = sign | 0x7F800000u | (mant ? 0x400000u | mant << 13 : 0);
    } else {
        u = sign | (e + 112) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// fp32 → bf16, rounded to nearest, ties to even; a NaN stays a (quiet) NaN.
static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

// ---- path choice ----

static atomic_int forced_path;  // TMF_HALF_PATH_AUTO (0) unless a test forced one

#if HM_X86
// 1 when the environment sets TMF_KERNELS=portable (read once): then only the portable path runs.
static int portable_forced(void) {
    static atomic_int state = -1;
    int s = atomic_load_explicit(&state, memory_order_relaxed);
    if (s < 0) {
        const char *v = getenv("TMF_KERNELS");
        s = v != NULL && strcmp(v, "portable") == 0;
        atomic_store(&state, s);
    }
    return s;
}
#endif

int tmf_half_path_supported(int path) {
    if (path == TMF_HALF_PATH_PORTABLE) return 1;
#if HM_X86
    int f = portable_forced() ? 0 : tmf_internal_cpu_flags();
    int avx512 = (f & TMF_CPU_AVX512F) && (f & TMF_CPU_AVX512BW);
    switch (path) {
    case TMF_HALF_PATH_AVX2: return (f & TMF_CPU_AVX2_FMA) && (f & TMF_CPU_F16C);
    case TMF_HALF_PATH_AVX512:
    case TMF_HALF_PATH_AVX512_BF16_EMULATED: return avx512;
    case TMF_HALF_PATH_AVX512_BF16: return avx512 && (f & TMF_CPU_AVX512BF16);
    default: return 0;
    }
#else
    return 0;
#endif
}

int tmf_half_set_path(int path) {
    if (path != TMF_HALF_PATH_AUTO && !tmf_half_path_supported(path)) return 0;
    atomic_store(&forced_path, path);
    return 1;
}

int tmf_half_path(int format) {
    int p = atomic_load_explicit(&forced_path, memory_order_relaxed);
    if (p == TMF_HALF_PATH_AUTO) {
        p = tmf_half_path_supported(TMF_HALF_PATH_AVX512_BF16) ? TMF_HALF_PATH_AVX512_BF16
            : tmf_half_path_supported(TMF_HALF_PATH_AVX512)    ? TMF_HALF_PATH_AVX512
            : tmf_half_path_supported(TMF_HALF_PATH_AVX2)      ? TMF_HALF_PATH_AVX2
                                                               : TMF_HALF_PATH_PORTABLE;
    }
    // vdpbf16ps multiplies bf16 only: f16 weights are widened on the AVX-512F path.
    if (format == TMF_HALF_F16 && (p == TMF_HALF_PATH_AVX512_BF16 || p == TMF_HALF_PATH_AVX512_BF16_EMULATED))
        p = TMF_HALF_PATH_AVX512;
    return p;
}

// ---- work contexts, packing and splitting ----

typedef struct {
    int format, path, accumulate, split_rows;
    const uint16_t *w;  // [out, in]
    const float *x;     // [m, in]
    float *y;           // [m, out]
    const void *xp;     // x packed for the path: m rows of kp elements (NULL: portable)
    size_t m, in, out, kp;
} fwd_ctx;

typedef struct {
    int format, path, accumulate, split_rows;
    const uint16_t *w;  // [out, in]
    const float *dy;    // [m, out]
    float *dx;          // [m, in]
    const uint32_t *dyp;  // AVX512-BF16 paths: dy as bf16 pairs, m rows of (out + 1) / 2
    size_t m, in, out;
} bwd_ctx;

// The k chunk of a SIMD path's forward.
static size_t chunk_of(int path) { return path == TMF_HALF_PATH_AVX2 ? 16 : 32; }

static void *alloc64(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes < 64 ? 64 : bytes) != 0) return NULL;
    return p;
}

// x packed for the forward's SIMD paths, rows of kp = in rounded up to the chunk, zero-padded:
// AVX512-BF16 paths: x rounded to bf16, in order. bf16 weights (AVX-512F, AVX2): fp32, each
// chunk's even elements first, then its odd ones (the order in which a chunk of W widens, see
// widen32). f16 weights: fp32 in order.
static void *pack_x(const fwd_ctx *c) {
    size_t m = c->m, in = c->in, kp = c->kp, B = chunk_of(c->path);
    if (c->path == TMF_HALF_PATH_AVX512_BF16 || c->path == TMF_HALF_PATH_AVX512_BF16_EMULATED) {
        uint16_t *p = alloc64(m * kp * sizeof(uint16_t));
        if (!p) return NULL;
        for (size_t i = 0; i < m; i++) {
            const float *xr = c->x + i * in;
            uint16_t *pr = p + i * kp;
            for (size_t k = 0; k < in; k++) pr[k] = f32_to_bf16(xr[k]);
            for (size_t k = in; k < kp; k++) pr[k] = 0;
        }
        return p;
    }
    float *p = alloc64(m * kp * sizeof(float));
    if (!p) return NULL;
    for (size_t i = 0; i < m; i++) {
        const float *xr = c->x + i * in;
        float *pr = p + i * kp;
        if (c->format == TMF_HALF_F16) {
            memcpy(pr, xr, in * sizeof(float));
            for (size_t k = in; k < kp; k++) pr[k] = 0;
        } else {
            for (size_t k = 0; k < kp; k++) {
                size_t j = k % B, at = k - j + ((j & 1) ? B / 2 + j / 2 : j / 2);
                pr[at] = k < in ? xr[k] : 0.0f;
            }
        }
    }
    return p;
}

// dy as bf16 pairs for the AVX512-BF16 input gradient: (dy[i, 2p] | dy[i, 2p + 1] << 16), the
// missing odd element of an odd `out` being 0.
static uint32_t *pack_pairs(const float *dy, size_t m, size_t out) {
    size_t pairs = (out + 1) / 2;
    uint32_t *p = alloc64(m * pairs * sizeof(uint32_t));
    if (!p) return NULL;
    for (size_t i = 0; i < m; i++) {
        const float *d = dy + i * out;
        for (size_t q = 0; q < pairs; q++) {
            uint32_t lo = f32_to_bf16(d[2 * q]), hi = 2 * q + 1 < out ? f32_to_bf16(d[2 * q + 1]) : 0;
            p[i * pairs + q] = lo | hi << 16;
        }
    }
    return p;
}

typedef struct { int split_rows; size_t total, align, min_part; } split_plan;

static size_t ceil_div(size_t a, size_t b) { return b == 0 ? a : (a + b - 1) / b; }

// Forward: split W's rows (y's columns) when there are at least 16 per thread, else x's rows.
static split_plan plan_forward(size_t m, size_t in, size_t out) {
    size_t threads = (size_t)tmf_get_kernel_threads(), k = in ? in : 1;
    split_plan p;
    if (out >= 16 * threads || m < 2) p = (split_plan){0, out, 16, ceil_div(HM_MIN_PART_MACS, m * k)};
    else p = (split_plan){1, m, 4, ceil_div(HM_MIN_PART_MACS, out * k)};
    if (p.min_part < 1) p.min_part = 1;
    return p;
}

// Input gradient: split dx's columns in 32s when there are enough, else its rows.
static split_plan plan_input_grad(size_t m, size_t in, size_t out) {
    size_t threads = (size_t)tmf_get_kernel_threads(), n = out ? out : 1;
    split_plan p;
    if (in >= 32 * threads || m < 2) p = (split_plan){0, in, 32, ceil_div(HM_MIN_PART_MACS, m * n)};
    else p = (split_plan){1, m, 8, ceil_div(HM_MIN_PART_MACS, in * n)};
    if (p.min_part < 1) p.min_part = 1;
    return p;
}

int tmf_half_planned_parts(int backward, size_t m, size_t in, size_t out) {
    split_plan p = backward ? plan_input_grad(m, in, out) : plan_forward(m, in, out);
    size_t threads = (size_t)tmf_get_kernel_threads(), parts = p.total / p.min_part,
           units = ceil_div(p.total, p.align);
    if (parts > threads) parts = threads;
    if (parts > units) parts = units;
    return parts < 1 ? 1 : (int)parts;
}

// ---- portable C ----

// Eight running sums (lane = k mod 8) per output, added pairwise at the end.
static void forward_portable(const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    enum { KC = 512, G = 16 };
    float wf[KC], acc[G][8];
    size_t in = c->in;
    for (size_t o = o0; o < o1; o++) {
        const uint16_t *wr = c->w + o * in;
        for (size_t ig = i0; ig < i1; ig += G) {
            size_t ng = min_sz(G, i1 - ig);
            memset(acc, 0, sizeof acc);
            for (size_t k0 = 0; k0 < in; k0 += KC) {
                size_t n = min_sz(KC, in - k0);
                if (c->format == TMF_HALF_F16) for (size_t k = 0; k < n; k++) wf[k] = f16_to_f32(wr[k0 + k]);
                else for (size_t k = 0; k < n; k++) wf[k] = bf16_to_f32(wr[k0 + k]);
                for (size_t g = 0; g < ng; g++) {
                    const float *xr = c->x + (ig + g) * in + k0;
                    float *a = acc[g];
                    size_t k = 0;
                    for (; k + 8 <= n; k += 8)
                        for (int l = 0; l < 8; l++) a[l] += wf[k + l] * xr[k + l];
                    for (; k < n; k++) a[k & 7] += wf[k] * xr[k];
                }
            }
            for (size_t g = 0; g < ng; g++) {
                const float *a = acc[g];
                float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
                float *y = c->y + (ig + g) * c->out + o;
                *y = c->accumulate ? *y + s : s;
            }
        }
    }
}

// One running sum per output, over W's rows in order.
static void input_grad_portable(const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    enum { KC = 256, G = 4 };
    float wf[KC], acc[G][KC];
    size_t in = c->in, out = c->out;
    for (size_t ig = i0; ig < i1; ig += G) {
        size_t ng = min_sz(G, i1 - ig);
        for (size_t kb = k0; kb < k1; kb += KC) {
            size_t n = min_sz(KC, k1 - kb);
            for (size_t g = 0; g < ng; g++) memset(acc[g], 0, n * sizeof(float));
            for (size_t o = 0; o < out; o++) {
                const uint16_t *wr = c->w + o * in + kb;
                if (c->format == TMF_HALF_F16) for (size_t k = 0; k < n; k++) wf[k] = f16_to_f32(wr[k]);
                else for (size_t k = 0; k < n; k++) wf[k] = bf16_to_f32(wr[k]);
                for (size_t g = 0; g < ng; g++) {
                    float d = c->dy[(ig + g) * out + o], *a = acc[g];
                    for (size_t k = 0; k < n; k++) a[k] += d * wf[k];
                }
            }
            for (size_t g = 0; g < ng; g++) {
                float *dst = c->dx + (ig + g) * in + kb;
                for (size_t k = 0; k < n; k++) dst[k] = c->accumulate ? dst[k] + acc[g][k] : acc[g][k];
            }
        }
    }
}

#if HM_X86
// ---- helpers of the SIMD paths ----

static inline float half_to_f32(int format, uint16_t h) {
    return format == TMF_HALF_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

// The forward's k block: with several tiles of x rows, each passes over a block of W rows
// HM_KC columns at a time, so that its columns of x stay in L1 while every W tile of the block
// meets them; the tiles' vector sums wait in memory between k blocks (stored as they are, so
// the result is the same as without blocks). A single tile (decoding) reads whole rows.
#define HM_KC ((size_t)1024)
#define HM_NB_MAX ((size_t)128)

static inline size_t forward_kc(size_t rows, size_t tile_rows, size_t in) {
    return rows > tile_rows && in > HM_KC ? HM_KC : (in ? in : 1);
}

// W rows per forward block: the block's k block (about HM_W_BLOCK_BYTES) stays in L2.
static inline size_t w_block_rows(size_t kc) {
    size_t rows = HM_W_BLOCK_BYTES / (2 * kc);
    rows -= rows % 4;
    return rows < 4 ? 4 : (rows > HM_NB_MAX ? HM_NB_MAX : rows);
}

// Writes a tile of forward sums s[r][q] to y[i + r, o + q].
static inline void store_tile(const fwd_ctx *c, size_t i, int R, size_t o, int C, float s[4][4]) {
    for (int r = 0; r < R; r++) {
        float *yr = c->y + (i + (size_t)r) * c->out + o;
        for (int q = 0; q < C; q++) yr[q] = c->accumulate ? yr[q] + s[r][q] : s[r][q];
    }
}

// The four W rows of a forward tile starting at row o (repeating the block's last row past its
// end; those results are not stored).
static inline void tile_rows(const fwd_ctx *c, size_t o, size_t end, const uint16_t *w[4]) {
    for (int q = 0; q < 4; q++) w[q] = c->w + min_sz(o + (size_t)q, end - 1) * c->in;
}

// The input gradient's SIMD paths walk a strip of W (columns k … k + width) down all `out`
// rows, once per tile of dy rows. Rows of W are `in` apart, so each step would touch another
// page; with more than one tile the strip is first copied into a contiguous buffer (out ×
// width halves), which later tiles then read from cache. NULL (no copy) if memory is short.
static inline uint16_t *strip_alloc(size_t out, size_t width) { return alloc64(out * width * sizeof(uint16_t)); }

static inline void strip_copy(uint16_t *strip, const bwd_ctx *c, size_t k, size_t width) {
    for (size_t o = 0; o < c->out; o++) memcpy(strip + o * width, c->w + o * c->in + k, width * sizeof(uint16_t));
}

#define HM_T512 __attribute__((target("avx512f,avx512bw")))
// The AVX512-BF16 kernels, real and emulated, are compiled for AVX512-BF16; the emulated ones
// contain no AVX512-BF16 instruction (dp_bf16 takes the emulation when `emulate` is 1), so
// they run on any AVX-512F + BW CPU.
#define HM_T512BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#define HM_T256 __attribute__((target("avx2,fma,f16c")))

// ---- AVX-512F (+BW): weights widened to fp32 ----

// The 32 halves of v as two fp32 vectors: bf16 split into even / odd elements (lo: 0, 2, …, 30;
// hi: 1, 3, …, 31; one shift or mask each), f16 into elements 0…15 / 16…31.
HM_INLINE HM_T512 void widen32(int format, __m512i v, __m512 *lo, __m512 *hi) {
    if (format == TMF_HALF_BF16) {
        *lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        *hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
    } else {
        *lo = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
        *hi = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
    }
}

HM_INLINE HM_T512 __m512i load32(const uint16_t *p, int masked, __mmask32 mask) {
    return masked ? _mm512_maskz_loadu_epi16(mask, p) : _mm512_loadu_si512(p);
}

// One 32-element chunk at `off` of rows r < R of packed x against four rows of W.
HM_INLINE HM_T512 void forward512_step(int format, int R, int q0, int q1, const uint16_t *const w[4], size_t off,
                                       int masked, __mmask32 mask, const float *xp, size_t kp, __m512 acc[4][4]) {
    __m512 xa[4], xb[4];
    for (int r = 0; r < R; r++) {
        xa[r] = _mm512_loadu_ps(xp + (size_t)r * kp + off);
        xb[r] = _mm512_loadu_ps(xp + (size_t)r * kp + off + 16);
    }
    for (int q = q0; q < q1; q++) {
        __m512 lo, hi;
        widen32(format, load32(w[q] + off, masked, mask), &lo, &hi);
        for (int r = 0; r < R; r++) {
            acc[r][q] = _mm512_fmadd_ps(lo, xa[r], acc[r][q]);
            acc[r][q] = _mm512_fmadd_ps(hi, xb[r], acc[r][q]);
        }
    }
}

// The sums of four vectors' lanes, s[q] = Σ lanes of v[q], in one transposing tree (halves
// added, then three horizontal adds) instead of four separate reductions: the end of every
// forward tile, which a decoding step (one x row, rows of W only 768 long on small models)
// meets once per four outputs. Every row of every tile is summed by it, so the order still
// depends only on the path and `in`.
HM_INLINE HM_T512 void reduce4_512(const __m512 v[4], float s[4]) {
    __m256 h[4];
    for (int q = 0; q < 4; q++)
        h[q] = _mm256_add_ps(_mm512_castps512_ps256(v[q]),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[q]), 1)));
    __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    _mm_storeu_ps(s, _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
}

// Columns [k0, k1) of rows r < R of packed x against four rows of W, continuing the vector sums
// in `saved` (starting from zero when `first`); when `last`, s[r][q] = Σₖ x[r, k] · W[q, k]
// (TILE); and the forward's blocks of W rows, tiles of four x rows and k blocks over a part of
// the work (RUN). Defined once for the two 512-bit paths, which differ in the step STEP(sel, R,
// q0, q1, w, off, masked, mask, xp, kp, acc) (W rows q0..<q1 of the four), the type XT of packed
// x and the target ATTR; `sel` is the step's constant selector (the weight format, or whether to
// emulate vdpbf16ps). With one x row (decoding) the tile reads W's four rows one after another
// rather than interleaved: rows 768 long made four short streams that the prefetchers followed
// badly (768 × 32000 bf16 from memory, 2 threads: 28 → 47 GB/s; 110M bf16 decode on a Zen 4,
// alternated: 95-102 → 120-131 tok/s). Each output's sum is the same sequence of steps either
// way, so the bits do not change.
#define HM_DEFINE_FORWARD512(TILE, RUN, ATTR, STEP, XT)                                                        \
    HM_INLINE ATTR void TILE(int sel, int R, const uint16_t *const w[4], const XT *xp, size_t kp, size_t k0,   \
                             size_t k1, int first, int last, __m512 saved[16], float s[4][4]) {                \
        __m512 acc[4][4];                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int q = 0; q < 4; q++) acc[r][q] = first ? _mm512_setzero_ps() : saved[r * 4 + q];           \
        __mmask32 tail = (__mmask32)((1u << ((k1 - k0) % 32)) - 1);                                            \
        if (R == 1) {                                                                                          \
            /* One x row (decoding): W's four rows one after the other, one stream through memory. */        \
            for (int q = 0; q < 4; q++) {                                                                      \
                size_t off = k0;                                                                               \
                for (; off + 32 <= k1; off += 32) STEP(sel, 1, q, q + 1, w, off, 0, 0, xp, kp, acc);           \
                if (off < k1) STEP(sel, 1, q, q + 1, w, off, 1, tail, xp, kp, acc);                           \
            }                                                                                                  \
        } else {                                                                                               \
            size_t off = k0;                                                                                   \
            for (; off + 32 <= k1; off += 32) STEP(sel, R, 0, 4, w, off, 0, 0, xp, kp, acc);                    \
            if (off < k1) STEP(sel, R, 0, 4, w, off, 1, tail, xp, kp, acc);                                   \
        }                                                                                                      \
        for (int r = 0; r < R; r++) {                                                                          \
            if (last) reduce4_512(acc[r], s[r]);                                                               \
            else                                                                                               \
                for (int q = 0; q < 4; q++) saved[r * 4 + q] = acc[r][q];                                      \
        }                                                                                                      \
    }                                                                                                          \
    HM_INLINE ATTR void RUN(int sel, const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {           \
        size_t in = c->in, kc = forward_kc(i1 - i0, 4, in), nb = w_block_rows(kc);                            \
        __m512 saved[HM_NB_MAX / 4][16];                                                                       \
        for (size_t ob = o0; ob < o1; ob += nb) {                                                              \
            size_t oe = min_sz(ob + nb, o1);                                                                   \
            for (size_t i = i0; i < i1; i += 4) {                                                              \
                int R = (int)min_sz(4, i1 - i);                                                                \
                const XT *xp = (const XT *)c->xp + i * c->kp;                                                  \
                size_t k0 = 0;                                                                                 \
                do {                                                                                           \
                    size_t k1 = min_sz(k0 + kc, in);                                                           \
                    int first = k0 == 0, last = k1 == in;                                                      \
                    for (size_t o = ob, t = 0; o < oe; o += 4, t++) {                                          \
                        const uint16_t *w[4];                                                                  \
                        float s[4][4];                                                                         \
                        tile_rows(c, o, oe, w);                                                                \
                        switch (R) {                                                                           \
                        case 1: TILE(sel, 1, w, xp, c->kp, k0, k1, first, last, saved[t], s); break;           \
                        case 2: TILE(sel, 2, w, xp, c->kp, k0, k1, first, last, saved[t], s); break;           \
                        case 3: TILE(sel, 3, w, xp, c->kp, k0, k1, first, last, saved[t], s); break;           \
                        default: TILE(sel, 4, w, xp, c->kp, k0, k1, first, last, saved[t], s); break;          \
                        }                                                                                      \
                        if (last) store_tile(c, i, R, o, (int)min_sz(4, oe - o), s);                           \
                    }                                                                                          \
                    k0 = k1;                                                                                   \
                } while (k0 < in);                                                                             \
            }                                                                                                  \
        }                                                                                                      \
    }

HM_DEFINE_FORWARD512(forward512_tile, forward512_run, HM_T512, forward512_step, float)

HM_T512 static void forward_avx512(const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    if (c->format == TMF_HALF_F16) forward512_run(TMF_HALF_F16, c, i0, i1, o0, o1);
    else forward512_run(TMF_HALF_BF16, c, i0, i1, o0, o1);
}

// Columns for bf16 lanes (even / odd columns) put back in order: element j of the result is
// element idx[j] of (even ‖ odd).
HM_INLINE HM_T512 void interleave512(__m512 even, __m512 odd, __m512 *first, __m512 *second) {
    const __m512i a = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i b = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    *first = _mm512_permutex2var_ps(even, a, odd);
    *second = _mm512_permutex2var_ps(even, b, odd);
}

// Stores (or adds) 32 column-ordered sums to dst, the first `ncols` of them when masked.
HM_INLINE HM_T512 void store32(float *dst, __m512 v0, __m512 v1, int masked, __mmask32 mask, int accumulate) {
    __mmask16 m0 = masked ? (__mmask16)mask : (__mmask16)0xFFFF, m1 = masked ? (__mmask16)(mask >> 16) : (__mmask16)0xFFFF;
    if (accumulate) {
        v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, dst), v0);
        v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, dst + 16), v1);
    }
    _mm512_mask_storeu_ps(dst, m0, v0);
    _mm512_mask_storeu_ps(dst + 16, m1, v1);
}

// dx[i + r, k … k + 32) for r < R: a running fused multiply-add over W's rows. wp points at
// W[0, k], successive rows `stride` apart (in W itself, or in a packed strip).
HM_INLINE HM_T512 void input_grad512_tile(int format, int R, int masked, const bwd_ctx *c, size_t i, size_t k,
                                          size_t ncols, const uint16_t *wp, size_t stride) {
    __m512 a[8], b[8];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
    __mmask32 mask = masked ? (__mmask32)((1u << ncols) - 1) : (__mmask32)0xFFFFFFFFu;
    size_t out = c->out;
    const float *d = c->dy + i * out;
    for (size_t o = 0; o < out; o++, wp += stride) {
        __m512 lo, hi;
        widen32(format, load32(wp, masked, mask), &lo, &hi);
        for (int r = 0; r < R; r++) {
            __m512 dv = _mm512_set1_ps(d[(size_t)r * out + o]);
            a[r] = _mm512_fmadd_ps(dv, lo, a[r]);
            b[r] = _mm512_fmadd_ps(dv, hi, b[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        __m512 v0 = a[r], v1 = b[r];
        if (format == TMF_HALF_BF16) interleave512(a[r], b[r], &v0, &v1);
        store32(c->dx + (i + (size_t)r) * c->in + k, v0, v1, masked, mask, c->accumulate);
    }
}

// The input gradient's 32-column strips over a part of the work, tiles of up to eight dy rows
// (TILE(sel, R, masked, c, i, k, ncols, wp, stride)); defined once for the two 512-bit paths.
#define HM_DEFINE_INPUT_GRAD512_RUN(RUN, ATTR, TILE)                                                           \
    HM_INLINE ATTR void RUN(int sel, const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {           \
        uint16_t *strip = i1 - i0 > 8 ? strip_alloc(c->out, 32) : NULL;                                        \
        for (size_t k = k0; k < k1; k += 32) {                                                                 \
            size_t nc = min_sz(32, k1 - k);                                                                    \
            if (nc < 32) {                                                                                     \
                for (size_t i = i0; i < i1; i++) TILE(sel, 1, 1, c, i, k, nc, c->w + k, c->in);                \
                continue;                                                                                      \
            }                                                                                                  \
            const uint16_t *wp = c->w + k;                                                                     \
            size_t stride = c->in;                                                                             \
            if (strip) { strip_copy(strip, c, k, 32); wp = strip; stride = 32; }                               \
            for (size_t i = i0; i < i1; i += 8) {                                                              \
                switch (min_sz(8, i1 - i)) {                                                                   \
                case 1: TILE(sel, 1, 0, c, i, k, 32, wp, stride); break;                                       \
                case 2: TILE(sel, 2, 0, c, i, k, 32, wp, stride); break;                                       \
                case 3: TILE(sel, 3, 0, c, i, k, 32, wp, stride); break;                                       \
                case 4: TILE(sel, 4, 0, c, i, k, 32, wp, stride); break;                                       \
                case 5: TILE(sel, 5, 0, c, i, k, 32, wp, stride); break;                                       \
                case 6: TILE(sel, 6, 0, c, i, k, 32, wp, stride); break;                                       \
                case 7: TILE(sel, 7, 0, c, i, k, 32, wp, stride); break;                                       \
                default: TILE(sel, 8, 0, c, i, k, 32, wp, stride); break;                                      \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        free(strip);                                                                                           \
    }

HM_DEFINE_INPUT_GRAD512_RUN(input_grad512_run, HM_T512, input_grad512_tile)

HM_T512 static void input_grad_avx512(const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    if (c->format == TMF_HALF_F16) input_grad512_run(TMF_HALF_F16, c, i0, i1, k0, k1);
    else input_grad512_run(TMF_HALF_BF16, c, i0, i1, k0, k1);
}

// ---- AVX512-BF16: vdpbf16ps on bf16 weights and bf16-rounded activations ----

// acc + a·b over bf16 pairs: per fp32 lane j, acc += a[2j+1]·b[2j+1], then acc += a[2j]·b[2j]
// (Intel's definition). Emulated: the same two steps as fp32 FMAs, exact products of widened
// bf16 (what the instruction computes, except that it treats bf16 subnormals as zero).
HM_INLINE HM_T512BF16 __m512 dp_bf16(int emulate, __m512 acc, __m512i a, __m512i b) {
    if (!emulate) return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
    const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(a, high)), _mm512_castsi512_ps(_mm512_and_si512(b, high)), acc);
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), acc);
}

HM_INLINE HM_T512BF16 void forward_bf16_step(int emulate, int R, int q0, int q1, const uint16_t *const w[4], size_t off,
                                             int masked, __mmask32 mask, const uint16_t *xp, size_t kp, __m512 acc[4][4]) {
    __m512i xv[4];
    for (int r = 0; r < R; r++) xv[r] = _mm512_loadu_si512(xp + (size_t)r * kp + off);
    for (int q = q0; q < q1; q++) {
        __m512i v = masked ? _mm512_maskz_loadu_epi16(mask, w[q] + off) : _mm512_loadu_si512(w[q] + off);
        for (int r = 0; r < R; r++) acc[r][q] = dp_bf16(emulate, acc[r][q], v, xv[r]);
    }
}

HM_DEFINE_FORWARD512(forward_bf16_tile, forward_bf16_run, HM_T512BF16, forward_bf16_step, uint16_t)

HM_T512BF16 static void forward_bf16dot(const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    forward_bf16_run(0, c, i0, i1, o0, o1);
}

HM_T512BF16 static void forward_bf16dot_emulated(const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    forward_bf16_run(1, c, i0, i1, o0, o1);
}

// dx[i + r, k … k + 32) for r < R over pairs of W rows (2p, 2p + 1): their words interleaved
// (vpunpck{l,h}wd) give lane j the pair (W[2p, col], W[2p + 1, col]), multiplied with the pair
// (dy[i, 2p], dy[i, 2p + 1]). Lanes of `lo` hold columns 8L + 0…3 of each 128-bit lane L, lanes
// of `hi` columns 8L + 4…7.
HM_INLINE HM_T512BF16 void input_grad_bf16_tile(int emulate, int R, int masked, const bwd_ctx *c, size_t i, size_t k,
                                                size_t ncols, const uint16_t *wp, size_t stride) {
    __m512 a[8], b[8];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm512_setzero_ps();
    __mmask32 mask = masked ? (__mmask32)((1u << ncols) - 1) : (__mmask32)0xFFFFFFFFu;
    size_t in = c->in, pairs = (c->out + 1) / 2;
    const uint32_t *d = c->dyp + i * pairs;
    for (size_t p = 0; p < pairs; p++, wp += 2 * stride) {
        __m512i w0 = masked ? _mm512_maskz_loadu_epi16(mask, wp) : _mm512_loadu_si512(wp), w1 = _mm512_setzero_si512();
        if (2 * p + 1 < c->out) w1 = masked ? _mm512_maskz_loadu_epi16(mask, wp + stride) : _mm512_loadu_si512(wp + stride);
        __m512i lo = _mm512_unpacklo_epi16(w0, w1), hi = _mm512_unpackhi_epi16(w0, w1);
        for (int r = 0; r < R; r++) {
            __m512i dv = _mm512_set1_epi32((int)d[(size_t)r * pairs + p]);
            a[r] = dp_bf16(emulate, a[r], lo, dv);
            b[r] = dp_bf16(emulate, b[r], hi, dv);
        }
    }
    const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int r = 0; r < R; r++) {
        __m512 v0 = _mm512_permutex2var_ps(a[r], first, b[r]), v1 = _mm512_permutex2var_ps(a[r], second, b[r]);
        store32(c->dx + (i + (size_t)r) * in + k, v0, v1, masked, mask, c->accumulate);
    }
}

HM_DEFINE_INPUT_GRAD512_RUN(input_grad_bf16_run, HM_T512BF16, input_grad_bf16_tile)

HM_T512BF16 static void input_grad_bf16dot(const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    input_grad_bf16_run(0, c, i0, i1, k0, k1);
}

HM_T512BF16 static void input_grad_bf16dot_emulated(const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    input_grad_bf16_run(1, c, i0, i1, k0, k1);
}

// ---- AVX2 + FMA + F16C: weights widened to fp32 ----

HM_INLINE HM_T256 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// As widen32 for 16 halves: bf16 even / odd elements, f16 elements 0…7 / 8…15.
HM_INLINE HM_T256 void widen16(int format, __m256i v, __m256 *lo, __m256 *hi) {
    if (format == TMF_HALF_BF16) {
        *lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        *hi = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xFFFF0000u)));
    } else {
        *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(v));
        *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1));
    }
}

// 16 halves from p, or the first n (< 16) followed by zeros.
HM_INLINE HM_T256 __m256i load16(const uint16_t *p, size_t n) {
    if (n >= 16) return _mm256_loadu_si256((const __m256i *)p);
    uint16_t buf[16] = {0};
    memcpy(buf, p, n * sizeof(uint16_t));
    return _mm256_loadu_si256((const __m256i *)buf);
}

HM_INLINE HM_T256 void forward256_step(int format, int R, const uint16_t *const w[4], size_t off, size_t n,
                                       const float *xp, size_t kp, __m256 acc[2][4]) {
    __m256 xa[2], xb[2];
    for (int r = 0; r < R; r++) {
        xa[r] = _mm256_loadu_ps(xp + (size_t)r * kp + off);
        xb[r] = _mm256_loadu_ps(xp + (size_t)r * kp + off + 8);
    }
    for (int q = 0; q < 4; q++) {
        __m256 lo, hi;
        widen16(format, load16(w[q] + off, n), &lo, &hi);
        for (int r = 0; r < R; r++) {
            acc[r][q] = _mm256_fmadd_ps(lo, xa[r], acc[r][q]);
            acc[r][q] = _mm256_fmadd_ps(hi, xb[r], acc[r][q]);
        }
    }
}

// As forward512_tile, for two rows of x at most.
HM_INLINE HM_T256 void forward256_tile(int format, int R, const uint16_t *const w[4], const float *xp, size_t kp,
                                       size_t k0, size_t k1, int first, int last, __m256 saved[8], float s[4][4]) {
    __m256 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = first ? _mm256_setzero_ps() : saved[r * 4 + q];
    size_t off = k0;
    for (; off + 16 <= k1; off += 16) forward256_step(format, R, w, off, 16, xp, kp, acc);
    if (off < k1) forward256_step(format, R, w, off, k1 - off, xp, kp, acc);
    for (int r = 0; r < R; r++)
        for (int q = 0; q < 4; q++) {
            if (last) s[r][q] = hsum8(acc[r][q]);
            else saved[r * 4 + q] = acc[r][q];
        }
}

HM_INLINE HM_T256 void forward256_run(int format, const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    size_t in = c->in, kc = forward_kc(i1 - i0, 2, in), nb = w_block_rows(kc);
    __m256 saved[HM_NB_MAX / 4][8];
    for (size_t ob = o0; ob < o1; ob += nb) {
        size_t oe = min_sz(ob + nb, o1);
        for (size_t i = i0; i < i1; i += 2) {
            int R = (int)min_sz(2, i1 - i);
            const float *xp = (const float *)c->xp + i * c->kp;
            size_t k0 = 0;
            do {
                size_t k1 = min_sz(k0 + kc, in);
                int first = k0 == 0, last = k1 == in;
                for (size_t o = ob, t = 0; o < oe; o += 4, t++) {
                    const uint16_t *w[4];
                    float s[4][4];
                    tile_rows(c, o, oe, w);
                    if (R == 1) forward256_tile(format, 1, w, xp, c->kp, k0, k1, first, last, saved[t], s);
                    else forward256_tile(format, 2, w, xp, c->kp, k0, k1, first, last, saved[t], s);
                    if (last) store_tile(c, i, R, o, (int)min_sz(4, oe - o), s);
                }
                k0 = k1;
            } while (k0 < in);
        }
    }
}

HM_T256 static void forward_avx2(const fwd_ctx *c, size_t i0, size_t i1, size_t o0, size_t o1) {
    if (c->format == TMF_HALF_F16) forward256_run(TMF_HALF_F16, c, i0, i1, o0, o1);
    else forward256_run(TMF_HALF_BF16, c, i0, i1, o0, o1);
}

// dx[i + r, k … k + 16) for r < R, as input_grad512_tile.
HM_INLINE HM_T256 void input_grad256_tile(int format, int R, const bwd_ctx *c, size_t i, size_t k, const uint16_t *wp,
                                          size_t stride) {
    __m256 a[6], b[6];
    for (int r = 0; r < R; r++) a[r] = b[r] = _mm256_setzero_ps();
    size_t out = c->out;
    const float *d = c->dy + i * out;
    for (size_t o = 0; o < out; o++, wp += stride) {
        __m256 lo, hi;
        widen16(format, _mm256_loadu_si256((const __m256i *)wp), &lo, &hi);
        for (int r = 0; r < R; r++) {
            __m256 dv = _mm256_broadcast_ss(d + (size_t)r * out + o);
            a[r] = _mm256_fmadd_ps(dv, lo, a[r]);
            b[r] = _mm256_fmadd_ps(dv, hi, b[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        __m256 v0 = a[r], v1 = b[r];
        if (format == TMF_HALF_BF16) {  // even / odd columns back in order
            __m256 t0 = _mm256_unpacklo_ps(a[r], b[r]), t1 = _mm256_unpackhi_ps(a[r], b[r]);
            v0 = _mm256_permute2f128_ps(t0, t1, 0x20);
            v1 = _mm256_permute2f128_ps(t0, t1, 0x31);
        }
        float *dst = c->dx + (i + (size_t)r) * c->in + k;
        if (c->accumulate) {
            v0 = _mm256_add_ps(_mm256_loadu_ps(dst), v0);
            v1 = _mm256_add_ps(_mm256_loadu_ps(dst + 8), v1);
        }
        _mm256_storeu_ps(dst, v0);
        _mm256_storeu_ps(dst + 8, v1);
    }
}

// The last (< 16) columns: the same running fused multiply-add, one column at a time.
HM_INLINE HM_T256 void input_grad256_tail(int format, const bwd_ctx *c, size_t i, size_t k, size_t ncols) {
    size_t out = c->out;
    for (size_t j = k; j < k + ncols; j++) {
        float s = 0.0f;
        for (size_t o = 0; o < out; o++) s = fmaf(c->dy[i * out + o], half_to_f32(format, c->w[o * c->in + j]), s);
        float *dst = c->dx + i * c->in + j;
        *dst = c->accumulate ? *dst + s : s;
    }
}

HM_INLINE HM_T256 void input_grad256_run(int format, const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    uint16_t *strip = i1 - i0 > 6 ? strip_alloc(c->out, 16) : NULL;
    for (size_t k = k0; k < k1; k += 16) {
        size_t nc = min_sz(16, k1 - k);
        if (nc < 16) {
            for (size_t i = i0; i < i1; i++) input_grad256_tail(format, c, i, k, nc);
            continue;
        }
        const uint16_t *wp = c->w + k;
        size_t stride = c->in;
        if (strip) { strip_copy(strip, c, k, 16); wp = strip; stride = 16; }
        for (size_t i = i0; i < i1; i += 6) {
            switch (min_sz(6, i1 - i)) {
            case 1: input_grad256_tile(format, 1, c, i, k, wp, stride); break;
            case 2: input_grad256_tile(format, 2, c, i, k, wp, stride); break;
            case 3: input_grad256_tile(format, 3, c, i, k, wp, stride); break;
            case 4: input_grad256_tile(format, 4, c, i, k, wp, stride); break;
            case 5: input_grad256_tile(format, 5, c, i, k, wp, stride); break;
            default: input_grad256_tile(format, 6, c, i, k, wp, stride); break;
            }
        }
    }
    free(strip);
}

HM_T256 static void input_grad_avx2(const bwd_ctx *c, size_t i0, size_t i1, size_t k0, size_t k1) {
    if (c->format == TMF_HALF_F16) input_grad256_run(TMF_HALF_F16, c, i0, i1, k0, k1);
    else input_grad256_run(TMF_HALF_BF16, c, i0, i1, k0, k1);
}
#endif  // HM_X86

// ---- entry points ----

static void forward_range(void *p, size_t b, size_t e) {
    const fwd_ctx *c = p;
    size_t i0 = 0, i1 = c->m, o0 = 0, o1 = c->out;
    if (c->split_rows) { i0 = b; i1 = e; } else { o0 = b; o1 = e; }
    switch (c->path) {
#if HM_X86
    case TMF_HALF_PATH_AVX512_BF16: forward_bf16dot(c, i0, i1, o0, o1); return;
    case TMF_HALF_PATH_AVX512_BF16_EMULATED: forward_bf16dot_emulated(c, i0, i1, o0, o1); return;
    case TMF_HALF_PATH_AVX512: forward_avx512(c, i0, i1, o0, o1); return;
    case TMF_HALF_PATH_AVX2: forward_avx2(c, i0, i1, o0, o1); return;
#endif
    default: forward_portable(c, i0, i1, o0, o1); return;
    }
}

void tmf_half_matmul(int format, const uint16_t *w, const float *x, float *y, size_t m, size_t in, size_t out,
                     int accumulate) {
    if (m == 0 || out == 0) return;
    fwd_ctx c = {0};
    c.format = format == TMF_HALF_F16 ? TMF_HALF_F16 : TMF_HALF_BF16;
    c.path = tmf_half_path(c.format);
    c.accumulate = accumulate != 0;
    c.w = w;
    c.x = x;
    c.y = y;
    c.m = m;
    c.in = in;
    c.out = out;
    void *packed = NULL;
    if (c.path != TMF_HALF_PATH_PORTABLE) {
        c.kp = ceil_div(in, chunk_of(c.path)) * chunk_of(c.path);
        packed = pack_x(&c);
        if (!packed) c.path = TMF_HALF_PATH_PORTABLE;  // out of memory: the path that needs none
    }
    c.xp = packed;
    split_plan plan = plan_forward(m, in, out);
    c.split_rows = plan.split_rows;
    tmf_internal_parallel_for(forward_range, &c, plan.total, plan.align, plan.min_part, m < 16);  // m < 16: decoding
    free(packed);
}

static void input_grad_range(void *p, size_t b, size_t e) {
    const bwd_ctx *c = p;
    size_t i0 = 0, i1 = c->m, k0 = 0, k1 = c->in;
    if (c->split_rows) { i0 = b; i1 = e; } else { k0 = b; k1 = e; }
    switch (c->path) {
#if HM_X86
    case TMF_HALF_PATH_AVX512_BF16: input_grad_bf16dot(c, i0, i1, k0, k1); return;
    case TMF_HALF_PATH_AVX512_BF16_EMULATED: input_grad_bf16dot_emulated(c, i0, i1, k0, k1); return;
    case TMF_HALF_PATH_AVX512: input_grad_avx512(c, i0, i1, k0, k1); return;
    case TMF_HALF_PATH_AVX2: input_grad_avx2(c, i0, i1, k0, k1); return;
#endif
    default: input_grad_portable(c, i0, i1, k0, k1); return;
    }
}

void tmf_half_matmul_input_grad(int format, const uint16_t *w, const float *dy, float *dx, size_t m, size_t in,
                                size_t out, int accumulate) {
    if (m == 0 || in == 0) return;
    bwd_ctx c = {0};
    c.format = format == TMF_HALF_F16 ? TMF_HALF_F16 : TMF_HALF_BF16;
    c.path = tmf_half_path(c.format);
    c.accumulate = accumulate != 0;
    c.w = w;
    c.dy = dy;
    c.dx = dx;
    c.m = m;
    c.in = in;
    c.out = out;
    uint32_t *packed = NULL;
    if (c.path == TMF_HALF_PATH_AVX512_BF16 || c.path == TMF_HALF_PATH_AVX512_BF16_EMULATED) {
        packed = pack_pairs(dy, m, out);
        if (!packed) c.path = TMF_HALF_PATH_PORTABLE;  // out of memory: the path that needs none
    }
    c.dyp = packed;
    split_plan plan = plan_input_grad(m, in, out);
    c.split_rows = plan.split_rows;
    tmf_internal_parallel_for(input_grad_range, &c, plan.total, plan.align, plan.min_part, 0);
    free(packed);
}

void tmf_half_widen(int format, const uint16_t *src, float *dst, size_t n) {
    if (format == TMF_HALF_F16) for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
    else for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
}
