/* AVX-512 kernels (x86-64: Skylake-SP and later, Zen 4 and later). Compiled with -mavx512f
 * -mfma; used only when the CPU has AVX-512F (kernels.c).
 *
 * The tile is 12 rows by two 16-column panels: 24 accumulators of 16 floats, two loads of b and
 * twelve broadcasts of a per k; up to 3 rows take four panels at once. Each accumulator lane is one output element and sees one
 * _mm512_fmadd_ps per k, in order, from zero: the same chain as the generic kernel's fmaf loop,
 * hence the same bits. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <sleef.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

enum { MR = 12, NP = 4 };

/* Sixteen elements of b from element `at` on, widened to float32 (exact): a plain load, bfloat16
 * moved to the top half of each lane, or float16 through AVX-512F's converter. */
static inline __attribute__((always_inline)) __m512 load_b(const void *b, ptrdiff_t at, WeightType type) {
    if (type == WEIGHTS_F32) return _mm512_loadu_ps((const float *)b + at);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)b + at));
    if (type == WEIGHTS_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

/* m rows of np panels of b held as type; all three are constants where this is inlined, so acc
 * lives in registers. */
static inline __attribute__((always_inline)) void rows(int m, int np, WeightType type, int K, const float *a,
                                                       ptrdiff_t rs_a, ptrdiff_t cs_a, const void *b, ptrdiff_t ldb,
                                                       ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    __m512 acc[MR][NP]; /* at most 24 used: m * np <= 24 */
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int p = 0; p < np; p++) acc[i][p] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 b_k[NP];
#pragma GCC unroll 16
        for (int p = 0; p < np; p++) b_k[p] = load_b(b, p * panel_stride + k * ldb, type);
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            __m512 a_ik = _mm512_set1_ps(a[i * rs_a + k * cs_a]);
#pragma GCC unroll 16
            for (int p = 0; p < np; p++) acc[i][p] = _mm512_fmadd_ps(a_ik, b_k[p], acc[i][p]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int p = 0; p < np; p++) _mm512_storeu_ps(tile + i * ldt + p * PANEL, acc[i][p]);
}

/* 32 registers hold 24 accumulators: 4 or more rows take two panels at a time, fewer rows all
 * four at once (more independent chains to hide the FMA latency). */
#define ROWS(M)                                                                                      \
    case M:                                                                                          \
        if (np2 == 2) rows(M, 2, type, K, a, rs_a, cs_a, panel, ldb, panel_stride, out, ldt);        \
        else rows(M, 1, type, K, a, rs_a, cs_a, panel, ldb, panel_stride, out, ldt);                 \
        break;

static inline __attribute__((always_inline)) void tile_of(WeightType type, int m, int np, int K, const float *a,
                                                          ptrdiff_t rs_a, ptrdiff_t cs_a, const void *b, ptrdiff_t ldb,
                                                          ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    size_t size = weight_type_size(type);
    if (m <= 3 && np == 4) {
        if (m == 1) rows(1, 4, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        else if (m == 2) rows(2, 4, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        else rows(3, 4, type, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        return;
    }
    for (int p = 0; p < np; p += 2) {
        const void *panel = (const char *)b + (size_t)(p * panel_stride) * size;
        float *out = tile + p * PANEL;
        int np2 = np - p >= 2 ? 2 : 1;
        switch (m) {
            ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11)
        default:
            if (np2 == 2) rows(MR, 2, type, K, a, rs_a, cs_a, panel, ldb, panel_stride, out, ldt);
            else rows(MR, 1, type, K, a, rs_a, cs_a, panel, ldb, panel_stride, out, ldt);
        }
    }
}

static void tile_avx512(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                        ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    tile_of(WEIGHTS_F32, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
}

static void tile16_avx512(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const uint16_t *b,
                          WeightType type, ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    if (type == WEIGHTS_BF16) tile_of(WEIGHTS_BF16, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
    else tile_of(WEIGHTS_F16, m, np, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
}

/* Sixteen lanes at a time; the tail through the scalar member of the same SLEEF family. */
#define ARRAY_FN(name, vector_fn, scalar_fn)                                                         \
    static void name(float *out, const float *x, int n) {                                            \
        int i = 0;                                                                                   \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, vector_fn(_mm512_loadu_ps(x + i)));  \
        for (; i < n; i++) out[i] = scalar_fn(x[i]);                                                 \
    }
ARRAY_FN(exp_avx512, Sleef_finz_expf16_u10avx512f, det_expf)
ARRAY_FN(tanh_avx512, Sleef_finz_tanhf16_u10avx512f, det_tanhf)
ARRAY_FN(erf_avx512, Sleef_finz_erff16_u10avx512f, det_erff)

const Kernels kernels_avx512 = {"avx512", MR, NP, tile_avx512, exp_avx512, tanh_avx512, erf_avx512, tile16_avx512};
#endif
