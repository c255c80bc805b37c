#include "CKernels.h"
#include <math.h>
#include <string.h>

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

static int cpu_state = -1;  // -1 unknown, bit0 avx512f, bit1 avx512bf16, bit2 avx2+fma

static int cpu_flags(void) {
    int s = cpu_state;
    if (s >= 0) return s;
    s = 0;
#if TMF_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) s |= 1;
    if (__builtin_cpu_supports("avx512bf16")) s |= 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) s |= 4;
#endif
    cpu_state = s;
    return s;
}

int tmf_has_avx512(void) { return cpu_flags() & 1; }
int tmf_has_avx512bf16(void) { return (cpu_flags() & 2) ? 1 : 0; }
int tmf_has_avx2(void) { return (cpu_flags() & 4) ? 1 : 0; }

// ---- scalar exp with the same range reduction as the vector path ----
static inline float exp_scalar(float x) {
    if (x > 88.72283935546875f) return INFINITY;
    if (x < -103.972084f) return 0.0f;
    if (x != x) return x;
    return expf(x);
}

#if TMF_X86
// exp via 2^n * p(r), r = x - n ln2, |r| <= ln2/2, degree-6 polynomial (Cephes coefficients).
__attribute__((target("avx512f")))
static inline __m512 exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.72283935546875f);
    const __m512 lo = _mm512_set1_ps(-87.33654475f);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 res = _mm512_scalef_ps(p, n);
    // below the clamp: exact underflow to 0 (matching expf for very negative inputs)
    __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-103.972084f), _CMP_LT_OQ);
    res = _mm512_mask_mov_ps(res, tiny, _mm512_setzero_ps());
    __mmask16 big = _mm512_cmp_ps_mask(x, hi, _CMP_GT_OQ);
    res = _mm512_mask_mov_ps(res, big, _mm512_set1_ps(INFINITY));
    // inputs between -103.97 and -87.34 are clamped above; recompute them exactly
    return res;
}

__attribute__((target("avx512f")))
static void vexp_avx512(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __mmask16 sub = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-87.33654475f), _CMP_LT_OQ);
        __m512 e = exp512(v);
        _mm512_storeu_ps(y + i, e);
        if (sub) {
            for (int k = 0; k < 16; k++)
                if (sub & (1u << k)) y[i + k] = exp_scalar(x[i + k]);
        }
    }
    for (; i < n; i++) y[i] = exp_scalar(x[i]);
}

__attribute__((target("avx512f")))
static void softmax_avx512(const float *x, float *y, size_t rows, size_t cols, int logmode) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        size_t i = 0;
        __m512 vm = _mm512_set1_ps(-INFINITY);
        for (; i + 16 <= cols; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(xr + i));
        float m = _mm512_reduce_max_ps(vm);
        for (; i < cols; i++) if (xr[i] > m) m = xr[i];
        if (m == -INFINITY) m = 0.0f;  // a fully masked row: avoid (-inf) - (-inf)
        __m512 mv = _mm512_set1_ps(m);
        __m512 vs = _mm512_setzero_ps();
        i = 0;
        if (logmode) {
            for (; i + 16 <= cols; i += 16) {
                __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv));
                vs = _mm512_add_ps(vs, e);
            }
        } else {
            for (; i + 16 <= cols; i += 16) {
                __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(xr + i), mv));
                _mm512_storeu_ps(yr + i, e);
                vs = _mm512_add_ps(vs, e);
            }
        }
        float s = _mm512_reduce_add_ps(vs);
        for (; i < cols; i++) {
            float e = exp_scalar(xr[i] - m);
            if (!logmode) yr[i] = e;
            s += e;
        }
        i = 0;
        if (logmode) {
            __m512 sh = _mm512_set1_ps(m + logf(s));
            for (; i + 16 <= cols; i += 16) _mm512_storeu_ps(yr + i, _mm512_sub_ps(_mm512_loadu_ps(xr + i), sh));
            float shs = m + logf(s);
            for (; i < cols; i++) yr[i] = xr[i] - shs;
        } else {
            __m512 inv = _mm512_set1_ps(1.0f / s);
            for (; i + 16 <= cols; i += 16) _mm512_storeu_ps(yr + i, _mm512_mul_ps(_mm512_loadu_ps(yr + i), inv));
            float invs = 1.0f / s;
            for (; i < cols; i++) yr[i] *= invs;
        }
    }
}

__attribute__((target("avx512f")))
static void silu_avx512(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
        _mm512_storeu_ps(y + i, _mm512_div_ps(v, _mm512_add_ps(one, e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + exp_scalar(-x[i]));
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

__attribute__((target("avx512f")))
static float dot_bf16_f32_avx512(const uint16_t *a, const float *b, size_t n) {
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

// ---- AVX2 + FMA paths (same algorithms as the AVX-512 ones, 8 lanes) ----
__attribute__((target("avx2,fma")))
static inline __m256 exp256(__m256 x) {
    const __m256 hi = _mm256_set1_ps(88.72283935546875f);
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500E-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n split in two factors so n = 128 (x near the overflow edge) stays finite.
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    __m256 res = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
    res = _mm256_blendv_ps(res, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    return res;
}

__attribute__((target("avx2,fma")))
static inline float hsum256(__m256 v) {
    float t[8]; memcpy(t, &v, 32);
    return ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
}
__attribute__((target("avx2,fma")))
static inline float hmax256(__m256 v) {
    float t[8]; memcpy(t, &v, 32);
    float m = t[0];
    for (int i = 1; i < 8; i++) if (t[i] > m) m = t[i];
    return m;
}

__attribute__((target("avx2,fma")))
static void vexp_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 lo = _mm256_set1_ps(-87.33654475f);
    // Four independent vectors per iteration: the polynomial is a long dependency chain.
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        __m256 v2 = _mm256_loadu_ps(x + i + 16), v3 = _mm256_loadu_ps(x + i + 24);
        __m256 small = _mm256_min_ps(_mm256_min_ps(v0, v1), _mm256_min_ps(v2, v3));
        int sub = _mm256_movemask_ps(_mm256_cmp_ps(small, lo, _CMP_LT_OQ));
        _mm256_storeu_ps(y + i, exp256(v0));
        _mm256_storeu_ps(y + i + 8, exp256(v1));
        _mm256_storeu_ps(y + i + 16, exp256(v2));
        _mm256_storeu_ps(y + i + 24, exp256(v3));
        if (sub) for (int k = 0; k < 32; k++) if (x[i + k] < -87.33654475f) y[i + k] = exp_scalar(x[i + k]);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        int sub = _mm256_movemask_ps(_mm256_cmp_ps(v, lo, _CMP_LT_OQ));
        _mm256_storeu_ps(y + i, exp256(v));
        if (sub) for (int k = 0; k < 8; k++) if (sub & (1 << k)) y[i + k] = exp_scalar(x[i + k]);
    }
    for (; i < n; i++) y[i] = exp_scalar(x[i]);
}

__attribute__((target("avx2,fma")))
static void softmax_avx2(const float *x, float *y, size_t rows, size_t cols, int logmode) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        size_t i = 0;
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= cols; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(xr + i));
        float m = hmax256(vm);
        for (; i < cols; i++) if (xr[i] > m) m = xr[i];
        if (m == -INFINITY) m = 0.0f;
        __m256 mv = _mm256_set1_ps(m);
        __m256 vs = _mm256_setzero_ps();
        i = 0;
        for (; i + 8 <= cols; i += 8) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(xr + i), mv));
            if (!logmode) _mm256_storeu_ps(yr + i, e);
            vs = _mm256_add_ps(vs, e);
        }
        float s = hsum256(vs);
        for (; i < cols; i++) {
            float e = exp_scalar(xr[i] - m);
            if (!logmode) yr[i] = e;
            s += e;
        }
        i = 0;
        if (logmode) {
            float shs = m + logf(s);
            __m256 sh = _mm256_set1_ps(shs);
            for (; i + 8 <= cols; i += 8) _mm256_storeu_ps(yr + i, _mm256_sub_ps(_mm256_loadu_ps(xr + i), sh));
            for (; i < cols; i++) yr[i] = xr[i] - shs;
        } else {
            float invs = 1.0f / s;
            __m256 inv = _mm256_set1_ps(invs);
            for (; i + 8 <= cols; i += 8) _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_loadu_ps(yr + i), inv));
            for (; i < cols; i++) yr[i] *= invs;
        }
    }
}

__attribute__((target("avx2,fma")))
static void silu_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, e)));
    }
    for (; i < n; i++) y[i] = x[i] / (1.0f + exp_scalar(-x[i]));
}

__attribute__((target("avx2,fma")))
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

__attribute__((target("avx2,fma")))
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

__attribute__((target("avx2,fma")))
static void rmsnorm_avx2(const float *x, const float *w, float *y, float *inv, size_t rows, size_t cols, float eps) {
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
        i = 0;
        for (; i + 8 <= cols; i += 8)
            _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), ivv), _mm256_loadu_ps(w + i)));
        for (; i < cols; i++) yr[i] = xr[i] * iv * w[i];
    }
}

__attribute__((target("avx2,fma")))
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

__attribute__((target("avx2,fma")))
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

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), vectorised with exp256.
__attribute__((target("avx2,fma")))
static inline __m256 erf256(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), ax, _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax)));
    __m256 y = _mm256_fnmadd_ps(p, e, _mm256_set1_ps(1.0f));
    return _mm256_or_ps(y, sign);
}

__attribute__((target("avx2,fma")))
static void gelu_avx2(const float *x, float *y, size_t n, int mode) {
    size_t i = 0;
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i), r;
        if (mode == 0) {
            r = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, erf256(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)))));
        } else if (mode == 1) {
            // 0.5x(1 + tanh(u)) = x · σ(2u)
            __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f),
                                     _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
            __m256 e = exp256(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
            r = _mm256_div_ps(v, _mm256_add_ps(one, e));
        } else {
            __m256 e = exp256(_mm256_mul_ps(_mm256_set1_ps(-1.702f), v));
            r = _mm256_div_ps(v, _mm256_add_ps(one, e));
        }
        _mm256_storeu_ps(y + i, r);
    }
    for (; i < n; i++) {
        float v = x[i];
        if (mode == 0) y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (mode == 1) y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else y[i] = v / (1.0f + exp_scalar(-1.702f * v));
    }
}
#endif

void tmf_gelu(const float *x, float *y, size_t n, int mode) {
#if TMF_X86
    if (cpu_flags() & 4) { gelu_avx2(x, y, n, mode); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (mode == 0) y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (mode == 1) y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else y[i] = v / (1.0f + exp_scalar(-1.702f * v));
    }
}

float tmf_dot(const float *a, const float *b, size_t n) {
#if TMF_X86
    if (cpu_flags() & 4) return dot_avx2(a, b, n);
#endif
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

void tmf_softmax_backward_rows(const float *y, const float *dy, float *dx, size_t rows, size_t cols) {
#if TMF_X86
    if (cpu_flags() & 4) { softmax_backward_avx2(y, dy, dx, rows, cols); return; }
#endif
    for (size_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        float d = 0.0f;
        for (size_t i = 0; i < cols; i++) d += yr[i] * gr[i];
        for (size_t i = 0; i < cols; i++) dr[i] += yr[i] * (gr[i] - d);
    }
}

void tmf_rmsnorm_backward_rows(const float *x, const float *w, const float *inv, const float *dy,
                               float *dx, float *dw, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *gr = dy + r * cols;
        float iv = inv[r];
        if (dw) for (size_t i = 0; i < cols; i++) dw[i] += gr[i] * xr[i] * iv;
        if (dx) {
            float d = 0.0f;
            for (size_t i = 0; i < cols; i++) d += gr[i] * w[i] * xr[i];
            float c = d * iv * iv / (float)cols;
            float *dr = dx + r * cols;
            for (size_t i = 0; i < cols; i++) dr[i] += iv * (gr[i] * w[i] - xr[i] * c);
        }
    }
}

void tmf_rmsnorm_rows(const float *x, const float *w, float *y, float *inv, size_t rows, size_t cols, float eps) {
#if TMF_X86
    if (cpu_flags() & 4) { rmsnorm_avx2(x, w, y, inv, rows, cols, eps); return; }
#endif
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float ss = 0.0f;
        for (size_t i = 0; i < cols; i++) ss += xr[i] * xr[i];
        float iv = 1.0f / sqrtf(ss / (float)cols + eps);
        if (inv) inv[r] = iv;
        for (size_t i = 0; i < cols; i++) yr[i] = xr[i] * iv * w[i];
    }
}

void tmf_vexp(const float *x, float *y, size_t n) {
#if TMF_X86
    if (cpu_flags() & 1) { vexp_avx512(x, y, n); return; }
    if (cpu_flags() & 4) { vexp_avx2(x, y, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
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

void tmf_softmax_rows(const float *x, float *y, size_t rows, size_t cols) {
#if TMF_X86
    if (cpu_flags() & 1) { softmax_avx512(x, y, rows, cols, 0); return; }
    if (cpu_flags() & 4) { softmax_avx2(x, y, rows, cols, 0); return; }
#endif
    softmax_scalar(x, y, rows, cols, 0);
}

void tmf_log_softmax_rows(const float *x, float *y, size_t rows, size_t cols) {
#if TMF_X86
    if (cpu_flags() & 1) { softmax_avx512(x, y, rows, cols, 1); return; }
    if (cpu_flags() & 4) { softmax_avx2(x, y, rows, cols, 1); return; }
#endif
    softmax_scalar(x, y, rows, cols, 1);
}

void tmf_silu(const float *x, float *y, size_t n) {
#if TMF_X86
    if (cpu_flags() & 1) { silu_avx512(x, y, n); return; }
    if (cpu_flags() & 4) { silu_avx2(x, y, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_scalar(-x[i]));
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
