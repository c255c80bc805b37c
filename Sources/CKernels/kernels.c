#include "CKernels.h"
#include "internal.h"
#include "tmf_halfmatmul.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define TMF_X86 1
#else
#define TMF_X86 0
#endif

#if defined(__GLIBC__)
#include <malloc.h>
#endif

void tmf_configure_malloc(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

static int cpu_state = -1;  // -1 unknown, else TMF_CPU_* bits (internal.h)

static int cpu_flags(void) {
    int s = cpu_state;
    if (s >= 0) return s;
    s = 0;
#if TMF_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) s |= TMF_CPU_AVX512F;
    if (__builtin_cpu_supports("avx512bf16")) s |= TMF_CPU_AVX512BF16;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s |= TMF_CPU_AVX2_FMA;
    if (__builtin_cpu_supports("f16c")) s |= TMF_CPU_F16C;
    if (__builtin_cpu_supports("avx512bw")) s |= TMF_CPU_AVX512BW;
#endif
    cpu_state = s;
    return s;
}

int tmf_internal_cpu_flags(void) { return cpu_flags(); }

int tmf_has_avx512(void) { return cpu_flags() & 1; }
int tmf_has_avx512bf16(void) { return (cpu_flags() & 2) ? 1 : 0; }
int tmf_has_avx2(void) { return (cpu_flags() & 4) ? 1 : 0; }

int tmf_blas_core_hint(void) {
    int f = cpu_flags();  // initialises the CPU model the checks below read
#if TMF_X86
    if ((f & TMF_CPU_AVX512F) && (f & TMF_CPU_AVX512BW) && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd"))
        return 2;
#endif
    return (f & TMF_CPU_AVX2_FMA) ? 1 : 0;
}

// ---- kernel threads ----
// A few persistent workers that sleep on a condition variable between jobs, except after a
// latency-bound job (a decoding step's matrix-vector products): then a worker polls for the next
// job for a short while (POOL_SPIN_NS) first, since decoding posts one every few microseconds and
// a wake-up through the kernel costs about as much as the job. Other jobs (prefill, training:
// between OpenBLAS sgemm calls) never poll, so an idle worker does not take a core from
// OpenBLAS's threads. The calling thread runs
// part 0 itself. Work is cut into contiguous parts at element or row boundaries only, and every
// element is computed the same way whichever part it falls in, so results do not depend on
// the thread count. One job runs at a time; a second caller meanwhile runs on its own thread.

#define POOL_MAX 64
// Smallest part worth a thread (elements; rows kernels convert it to rows). Waking a sleeping
// worker costs some microseconds, so small tensors stay on the calling thread.
#define PAR_MIN_ELEMENTS 32768
// How long an idle worker polls for the next job before it sleeps (nanoseconds).
#define POOL_SPIN_NS 200000

typedef tmf_range_fn range_fn;

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;  // guards the fields below
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;    // a new job was posted
static pthread_cond_t pool_done = PTHREAD_COND_INITIALIZER;    // the last worker finished
static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;  // held by the job's caller
static atomic_ulong pool_generation;  // written under pool_lock; read without it while polling
static unsigned long pool_seen_at_start[POOL_MAX];
static int pool_workers;  // workers started (ids 1 … pool_workers)
static struct { range_fn fn; void *ctx; size_t total, align; int parts, poll; } pool_job;
static atomic_int pool_pending;  // worker parts of the current job not yet finished
static atomic_int kernel_threads;  // 0 until set: the number of online cores

void tmf_set_kernel_threads(int n) {
    if (n < 1) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    atomic_store(&kernel_threads, n);
}

int tmf_get_kernel_threads(void) {
    int n = atomic_load_explicit(&kernel_threads, memory_order_relaxed);
    if (n > 0) return n;
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    n = c < 1 ? 1 : (c > POOL_MAX ? POOL_MAX : (int)c);
    int expected = 0;
    atomic_compare_exchange_strong(&kernel_threads, &expected, n);
    return atomic_load(&kernel_threads);
}

// Part k of `parts` over [0, total), cut at multiples of `align`.
static void part_bounds(size_t total, size_t align, int parts, int k, size_t *begin, size_t *end) {
    size_t units = (total + align - 1) / align;
    size_t b = units * (size_t)k / (size_t)parts * align, e = units * (size_t)(k + 1) / (size_t)parts * align;
    *begin = b < total ? b : total;
    *end = e < total ? e : total;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// Polls until the generation moves past `seen` or POOL_SPIN_NS have passed.
static void poll_generation(unsigned long seen) {
    uint64_t start = now_ns();
    for (unsigned i = 1;; i++) {
        if (atomic_load_explicit(&pool_generation, memory_order_acquire) != seen) return;
#if TMF_X86
        _mm_pause();
#endif
        if ((i & 63) == 0 && now_ns() - start > POOL_SPIN_NS) return;
    }
}

static void *pool_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&pool_lock);
    unsigned long seen = pool_seen_at_start[id];
    int poll = 0;  // whether the last job asked for polling
    for (;;) {
        if (poll && atomic_load(&pool_generation) == seen) {
            pthread_mutex_unlock(&pool_lock);
            poll_generation(seen);
            pthread_mutex_lock(&pool_lock);
        }
        while (atomic_load(&pool_generation) == seen) pthread_cond_wait(&pool_wake, &pool_lock);
        seen = atomic_load(&pool_generation);
        poll = pool_job.poll;
        if (id >= pool_job.parts) continue;  // not needed for this job
        range_fn fn = pool_job.fn;
        void *ctx = pool_job.ctx;
        size_t b, e;
        part_bounds(pool_job.total, pool_job.align, pool_job.parts, id, &b, &e);
        pthread_mutex_unlock(&pool_lock);
        if (b < e) fn(ctx, b, e);
        pthread_mutex_lock(&pool_lock);
        if (atomic_fetch_sub(&pool_pending, 1) == 1) pthread_cond_signal(&pool_done);
    }
    return NULL;
}

// Starts workers up to `want` (called with pool_busy held); returns how many are running.
static int pool_ensure(int want) {
    if (pool_workers >= want) return pool_workers;
    pthread_mutex_lock(&pool_lock);
    while (pool_workers < want) {
        int id = pool_workers + 1;
        pool_seen_at_start[id] = atomic_load(&pool_generation);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t th;
        int rc = pthread_create(&th, &attr, pool_worker, (void *)(intptr_t)id);
        pthread_attr_destroy(&attr);
        if (rc != 0) break;
        pool_workers = id;
    }
    pthread_mutex_unlock(&pool_lock);
    return pool_workers;
}

// Runs fn over [0, total) in up to the kernel thread count of contiguous parts, each a
// multiple of `align` long (but the last) and at least `min_part` long.
static void parallel_for_polling(range_fn fn, void *ctx, size_t total, size_t align, size_t min_part, int poll) {
    if (min_part < 1) min_part = 1;
    size_t most = total / min_part;
    int threads = tmf_get_kernel_threads();
    int parts = most < (size_t)threads ? (int)most : threads;
    if (parts <= 1 || pthread_mutex_trylock(&pool_busy) != 0) {
        if (total) fn(ctx, 0, total);
        return;
    }
    int running = pool_ensure(parts - 1);
    if (parts > running + 1) parts = running + 1;
    if (parts <= 1) {
        pthread_mutex_unlock(&pool_busy);
        fn(ctx, 0, total);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    pool_job.fn = fn;
    pool_job.ctx = ctx;
    pool_job.total = total;
    pool_job.align = align;
    pool_job.parts = parts;
    pool_job.poll = poll;
    atomic_store(&pool_pending, parts - 1);
    atomic_fetch_add(&pool_generation, 1);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_lock);

    size_t b, e;
    part_bounds(total, align, parts, 0, &b, &e);
    if (b < e) fn(ctx, b, e);

    // The workers are busy on the other parts: wait briefly before sleeping.
    for (int spin = 0; spin < 4000 && atomic_load(&pool_pending) > 0; spin++) {
#if TMF_X86
        _mm_pause();
#endif
    }
    if (atomic_load(&pool_pending) > 0) {
        pthread_mutex_lock(&pool_lock);
        while (atomic_load(&pool_pending) > 0) pthread_cond_wait(&pool_done, &pool_lock);
        pthread_mutex_unlock(&pool_lock);
    }
    pthread_mutex_unlock(&pool_busy);
}

static void parallel_for(range_fn fn, void *ctx, size_t total, size_t align, size_t min_part) {
    parallel_for_polling(fn, ctx, total, align, min_part, 0);
}

void tmf_internal_parallel_for(tmf_range_fn fn, void *ctx, size_t total, size_t align, size_t min_part, int latency_bound) {
    parallel_for_polling(fn, ctx, total, align, min_part, latency_bound);
}

void tmf_parallel_for(void (*fn)(void *ctx, size_t begin, size_t end), void *ctx, size_t total) {
    parallel_for(fn, ctx, total, 1, 1);
}

typedef struct { const void *src; void *dst; } copy_ctx;
static void copy_range(void *c, size_t b, size_t e) {
    copy_ctx *k = c;
    memcpy((char *)k->dst + b, (const char *)k->src + b, e - b);
}

void tmf_parallel_copy(void *dst, const void *src, size_t bytes) {
    copy_ctx c = {src, dst};
    parallel_for(copy_range, &c, bytes, 4096, (size_t)PAR_MIN_ELEMENTS * 4);
}

// ---- exp: the shared algorithm ----
// exp(x) = 2ⁿ · p(r) with n = rint(x·log2 e) and r = x − n·ln 2 (two-step Cody–Waite), so
// |r| ≤ ln2/2; p is a degree-6 polynomial fitted for this file (minimax relative error 3e-9 with
// these Float32 coefficients, so the result is within about 2 ulp). n comes from the shifter
// 1.5·2²³: t = x·log2e + 1.5·2²³ rounds to an integer, n sits in t's low mantissa bits, and
// bits(t) << 23 is n in the exponent field, added straight onto p's bits. That is exact when
// n ∈ [−125, 127] (x ∈ [−86.99, 88.37]), where the result is a normal float; the vector paths
// send every other input (underflow, overflow, ±inf, NaN) to exp_scalar.
#define EXP_LOG2E 1.44269504088896341f
#define EXP_SHIFT 12582912.0f  // 1.5·2^23
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_C6 1.382094692e-3f
#define EXP_C5 8.368683979e-3f
#define EXP_C4 4.166826606e-2f
#define EXP_C3 1.666652113e-1f
#define EXP_C2 4.999999404e-1f
// The fast path needs bits(t) − EXP_T_MIN ≤ EXP_T_SPAN as unsigned (n = −125 … 127).
#define EXP_T_MIN (0x4B400000 - 125)
#define EXP_T_SPAN 252
// Softmax inputs are ≤ 0: below this the result would be subnormal, and is flushed to 0.
#define EXP_NEG_MIN -87.33654475f

static inline float exp_scalar(float x) {
    if (x > 88.72283935546875f) return INFINITY;
    if (x < -103.972084f) return 0.0f;
    if (x != x) return x;
    return expf(x);
}

// GELU (exact) as x·Φ(x) with Φ(−a) = e^(−a²/2) · S(a), a = |x|, and S = SP(a)/SQ(a) a rational
// fit (for this file) of the scaled normal tail on [0, 6.25], relative error 1.2e-7 with these
// coefficients (beyond 6.25, where a·Φ(−a) < 2e-9, it stays positive and bounded). Computing the tail
// directly keeps x·Φ(x) accurate for negative x, where 1 + erf(x/√2) would cancel. (The portable
// path uses the erf formula; see gelu_erf256 for |x| > 13.11.)
// SP/SQ scaled so that SQ is monic (its Horner scheme starts with an add).
#define GS_P0 1.444023800e+01f
#define GS_P1 9.707250595e+00f
#define GS_P2 3.040515900e+00f
#define GS_P3 3.987204432e-01f
#define GS_Q0 2.888047791e+01f
#define GS_Q1 4.245766830e+01f
#define GS_Q2 2.551820374e+01f
#define GS_Q3 7.606232643e+00f

// e^(−x²/2) for GELU, in terms of s = x²: n = rint(−s/2·log2 e) from the same shifter, and
// r' = s + 2n·ln2 (= −2r, one step: the Float32 ln 2 costs at most 4e-8 relative where the tail
// matters), then p(r) = 1 + Σ d_k·r'^k with d_k = c_k·(−1/2)^k from a degree-5 fit of eʳ
// (relative error 9e-8). Cheaper than exp() by three multiply-adds; accurate enough for a tail
// that is added to, or is, x·Φ(x) at relative error ~1e-7.
#define GX_LOG2E_HALF -0.721347520444481703f  // −log2(e)/2
#define GX_LN2_2 1.38629436f  // 2·ln 2 in Float32
#define GX_D1 -4.999998510e-01f
#define GX_D2 1.249978691e-01f
#define GX_D3 -2.083456703e-02f
#define GX_D4 2.618634840e-03f
#define GX_D5 -2.590396034e-04f

// Elementwise maps that go through exp.
enum { MAP_EXP, MAP_SILU, MAP_GELU_ERF, MAP_GELU_TANH, MAP_GELU_QUICK };

// The libm formula for each map (portable path, and lanes outside exp's fast range).
static float map_scalar(int kind, float v) {
    switch (kind) {
    case MAP_EXP: return exp_scalar(v);
    case MAP_SILU: return v / (1.0f + exp_scalar(-v));
    case MAP_GELU_ERF: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case MAP_GELU_TANH: return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    default: return v / (1.0f + exp_scalar(-1.702f * v));
    }
}

#if TMF_X86
#define TMF_AVX512 __attribute__((target("avx512f")))
#define TMF_AVX2 __attribute__((target("avx2,fma")))
#define TMF_INLINE static inline __attribute__((always_inline))

// ---- AVX-512 paths (same algorithms and operation order as the AVX2 ones, 16 lanes) ----
TMF_INLINE TMF_AVX512 __m512 exp512_t(__m512 x) {
    return _mm512_fmadd_ps(x, _mm512_set1_ps(EXP_LOG2E), _mm512_set1_ps(EXP_SHIFT));
}
// Lanes outside exp's fast range (including NaN and ±inf).
TMF_INLINE TMF_AVX512 __mmask16 exp512_slow(__m512 t) {
    __m512i d = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(EXP_T_MIN));
    return _mm512_cmpgt_epu32_mask(d, _mm512_set1_epi32(EXP_T_SPAN));
}
// p(r) ∈ [0.70, 1.42] for x and its t.
TMF_INLINE TMF_AVX512 __m512 exp512_poly(__m512 x, __m512 t) {
    __m512 n = _mm512_sub_ps(t, _mm512_set1_ps(EXP_SHIFT));
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(EXP_LN2_LO), r);
    // u = (c2 + c3·r) + r²·((c4 + c5·r) + r²·c6) by Estrin's scheme (a shorter dependency chain
    // than Horner), then p = 1 + (r + r²·u): the small part first, so p is rounded about once.
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 lo = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C3), r, _mm512_set1_ps(EXP_C2));
    __m512 mid = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C5), r, _mm512_set1_ps(EXP_C4));
    __m512 u = _mm512_fmadd_ps(_mm512_set1_ps(EXP_C6), r2, mid);
    u = _mm512_fmadd_ps(u, r2, lo);
    return _mm512_add_ps(_mm512_fmadd_ps(u, r2, r), _mm512_set1_ps(1.0f));
}
// eˣ for lanes in the fast range.
TMF_INLINE TMF_AVX512 __m512 exp512_fast(__m512 x, __m512 t) {
    __m512i e = _mm512_add_epi32(_mm512_castps_si512(exp512_poly(x, t)), _mm512_slli_epi32(_mm512_castps_si512(t), 23));
    return _mm512_castsi512_ps(e);
}
// eˣ for x ≤ 0 (softmax): 0 below EXP_NEG_MIN, NaN stays NaN.
TMF_INLINE TMF_AVX512 __m512 exp512_neg(__m512 x) {
    const __m512 lo = _mm512_set1_ps(EXP_NEG_MIN);
    __m512 xc = _mm512_max_ps(lo, x);  // NaN x passes through
    __m512 t = exp512_t(xc);
    __m512i s = _mm512_add_epi32(_mm512_slli_epi32(_mm512_castps_si512(t), 23), _mm512_set1_epi32(0x3F800000));
    __m512 e = _mm512_mul_ps(exp512_poly(xc, t), _mm512_castsi512_ps(s));
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ), e);
}

// The AVX-512 paths cover exp and SiLU; GELU uses the AVX2 kernels on every x86 CPU.
TMF_INLINE TMF_AVX512 __m512 map_arg512(int kind, __m512 v) {
    return kind == MAP_SILU ? _mm512_sub_ps(_mm512_setzero_ps(), v) : v;
}

TMF_INLINE TMF_AVX512 __m512 map_fin512(int kind, __m512 v, __m512 e) {
    return kind == MAP_SILU ? _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e)) : e;
}

// One vector of 16 from src to dst (which may be the same), slow lanes through libm.
TMF_INLINE TMF_AVX512 void map_one512(int kind, const float *src, float *dst, __mmask16 valid) {
    __m512 v = _mm512_maskz_loadu_ps(valid, src);
    __m512 a = map_arg512(kind, v), t = exp512_t(a);
    __mmask16 slow = exp512_slow(t) & valid;
    float keep[16];
    if (slow) _mm512_storeu_ps(keep, v);
    _mm512_mask_storeu_ps(dst, valid, map_fin512(kind, v, exp512_fast(a, t)));
    if (slow)
        for (int k = 0; k < 16; k++)
            if (slow & (1u << k)) dst[k] = map_scalar(kind, keep[k]);
}

TMF_INLINE TMF_AVX512 void map_avx512(int kind, const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        __m512 v2 = _mm512_loadu_ps(x + i + 32), v3 = _mm512_loadu_ps(x + i + 48);
        __m512 a0 = map_arg512(kind, v0), a1 = map_arg512(kind, v1), a2 = map_arg512(kind, v2), a3 = map_arg512(kind, v3);
        __m512 t0 = exp512_t(a0), t1 = exp512_t(a1), t2 = exp512_t(a2), t3 = exp512_t(a3);
        __mmask16 s0 = exp512_slow(t0), s1 = exp512_slow(t1), s2 = exp512_slow(t2), s3 = exp512_slow(t3);
        if (__builtin_expect((s0 | s1 | s2 | s3) != 0, 0)) {
            for (int k = 0; k < 4; k++) map_one512(kind, x + i + 16 * k, y + i + 16 * k, 0xFFFF);
            continue;
        }
        _mm512_storeu_ps(y + i, map_fin512(kind, v0, exp512_fast(a0, t0)));
        _mm512_storeu_ps(y + i + 16, map_fin512(kind, v1, exp512_fast(a1, t1)));
        _mm512_storeu_ps(y + i + 32, map_fin512(kind, v2, exp512_fast(a2, t2)));
        _mm512_storeu_ps(y + i + 48, map_fin512(kind, v3, exp512_fast(a3, t3)));
    }
    for (; i < n; i += 16) {
        size_t left = n - i;
        __mmask16 valid = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
        map_one512(kind, x + i, y + i, valid);
    }
}

TMF_AVX512 static void vexp_avx512(const float *x, float *y, size_t n) { map_avx512(MAP_EXP, x, y, n); }
TMF_AVX512 static void silu_avx512(const float *x, float *y, size_t n) { map_avx512(MAP_SILU, x, y, n); }

TMF_AVX512 static void softmax_avx512(const float *x, float *y, size_t rows, size_t cols, int logmode) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        size_t i = 0;
        __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
        for (; i + 32 <= cols; i += 32) {
            m0 = _mm512_max_ps(m0, _mm512_loadu_ps(xr + i));
            m1 = _mm512_max_ps(m1, _mm512_loadu_ps(xr + i + 16));
        }
        for (; i < cols; i += 16) {
            size_t left = cols - i;
            __mmask16 valid = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            m0 = _mm512_max_ps(m0, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), valid, xr + i));
        }
        float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
        if (m == -INFINITY) m = 0.0f;  // a fully masked row: avoid (-inf) - (-inf)
        __m512 mv = _mm512_set1_ps(m);
        __m512 s0 = _mm512_setzero_ps(), s1 = s0;
        i = 0;
        for (; i + 32 <= cols; i += 32) {
            if (r + 1 < rows) {  // as in softmax_avx2
                _mm_prefetch((const char *)(xr + cols + i), _MM_HINT_T0);
                _mm_prefetch((const char *)(xr + cols + i + 16), _MM_HINT_T0);
            }
            _mm_prefetch((const char *)(yr + i + 256), _MM_HINT_T0);
            _mm_prefetch((const char *)(yr + i + 256 + 16), _MM_HINT_T0);
            __m512 e0 = exp512_neg(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv));
            __m512 e1 = exp512_neg(_mm512_sub_ps(_mm512_loadu_ps(xr + i + 16), mv));
            if (!logmode) { _mm512_storeu_ps(yr + i, e0); _mm512_storeu_ps(yr + i + 16, e1); }
            s0 = _mm512_add_ps(s0, e0);
            s1 = _mm512_add_ps(s1, e1);
        }
        for (; i < cols; i += 16) {
            size_t left = cols - i;
            __mmask16 valid = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __m512 e = exp512_neg(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), valid, xr + i), mv));
            if (!logmode) _mm512_mask_storeu_ps(yr + i, valid, e);
            s0 = _mm512_add_ps(s0, e);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
        i = 0;
        if (logmode) {
            float shs = m + logf(s);
            __m512 sh = _mm512_set1_ps(shs);
            for (; i + 16 <= cols; i += 16) _mm512_storeu_ps(yr + i, _mm512_sub_ps(_mm512_loadu_ps(xr + i), sh));
            for (; i < cols; i++) yr[i] = xr[i] - shs;
        } else {
            float invs = 1.0f / s;
            __m512 inv = _mm512_set1_ps(invs);
            for (; i + 16 <= cols; i += 16) _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(yr + i), inv));
            for (; i < cols; i++) yr[i] *= invs;
        }
    }
}

__attribute__((target("avx512f,avx512bf16,avx512bw")))
static float dot_bf16_avx512(const uint16_t *a, const uint16_t *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(a + i), (__m512bh)_mm512_loadu_si512(b + i));
        acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(a + i + 32), (__m512bh)_mm512_loadu_si512(b + i + 32));
    }
    for (; i + 32 <= n; i += 32)
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(a + i), (__m512bh)_mm512_loadu_si512(b + i));
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint32_t ua = (uint32_t)a[i] << 16, ub = (uint32_t)b[i] << 16;
        float fa, fb; memcpy(&fa, &ua, 4); memcpy(&fb, &ub, 4);
        s += fa * fb;
    }
    return s;
}

TMF_AVX512 static float dot_bf16_f32_avx512(const uint16_t *a, const float *b, size_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i a0 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(a + i))), 16);
        __m512i a1 = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(a + i + 16))), 16);
        acc0 = _mm512_fmadd_ps(_mm512_castsi512_ps(a0), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_castsi512_ps(a1), _mm512_loadu_ps(b + i + 16), acc1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint32_t ua = (uint32_t)a[i] << 16; float fa; memcpy(&fa, &ua, 4);
        s += fa * b[i];
    }
    return s;
}

// ---- AVX2 + FMA paths (8 lanes) ----

// Outputs at least this large bypass the caches (non-temporal stores): they cannot stay cached
// anyway, and streaming them saves the read-for-ownership of every output line. 2M floats = 8 MB.
#define STREAM_MIN_ELEMENTS (1u << 21)

// Elements before p is 32-byte aligned (all of n when p is not even float-aligned).
static inline size_t align_head(const float *p, size_t n) {
    uintptr_t a = (uintptr_t)p;
    size_t h = (a & 3) ? n : ((32 - (a & 31)) & 31) / 4;
    return h < n ? h : n;
}
TMF_INLINE TMF_AVX2 __m256 exp256_t(__m256 x) {
    return _mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), _mm256_set1_ps(EXP_SHIFT));
}
// bits(t) − EXP_T_MIN: lanes above EXP_T_SPAN (unsigned) are outside exp's fast range.
TMF_INLINE TMF_AVX2 __m256i exp256_range(__m256 t) {
    return _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(EXP_T_MIN));
}
// The slow lanes of one exp256_range result, as a movemask.
TMF_INLINE TMF_AVX2 int exp256_slow_mask(__m256i d) {
    const __m256i flip = _mm256_set1_epi32((int)0x80000000u);
    __m256i over = _mm256_cmpgt_epi32(_mm256_xor_si256(d, flip), _mm256_set1_epi32((int)(0x80000000u + EXP_T_SPAN)));
    return _mm256_movemask_ps(_mm256_castsi256_ps(over));
}
TMF_INLINE TMF_AVX2 __m256 exp256_poly(__m256 x, __m256 t) {
    __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(EXP_SHIFT));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    // u = (c2 + c3·r) + r²·((c4 + c5·r) + r²·c6) by Estrin's scheme (a shorter dependency chain
    // than Horner), then p = 1 + (r + r²·u): the small part first, so p is rounded about once.
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 lo = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C3), r, _mm256_set1_ps(EXP_C2));
    __m256 mid = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C5), r, _mm256_set1_ps(EXP_C4));
    __m256 u = _mm256_fmadd_ps(_mm256_set1_ps(EXP_C6), r2, mid);
    u = _mm256_fmadd_ps(u, r2, lo);
    return _mm256_add_ps(_mm256_fmadd_ps(u, r2, r), _mm256_set1_ps(1.0f));
}
TMF_INLINE TMF_AVX2 __m256 exp256_fast(__m256 x, __m256 t) {
    __m256i e = _mm256_add_epi32(_mm256_castps_si256(exp256_poly(x, t)), _mm256_slli_epi32(_mm256_castps_si256(t), 23));
    return _mm256_castsi256_ps(e);
}
// eˣ for x ≤ 0 (softmax): 0 below EXP_NEG_MIN, NaN stays NaN.
TMF_INLINE TMF_AVX2 __m256 exp256_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(EXP_NEG_MIN);
    __m256 xc = _mm256_max_ps(lo, x);  // NaN x passes through
    __m256 t = exp256_t(xc);
    __m256i s = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(0x3F800000));
    __m256 e = _mm256_mul_ps(exp256_poly(xc, t), _mm256_castsi256_ps(s));
    return _mm256_and_ps(e, _mm256_cmp_ps(x, lo, _CMP_NLT_UQ));
}

// The exp argument of each map (exact GELU has its own kernel, gelu_erf256).
TMF_INLINE TMF_AVX2 __m256 map_arg256(int kind, __m256 v) {
    switch (kind) {
    case MAP_EXP: return v;
    case MAP_SILU: return _mm256_sub_ps(_mm256_setzero_ps(), v);
    case MAP_GELU_TANH: {
        __m256 w = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_mul_ps(v, v), _mm256_set1_ps(0.044715f)), v, v);
        return _mm256_mul_ps(w, _mm256_set1_ps(-2.0f * 0.7978845608028654f));
    }
    default: return _mm256_mul_ps(v, _mm256_set1_ps(-1.702f));
    }
}

TMF_INLINE TMF_AVX2 __m256 map_fin256(int kind, __m256 v, __m256 e) {
    switch (kind) {
    case MAP_EXP: return e;
    default: return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
}

// Eight lanes from src to dst (which may be the same), slow lanes through libm.
TMF_INLINE TMF_AVX2 void map_one256(int kind, const float *src, float *dst) {
    __m256 v = _mm256_loadu_ps(src);
    __m256 a = map_arg256(kind, v), t = exp256_t(a);
    int slow = exp256_slow_mask(exp256_range(t));
    float keep[8];
    if (slow) _mm256_storeu_ps(keep, v);
    _mm256_storeu_ps(dst, map_fin256(kind, v, exp256_fast(a, t)));
    if (slow)
        for (int k = 0; k < 8; k++)
            if (slow & (1 << k)) dst[k] = map_scalar(kind, keep[k]);
}

// `unroll` vectors per iteration (the polynomial is a long dependency chain) with one range
// check for them all. Every element gets the same arithmetic wherever it sits, tails included.
TMF_INLINE TMF_AVX2 void map_buffered256(int kind, const float *x, float *y, size_t n) {
    float buf[8] = {0};
    memcpy(buf, x, n * sizeof(float));
    map_one256(kind, buf, buf);
    memcpy(y, buf, n * sizeof(float));
}

TMF_INLINE TMF_AVX2 void map_avx2(int kind, int unroll, const float *x, float *y, size_t n, int stream) {
    size_t i = 0;
    const size_t step = 8 * (size_t)unroll;
    if (stream) {
        size_t head = align_head(y, n);
        for (; i + 8 <= head; i += 8) map_one256(kind, x + i, y + i);
        if (i < head) { map_buffered256(kind, x + i, y + i, head - i); i = head; }
    }
    const __m256i span = _mm256_set1_epi32(EXP_T_SPAN);
    for (; i + step <= n; i += step) {
        __m256 v[4], a[4], t[4];
        __m256i d = _mm256_setzero_si256();
        for (int k = 0; k < unroll; k++) {
            v[k] = _mm256_loadu_ps(x + i + 8 * k);
            a[k] = map_arg256(kind, v[k]);
            t[k] = exp256_t(a[k]);
            d = _mm256_max_epu32(d, exp256_range(t[k]));
        }
        __m256i fine = _mm256_cmpeq_epi32(_mm256_max_epu32(d, span), span);
        if (__builtin_expect(_mm256_movemask_epi8(fine) != -1, 0)) {
            for (int k = 0; k < unroll; k++) map_one256(kind, x + i + 8 * k, y + i + 8 * k);
            continue;
        }
        if (stream)
            for (int k = 0; k < unroll; k++) _mm256_stream_ps(y + i + 8 * k, map_fin256(kind, v[k], exp256_fast(a[k], t[k])));
        else
            for (int k = 0; k < unroll; k++) _mm256_storeu_ps(y + i + 8 * k, map_fin256(kind, v[k], exp256_fast(a[k], t[k])));
    }
    for (; i + 8 <= n; i += 8) map_one256(kind, x + i, y + i);
    if (i < n) map_buffered256(kind, x + i, y + i, n - i);
    if (stream) _mm_sfence();
}

// Exact GELU, x·Φ(x) = max(x, 0) − |x|·Φ(−|x|), Φ(−|x|) = e^(−x²/2)·SP(|x|)/SQ(|x|). No range
// check: |x| is clamped once to GX_A_MAX = 13.11 (x² ≤ 172, inside exp's fast range), which both
// parts use (the rational has no pole on [0, ∞) and stays within 3e-5 of the tail's scale there,
// where e^(−x²/2) < 3e-9). Beyond 13.11 the result is x for x > 0 and −1.8e-38 for x < 0 (the true
// value there is below 2e-38 in magnitude), −∞ included (where the erf formula's −∞·0 is NaN); NaN
// stays NaN (max passes it through).
//
// Cost, measured on this AVX2-only Zen-1-class core (about 2.2 GHz by an FMA latency chain): about
// 26 cycles per 8 lanes with the data in L1, though its 15 multiply-pipe operations (two 128-bit
// pipes: one 256-bit multiply or multiply-add per cycle) need only about 16. A synthetic loop with
// the same mix (15 multiply-adds, 8 adds, one division) takes the same 25-26 cycles, and making one
// of its adds read an earlier value costs about 4 more: the dependency structure, not one countable
// resource, sets the pace. What helped: SP's leading coefficient GS_P3 folded into e's polynomial
// (GY_*: GX_* times GS_P3) so that SP is monic (an add where a multiply-add was), and one clamp for
// both parts: about 7% faster. What did not (real loop unless said): a reciprocal and a Newton step
// instead of the division (5-10% slower); e^(−r/2) as a symmetric [2/2] rational sharing the one
// division (13 multiply-pipe operations, 5% slower); the constants as memory operands instead of
// broadcasts (2-6% slower); Estrin's scheme for e's polynomial and a hand-interleaved order (no gain
// in L1).
#define GX_A_MAX 13.114877f
#define GY_C0 GS_P3  // e's polynomial times GS_P3 (Float32 constant expressions)
#define GY_D1 (GX_D1 * GS_P3)
#define GY_D2 (GX_D2 * GS_P3)
#define GY_D3 (GX_D3 * GS_P3)
#define GY_D4 (GX_D4 * GS_P3)
#define GY_D5 (GX_D5 * GS_P3)
#define GS_M0 (GS_P0 / GS_P3)  // SP made monic
#define GS_M1 (GS_P1 / GS_P3)
#define GS_M2 (GS_P2 / GS_P3)
TMF_INLINE TMF_AVX2 __m256 gelu_erf256(__m256 v) {
    __m256 ac = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), v), _mm256_set1_ps(GX_A_MAX));
    __m256 s = _mm256_mul_ps(ac, ac);
    __m256 t = _mm256_fmadd_ps(s, _mm256_set1_ps(GX_LOG2E_HALF), _mm256_set1_ps(EXP_SHIFT));
    // e = GS_P3·e^(−s/2): n from t, r' = s + 2n·ln2 (= −2r), GS_P3·p(r) in r', 2ⁿ into the exponent bits
    __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(EXP_SHIFT));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(GX_LN2_2), s);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(GY_D5), r, _mm256_set1_ps(GY_D4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(GY_D3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(GY_D2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(GY_D1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(GY_C0));
    __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)));
    // w = |x|·(SP/GS_P3)/SQ, computed alongside e
    __m256 sp = _mm256_add_ps(ac, _mm256_set1_ps(GS_M2));
    sp = _mm256_fmadd_ps(sp, ac, _mm256_set1_ps(GS_M1));
    sp = _mm256_fmadd_ps(sp, ac, _mm256_set1_ps(GS_M0));
    __m256 sq = _mm256_add_ps(ac, _mm256_set1_ps(GS_Q3));
    sq = _mm256_fmadd_ps(sq, ac, _mm256_set1_ps(GS_Q2));
    sq = _mm256_fmadd_ps(sq, ac, _mm256_set1_ps(GS_Q1));
    sq = _mm256_fmadd_ps(sq, ac, _mm256_set1_ps(GS_Q0));
    __m256 w = _mm256_div_ps(_mm256_mul_ps(ac, sp), sq);
    return _mm256_fnmadd_ps(w, e, _mm256_max_ps(_mm256_setzero_ps(), v));  // max(0, −0) is −0; NaN passes
}

// One vector per iteration (the longer body already gives the scheduler enough to overlap).
TMF_AVX2 static void gelu_erf_avx2(const float *x, float *y, size_t n, int stream) {
    size_t i = 0;
    float buf[8];
    if (stream) {
        size_t head = align_head(y, n);
        if (head) {
            memset(buf, 0, sizeof buf);
            memcpy(buf, x, head * sizeof(float));
            _mm256_storeu_ps(buf, gelu_erf256(_mm256_loadu_ps(buf)));
            memcpy(y, buf, head * sizeof(float));
            i = head;
        }
        for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, gelu_erf256(_mm256_loadu_ps(x + i)));
        _mm_sfence();
    }
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu_erf256(_mm256_loadu_ps(x + i)));
    if (i < n) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, x + i, (n - i) * sizeof(float));
        _mm256_storeu_ps(buf, gelu_erf256(_mm256_loadu_ps(buf)));
        memcpy(y + i, buf, (n - i) * sizeof(float));
    }
}

TMF_AVX2 static void vexp_avx2(const float *x, float *y, size_t n, int stream) { map_avx2(MAP_EXP, 4, x, y, n, stream); }
TMF_AVX2 static void silu_avx2(const float *x, float *y, size_t n, int stream) { map_avx2(MAP_SILU, 4, x, y, n, stream); }
TMF_AVX2 static void gelu_avx2(const float *x, float *y, size_t n, int mode, int stream) {
    // one call per kind, so each is specialised
    if (mode == 0) gelu_erf_avx2(x, y, n, stream);
    else if (mode == 1) map_avx2(MAP_GELU_TANH, 4, x, y, n, stream);
    else map_avx2(MAP_GELU_QUICK, 4, x, y, n, stream);
}

TMF_AVX2 static inline float hsum256(__m256 v) {
    float t[8]; memcpy(t, &v, 32);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}
TMF_AVX2 static inline float hmax256(__m256 v) {
    float t[8]; memcpy(t, &v, 32);
    float m = t[0];
    for (int i = 1; i < 8; i++) if (t[i] > m) m = t[i];
    return m;
}

// With `scratch` (softmax of a large tensor), exp(x − max) goes to scratch rather than to y, and
// the last pass streams y out with non-temporal stores.
TMF_AVX2 static void softmax_rows_avx2(const float *x, float *y, size_t rows, size_t cols, int logmode, int stream,
                                       float *scratch) {
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256i span = _mm256_set1_epi32(EXP_T_SPAN);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        size_t i = 0;
        __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
        for (; i + 32 <= cols; i += 32) {
            m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xr + i));
            m1 = _mm256_max_ps(m1, _mm256_loadu_ps(xr + i + 8));
            m2 = _mm256_max_ps(m2, _mm256_loadu_ps(xr + i + 16));
            m3 = _mm256_max_ps(m3, _mm256_loadu_ps(xr + i + 24));
        }
        for (; i + 8 <= cols; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(xr + i));
        float m = hmax256(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
        for (; i < cols; i++) if (xr[i] > m) m = xr[i];
        if (m == -INFINITY) m = 0.0f;  // a fully masked row: avoid (-inf) - (-inf)
        __m256 mv = _mm256_set1_ps(m);
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        float *er = scratch ? scratch : yr;  // where exp(x − max) goes
        i = 0;
        for (; i + 32 <= cols; i += 32) {
            // While this pass computes, fetch the next row's x (for its max pass) and this row's y
            // (written below, or by the last pass) from memory.
            if (r + 1 < rows) {
                _mm_prefetch((const char *)(xr + cols + i), _MM_HINT_T0);
                _mm_prefetch((const char *)(xr + cols + i + 16), _MM_HINT_T0);
            }
            if (!stream) {
                _mm_prefetch((const char *)(yr + i + 256), _MM_HINT_T0);
                _mm_prefetch((const char *)(yr + i + 256 + 16), _MM_HINT_T0);
            }
            __m256 a0 = _mm256_sub_ps(_mm256_loadu_ps(xr + i), mv), a1 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 8), mv);
            __m256 a2 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 16), mv), a3 = _mm256_sub_ps(_mm256_loadu_ps(xr + i + 24), mv);
            __m256 t0 = exp256_t(a0), t1 = exp256_t(a1), t2 = exp256_t(a2), t3 = exp256_t(a3);
            __m256i d = _mm256_max_epu32(_mm256_max_epu32(exp256_range(t0), exp256_range(t1)),
                                         _mm256_max_epu32(exp256_range(t2), exp256_range(t3)));
            __m256i fine = _mm256_cmpeq_epi32(_mm256_max_epu32(d, span), span);
            __m256 e0, e1, e2, e3;
            if (__builtin_expect(_mm256_movemask_epi8(fine) == -1, 1)) {
                // all in exp's fast range (the same values exp256_neg gives)
                e0 = exp256_fast(a0, t0); e1 = exp256_fast(a1, t1); e2 = exp256_fast(a2, t2); e3 = exp256_fast(a3, t3);
            } else {
                e0 = exp256_neg(a0); e1 = exp256_neg(a1); e2 = exp256_neg(a2); e3 = exp256_neg(a3);
            }
            if (!logmode) {
                _mm256_storeu_ps(er + i, e0);
                _mm256_storeu_ps(er + i + 8, e1);
                _mm256_storeu_ps(er + i + 16, e2);
                _mm256_storeu_ps(er + i + 24, e3);
            }
            s0 = _mm256_add_ps(s0, e0);
            s1 = _mm256_add_ps(s1, e1);
            s2 = _mm256_add_ps(s2, e2);
            s3 = _mm256_add_ps(s3, e3);
        }
        for (; i + 8 <= cols; i += 8) {
            __m256 e = exp256_neg(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv));
            if (!logmode) _mm256_storeu_ps(er + i, e);
            s0 = _mm256_add_ps(s0, e);
        }
        if (i < cols) {  // the tail, padded with −∞ (whose exp is 0)
            float buf[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
            memcpy(buf, xr + i, (cols - i) * sizeof(float));
            __m256 e = exp256_neg(_mm256_sub_ps(_mm256_loadu_ps(buf), mv));
            if (!logmode) { _mm256_storeu_ps(buf, e); memcpy(er + i, buf, (cols - i) * sizeof(float)); }
            s0 = _mm256_add_ps(s0, e);
        }
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
        // The last pass: y = x − (max + log sum), or y = e / sum; streamed from the first
        // 32-byte boundary when `stream`.
        size_t head = stream ? align_head(yr, cols) : cols;
        if (logmode) {
            float shs = m + logf(s);
            __m256 sh = _mm256_set1_ps(shs);
            for (i = 0; i < head && i < cols; i++) yr[i] = xr[i] - shs;
            for (; i + 8 <= cols; i += 8) {
                __m256 v = _mm256_sub_ps(_mm256_loadu_ps(xr + i), sh);
                if (stream) _mm256_stream_ps(yr + i, v); else _mm256_storeu_ps(yr + i, v);
            }
            for (; i < cols; i++) yr[i] = xr[i] - shs;
        } else {
            float invs = 1.0f / s;
            __m256 inv = _mm256_set1_ps(invs);
            for (i = 0; i < head && i < cols; i++) yr[i] = er[i] * invs;
            for (; i + 8 <= cols; i += 8) {
                __m256 v = _mm256_mul_ps(_mm256_loadu_ps(er + i), inv);
                if (stream) _mm256_stream_ps(yr + i, v); else _mm256_storeu_ps(yr + i, v);
            }
            for (; i < cols; i++) yr[i] = er[i] * invs;
        }
    }
    if (stream) _mm_sfence();
}

#define SOFTMAX_SCRATCH 16384  // floats (64 KB on the stack)

TMF_AVX2 static void softmax_avx2(const float *x, float *y, size_t rows, size_t cols, int logmode, int stream) {
    if (stream && !logmode && cols <= SOFTMAX_SCRATCH) {
        float scratch[SOFTMAX_SCRATCH];
        softmax_rows_avx2(x, y, rows, cols, logmode, 1, scratch);
    } else {
        softmax_rows_avx2(x, y, rows, cols, logmode, stream && logmode, NULL);
    }
}
TMF_AVX2
static float dot_bf16_f32_avx2(const uint16_t *a, const float *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i))), 16);
        __m256i a1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i + 8))), 16);
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(a0), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(a1), _mm256_loadu_ps(b + i + 8), acc1);
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint32_t ua = (uint32_t)a[i] << 16; float fa; memcpy(&fa, &ua, 4);
        s += fa * b[i];
    }
    return s;
}

TMF_AVX2
static float dot_bf16_avx2(const uint16_t *a, const uint16_t *b, size_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i))), 16);
        __m256i a1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i + 8))), 16);
        __m256i b0 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + i))), 16);
        __m256i b1 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(b + i + 8))), 16);
        acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(a0), _mm256_castsi256_ps(b0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(a1), _mm256_castsi256_ps(b1), acc1);
    }
    float s = hsum256(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint32_t ua = (uint32_t)a[i] << 16, ub = (uint32_t)b[i] << 16;
        float fa, fb; memcpy(&fa, &ua, 4); memcpy(&fb, &ub, 4);
        s += fa * fb;
    }
    return s;
}

TMF_AVX2
static void rmsnorm_avx2(const float *x, const float *w, float *y, float *inv, size_t rows, size_t cols, float eps,
                         int stream) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 16 <= cols; i += 16) {
            __m256 v0 = _mm256_loadu_ps(xr + i), v1 = _mm256_loadu_ps(xr + i + 8);
            a0 = _mm256_fmadd_ps(v0, v0, a0);
            a1 = _mm256_fmadd_ps(v1, v1, a1);
        }
        float ss = hsum256(_mm256_add_ps(a0, a1));
        for (; i < cols; i++) ss += xr[i] * xr[i];
        float iv = 1.0f / sqrtf(ss / (float)cols + eps);
        if (inv) inv[r] = iv;
        __m256 ivv = _mm256_set1_ps(iv);
        size_t head = stream ? align_head(yr, cols) : 0;
        for (i = 0; i < head; i++) yr[i] = xr[i] * iv * w[i];
        for (; i + 16 <= cols; i += 16) {
            // fetch the next row's x for its sum-of-squares pass while this one streams out y
            if (r + 1 < rows) _mm_prefetch((const char *)(xr + cols + i), _MM_HINT_T0);
            __m256 v0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), ivv), _mm256_loadu_ps(w + i));
            __m256 v1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i + 8), ivv), _mm256_loadu_ps(w + i + 8));
            if (stream) { _mm256_stream_ps(yr + i, v0); _mm256_stream_ps(yr + i + 8, v1); }
            else { _mm256_storeu_ps(yr + i, v0); _mm256_storeu_ps(yr + i + 8, v1); }
        }
        for (; i + 8 <= cols; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), ivv), _mm256_loadu_ps(w + i)));
        for (; i < cols; i++) yr[i] = xr[i] * iv * w[i];
    }
    if (stream) _mm_sfence();
}

TMF_AVX2
static float dot_avx2(const float *a, const float *b, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

TMF_AVX2
static void softmax_backward_avx2(const float *y, const float *dy, float *dx, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        float d = dot_avx2(yr, gr, cols);
        __m256 dv = _mm256_set1_ps(d);
        size_t i = 0;
        for (; i + 8 <= cols; i += 8) {
            __m256 yv = _mm256_loadu_ps(yr + i);
            __m256 t = _mm256_mul_ps(yv, _mm256_sub_ps(_mm256_loadu_ps(gr + i), dv));
            _mm256_storeu_ps(dr + i, _mm256_add_ps(_mm256_loadu_ps(dr + i), t));
        }
        for (; i < cols; i++) dr[i] += yr[i] * (gr[i] - d);
    }
}

#endif

// ---- public entry points: dispatch on the CPU, split large work over the kernel threads ----

typedef struct { const float *x; float *y; int kind, stream; } map_ctx;

static void map_range(void *c, size_t b, size_t e) {
    const map_ctx *k = c;
    const float *x = k->x + b;
    float *y = k->y + b;
    size_t n = e - b;
#if TMF_X86
    if ((cpu_flags() & 1) && (k->kind == MAP_EXP || k->kind == MAP_SILU)) {
        if (k->kind == MAP_EXP) vexp_avx512(x, y, n); else silu_avx512(x, y, n);
        return;
    }
    if (cpu_flags() & 4) {
        switch (k->kind) {
        case MAP_EXP: vexp_avx2(x, y, n, k->stream); return;
        case MAP_SILU: silu_avx2(x, y, n, k->stream); return;
        case MAP_GELU_ERF: gelu_avx2(x, y, n, 0, k->stream); return;
        case MAP_GELU_TANH: gelu_avx2(x, y, n, 1, k->stream); return;
        default: gelu_avx2(x, y, n, 2, k->stream); return;
        }
    }
#endif
    for (size_t i = 0; i < n; i++) y[i] = map_scalar(k->kind, x[i]);
}

static void map_parallel(int kind, const float *x, float *y, size_t n) {
    map_ctx c = {x, y, kind, n >= STREAM_MIN_ELEMENTS};
    parallel_for(map_range, &c, n, 64, PAR_MIN_ELEMENTS);
}

// Rows per part so that a part holds at least PAR_MIN_ELEMENTS elements.
static size_t min_rows(size_t cols) {
    return cols == 0 ? (size_t)-1 : (PAR_MIN_ELEMENTS + cols - 1) / cols;
}

void tmf_vexp(const float *x, float *y, size_t n) { map_parallel(MAP_EXP, x, y, n); }

void tmf_silu(const float *x, float *y, size_t n) { map_parallel(MAP_SILU, x, y, n); }

void tmf_gelu(const float *x, float *y, size_t n, int mode) {
    map_parallel(mode == 0 ? MAP_GELU_ERF : (mode == 1 ? MAP_GELU_TANH : MAP_GELU_QUICK), x, y, n);
}

float tmf_dot(const float *a, const float *b, size_t n) {
#if TMF_X86
    if (cpu_flags() & 4) return dot_avx2(a, b, n);
#endif
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void softmax_scalar(const float *x, float *y, size_t rows, size_t cols, int logmode) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float m = -INFINITY;
        for (size_t i = 0; i < cols; i++) if (xr[i] > m) m = xr[i];
        if (m == -INFINITY) m = 0.0f;
        float s = 0.0f;
        for (size_t i = 0; i < cols; i++) { float e = exp_scalar(xr[i] - m); if (!logmode) yr[i] = e; s += e; }
        if (logmode) { float sh = m + logf(s); for (size_t i = 0; i < cols; i++) yr[i] = xr[i] - sh; }
        else { float inv = 1.0f / s; for (size_t i = 0; i < cols; i++) yr[i] *= inv; }
    }
}

typedef struct { const float *x; float *y; size_t cols; int logmode, stream; } softmax_ctx;

static void softmax_range(void *c, size_t b, size_t e) {
    const softmax_ctx *k = c;
    const float *x = k->x + b * k->cols;
    float *y = k->y + b * k->cols;
#if TMF_X86
    if (cpu_flags() & 1) { softmax_avx512(x, y, e - b, k->cols, k->logmode); return; }
    if (cpu_flags() & 4) { softmax_avx2(x, y, e - b, k->cols, k->logmode, k->stream); return; }
#endif
    softmax_scalar(x, y, e - b, k->cols, k->logmode);
}

void tmf_softmax_rows(const float *x, float *y, size_t rows, size_t cols) {
    softmax_ctx c = {x, y, cols, 0, rows * cols >= STREAM_MIN_ELEMENTS};
    parallel_for(softmax_range, &c, rows, 1, min_rows(cols));
}

void tmf_log_softmax_rows(const float *x, float *y, size_t rows, size_t cols) {
    softmax_ctx c = {x, y, cols, 1, rows * cols >= STREAM_MIN_ELEMENTS};
    parallel_for(softmax_range, &c, rows, 1, min_rows(cols));
}

typedef struct { const float *y, *dy; float *dx; size_t cols; } softmax_backward_ctx;

static void softmax_backward_range(void *c, size_t b, size_t e) {
    const softmax_backward_ctx *k = c;
    size_t cols = k->cols;
#if TMF_X86
    if (cpu_flags() & 4) { softmax_backward_avx2(k->y + b * cols, k->dy + b * cols, k->dx + b * cols, e - b, cols); return; }
#endif
    for (size_t r = b; r < e; r++) {
        const float *yr = k->y + r * cols, *gr = k->dy + r * cols;
        float *dr = k->dx + r * cols;
        float d = 0.0f;
        for (size_t i = 0; i < cols; i++) d += yr[i] * gr[i];
        for (size_t i = 0; i < cols; i++) dr[i] += yr[i] * (gr[i] - d);
    }
}

void tmf_softmax_backward_rows(const float *y, const float *dy, float *dx, size_t rows, size_t cols) {
    softmax_backward_ctx c = {y, dy, dx, cols};
    parallel_for(softmax_backward_range, &c, rows, 1, min_rows(cols));
}

typedef struct { const float *x, *w, *inv, *dy; float *dx, *dw; size_t rows, cols; } rmsnorm_backward_ctx;

// dx for rows [b, e).
static void rmsnorm_backward_dx(void *c, size_t b, size_t e) {
    const rmsnorm_backward_ctx *k = c;
    size_t cols = k->cols;
    for (size_t r = b; r < e; r++) {
        const float *xr = k->x + r * cols, *gr = k->dy + r * cols;
        float iv = k->inv[r];
        float d = 0.0f;
        for (size_t i = 0; i < cols; i++) d += gr[i] * k->w[i] * xr[i];
        float cc = d * iv * iv / (float)cols;
        float *dr = k->dx + r * cols;
        for (size_t i = 0; i < cols; i++) dr[i] += iv * (gr[i] * k->w[i] - xr[i] * cc);
    }
}

// dw for columns [b, e), summed over all rows in order (so a column's sum never depends on
// how the columns were split).
static void rmsnorm_backward_dw(void *c, size_t b, size_t e) {
    const rmsnorm_backward_ctx *k = c;
    size_t cols = k->cols;
    for (size_t r = 0; r < k->rows; r++) {
        const float *xr = k->x + r * cols, *gr = k->dy + r * cols;
        float iv = k->inv[r];
        for (size_t i = b; i < e; i++) k->dw[i] += gr[i] * xr[i] * iv;
    }
}

void tmf_rmsnorm_backward_rows(const float *x, const float *w, const float *inv, const float *dy,
                               float *dx, float *dw, size_t rows, size_t cols) {
    rmsnorm_backward_ctx c = {x, w, inv, dy, dx, dw, rows, cols};
    if (dw) parallel_for(rmsnorm_backward_dw, &c, cols, 64, rows == 0 ? (size_t)-1 : (PAR_MIN_ELEMENTS + rows - 1) / rows);
    if (dx) parallel_for(rmsnorm_backward_dx, &c, rows, 1, min_rows(cols));
}

typedef struct { const float *x, *w; float *y, *inv; size_t cols; float eps; int stream; } rmsnorm_ctx;

static void rmsnorm_range(void *c, size_t b, size_t e) {
    const rmsnorm_ctx *k = c;
    size_t cols = k->cols;
    const float *x = k->x + b * cols;
    float *y = k->y + b * cols, *inv = k->inv ? k->inv + b : NULL;
#if TMF_X86
    if (cpu_flags() & 4) { rmsnorm_avx2(x, k->w, y, inv, e - b, cols, k->eps, k->stream); return; }
#endif
    for (size_t r = 0; r < e - b; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float ss = 0.0f;
        for (size_t i = 0; i < cols; i++) ss += xr[i] * xr[i];
        float iv = 1.0f / sqrtf(ss / (float)cols + k->eps);
        if (inv) inv[r] = iv;
        for (size_t i = 0; i < cols; i++) yr[i] = xr[i] * iv * k->w[i];
    }
}

void tmf_rmsnorm_rows(const float *x, const float *w, float *y, float *inv, size_t rows, size_t cols, float eps) {
    rmsnorm_ctx c = {x, w, y, inv, cols, eps, rows * cols >= STREAM_MIN_ELEMENTS};
    parallel_for(rmsnorm_range, &c, rows, 1, min_rows(cols));
}

static inline float bf16_to_f32(uint16_t v) {
    uint32_t u = (uint32_t)v << 16; float f; memcpy(&f, &u, 4); return f;
}

float tmf_dot_bf16(const uint16_t *a, const uint16_t *b, size_t n) {
#if TMF_X86
    if (cpu_flags() & 2) return dot_bf16_avx512(a, b, n);
    if (cpu_flags() & 4) return dot_bf16_avx2(a, b, n);
#endif
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += bf16_to_f32(a[i]) * bf16_to_f32(b[i]);
    return s;
}

float tmf_dot_bf16_f32(const uint16_t *a, const float *b, size_t n) {
#if TMF_X86
    if (cpu_flags() & 1) return dot_bf16_f32_avx512(a, b, n);
    if (cpu_flags() & 4) return dot_bf16_f32_avx2(a, b, n);
#endif
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += bf16_to_f32(a[i]) * b[i];
    return s;
}

// ---- one-query attention products (decoding) ----

void tmf_rows_dot(const float *a, size_t lda, const float *x, size_t m, size_t n, float alpha, float *y) {
    for (size_t j = 0; j < m; j++) {
        const float *r = a + j * lda;
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        size_t k = 0;
        for (; k + 8 <= n; k += 8)
            for (int l = 0; l < 8; l++) s[l] += r[k + l] * x[k + l];
        float t = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        for (; k < n; k++) t += r[k] * x[k];
        y[j] = alpha * t;
    }
}

void tmf_rows_axpy(const float *a, size_t lda, const float *p, size_t m, size_t n, float *y) {
    for (size_t k = 0; k < n; k++) y[k] = 0.0f;
    for (size_t j = 0; j < m; j++) {
        const float *r = a + j * lda;
        const float w = p[j];
        if (w == 0.0f) continue;
        for (size_t k = 0; k < n; k++) y[k] += w * r[k];
    }
}

// ---- matrix-vector product (decoding with Float32 weights) ----
// y[o] (+)= Σ_k w[o·in + k] · x[k]. Rows are split over the kernel threads (which poll between
// jobs), so a decoding step never wakes OpenBLAS's pool. Each output's sum is formed the same way
// whatever part it falls in: 16 (AVX-512), 8 (AVX2) or 8 (portable) running lanes over k, reduced
// pairwise, then the tail; so results do not depend on the thread count.

typedef struct { const float *w, *x; float *y; size_t in; int accumulate, path; } matvec_ctx;

#if TMF_X86
// One row after another: W is then a single stream through memory (four rows read side by side,
// as this did before, were four short streams that the prefetchers followed badly on rows 768
// long). Each row's sum is one chain of fused multiply-adds; out-of-order execution overlaps
// the chains of consecutive rows.
TMF_AVX512 static void matvec_avx512(const matvec_ctx *c, size_t o0, size_t o1) {
    const size_t n = c->in;
    for (size_t o = o0; o < o1; o++) {
        const float *r = c->w + o * n;
        __m512 a = _mm512_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= n; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(r + k), _mm512_loadu_ps(c->x + k), a);
        float t = _mm512_reduce_add_ps(a);
        for (; k < n; k++) t += r[k] * c->x[k];
        c->y[o] = c->accumulate ? c->y[o] + t : t;
    }
}

TMF_AVX2 static void matvec_avx2(const matvec_ctx *c, size_t o0, size_t o1) {
    const size_t n = c->in;
    for (size_t o = o0; o < o1; o++) {
        const float *r = c->w + o * n;
        __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
        size_t k = 0;
        for (; k + 16 <= n; k += 16) {
            a = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), _mm256_loadu_ps(c->x + k), a);
            b = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 8), _mm256_loadu_ps(c->x + k + 8), b);
        }
        float t = hsum256(_mm256_add_ps(a, b));
        for (; k < n; k++) t += r[k] * c->x[k];
        c->y[o] = c->accumulate ? c->y[o] + t : t;
    }
}
#endif

static void matvec_range(void *p, size_t b, size_t e) {
    const matvec_ctx *c = p;
#if TMF_X86
    if (c->path == TMF_MATVEC_AVX512) { matvec_avx512(c, b, e); return; }
    if (c->path == TMF_MATVEC_AVX2) { matvec_avx2(c, b, e); return; }
#endif
    for (size_t o = b; o < e; o++) {
        float t;
        tmf_rows_dot(c->w + o * c->in, c->in, c->x, 1, c->in, 1.0f, &t);
        c->y[o] = c->accumulate ? c->y[o] + t : t;
    }
}

int tmf_matvec_path_supported(int path) {
    switch (path) {
    case TMF_MATVEC_PORTABLE: return 1;
    case TMF_MATVEC_AVX2: return tmf_half_path_supported(TMF_HALF_PATH_AVX2);  // TMF_KERNELS=portable turns it off
    case TMF_MATVEC_AVX512: return tmf_half_path_supported(TMF_HALF_PATH_AVX512);
    default: return 0;
    }
}

void tmf_matvec_f32(const float *w, const float *x, float *y, size_t out, size_t in, int accumulate) {
    static atomic_int best = -1;
    int path = atomic_load_explicit(&best, memory_order_relaxed);
    if (path < 0) {
        path = tmf_matvec_path_supported(TMF_MATVEC_AVX512) ? TMF_MATVEC_AVX512
             : tmf_matvec_path_supported(TMF_MATVEC_AVX2)   ? TMF_MATVEC_AVX2
                                                            : TMF_MATVEC_PORTABLE;
        atomic_store(&best, path);
    }
    tmf_matvec_f32_path(path, w, x, y, out, in, accumulate);
}

void tmf_matvec_f32_path(int path, const float *w, const float *x, float *y, size_t out, size_t in, int accumulate) {
    if (!tmf_matvec_path_supported(path)) path = TMF_MATVEC_PORTABLE;
    matvec_ctx c = {w, x, y, in, accumulate != 0, path};
    size_t per_row = in ? in : 1;
    parallel_for_polling(matvec_range, &c, out, 16, (PAR_MIN_ELEMENTS + per_row - 1) / per_row, 1);  // decoding
}
