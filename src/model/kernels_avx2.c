/* AVX2 + FMA kernels (x86-64 since Haswell / Zen). Compiled with -mavx2 -mfma -mf16c; used only
 * when the CPU has all three (kernels.c; every AVX2 CPU has F16C, which widens float16 weights).
 *
 * The tile is 6 rows by one 16-column panel: 12 accumulators of 8 floats, two loads of b and
 * six broadcasts of a per k (the BLIS Haswell shape); up to 3 rows take two panels at once. Each accumulator lane is one output
 * element and sees one _mm256_fmadd_ps per k, in order, from zero: the same chain as the
 * generic kernel's fmaf loop, hence the same bits. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <sleef.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

enum { MR = 6, NP = 2 };

/* Eight elements of b from element `at` on, widened to float32 (exact): a plain load, bfloat16
 * moved to the top half of each lane, or float16 through F16C's converter. */
static inline __attribute__((always_inline)) __m256 load_b(const void *b, ptrdiff_t at, WeightType type) {
    if (type == WEIGHTS_F32) return _mm256_loadu_ps((const float *)b + at);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)b + at));
    if (type == WEIGHTS_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* m rows of np panels of b held as type; all three are constants where this is inlined, so acc
 * lives in registers. */
static inline __attribute__((always_inline)) void rows(int m, int np, WeightType type, int K, const float *a,
                                                       ptrdiff_t rs_a, ptrdiff_t cs_a, const void *b, ptrdiff_t ldb,
                                                       ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    __m256 acc[MR][2 * NP];
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int v = 0; v < 2 * np; v++) acc[i][v] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 b_k[2 * NP]; /* two vectors of 8 per panel */
#pragma GCC unroll 16
        for (int v = 0; v < 2 * np; v++) b_k[v] = load_b(b, (v / 2) * panel_stride + k * ldb + (v % 2) * 8, type);
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            __m256 a_ik = _mm256_broadcast_ss(a + i * rs_a + k * cs_a);
#pragma GCC unroll 16
            for (int v = 0; v < 2 * np; v++) acc[i][v] = _mm256_fmadd_ps(a_ik, b_k[v], acc[i][v]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int v = 0; v < 2 * np; v++) _mm256_storeu_ps(tile + i * ldt + v * 8, acc[i][v]);
}

/* 16 registers hold 12 accumulators: 4 or more rows take one panel at a time, fewer rows take
 * both panels at once (more independent chains to hide the FMA latency). */
static inline __attribute__((always_inline)) void tile_of(WeightType type, int m, int np, int K, const float *a,
                                                          ptrdiff_t rs_a, ptrdiff_t cs_a, const void *b, ptrdiff_t ldb,
                                                          ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    size_t size = weight_type_size(type);
    if (m <= 3 && np == 2) {
        if (m == 1) rows(1, 2, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        else if (m == 2) rows(2, 2, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        else rows(3, 2, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        return;
    }
    for (int p = 0; p < np; p++) {
        const void *panel = (const char *)b + (size_t)(p * panel_stride) * size;
        float *out = tile + p * PANEL;
        switch (m) {
        case 1: rows(1, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        case 2: rows(2, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        case 3: rows(3, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        case 4: rows(4, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        case 5: rows(5, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        default: rows(6, 1, type, K, a, rs_a, cs_a, panel, ldb, 0, out, ldt); break;
        }
    }
}

static void tile_avx2(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                      ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    tile_of(WEIGHTS_F32, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
}

static void tile16_avx2(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const uint16_t *b,
                        WeightType type, ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    if (type == WEIGHTS_BF16) tile_of(WEIGHTS_BF16, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
    else tile_of(WEIGHTS_F16, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
}

/* Eight lanes at a time; the tail through the scalar member of the same SLEEF family. */
#define ARRAY_FN(name, vector_fn, scalar_fn)                                          \
    static void name(float *out, const float *x, int n) {                             \
        int i = 0;                                                                    \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, vector_fn(_mm256_loadu_ps(x + i))); \
        for (; i < n; i++) out[i] = scalar_fn(x[i]);                                  \
    }
ARRAY_FN(exp_avx2, Sleef_finz_expf8_u10avx2, det_expf)
ARRAY_FN(tanh_avx2, Sleef_finz_tanhf8_u10avx2, det_tanhf)
ARRAY_FN(erf_avx2, Sleef_finz_erff8_u10avx2, det_erff)

const Kernels kernels_avx2 = {"avx2", MR, NP, tile_avx2, exp_avx2, tanh_avx2, erf_avx2, tile16_avx2};
#endif
