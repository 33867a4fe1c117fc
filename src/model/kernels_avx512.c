/* AVX-512 kernels (x86-64: Skylake-SP and later, Zen 4 and later). Compiled with -mavx512f
 * -mfma; used only when the CPU has AVX-512F (kernels.c).
 *
 * The tile is 12 rows by two 16-column panels: 24 accumulators of 16 floats, two loads of b and
 * twelve broadcasts of a per k. Each accumulator lane is one output element and sees one
 * _mm512_fmadd_ps per k, in order, from zero: the same chain as the generic kernel's fmaf loop,
 * hence the same bits. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <sleef.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

enum { MR = 12, NP = 2 };

/* m rows of np panels; both are constants where this is inlined, so acc lives in registers. */
static inline __attribute__((always_inline)) void rows(int m, int np, int K, const float *a, ptrdiff_t rs_a,
                                                       ptrdiff_t cs_a, const float *b, ptrdiff_t ldb,
                                                       ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    __m512 acc[MR][NP];
    for (int i = 0; i < m; i++)
        for (int p = 0; p < np; p++) acc[i][p] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m512 b_k[NP];
        for (int p = 0; p < np; p++) b_k[p] = _mm512_loadu_ps(b + p * panel_stride + k * ldb);
        for (int i = 0; i < m; i++) {
            __m512 a_ik = _mm512_set1_ps(a[i * rs_a + k * cs_a]);
            for (int p = 0; p < np; p++) acc[i][p] = _mm512_fmadd_ps(a_ik, b_k[p], acc[i][p]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int p = 0; p < np; p++) _mm512_storeu_ps(tile + i * ldt + p * PANEL, acc[i][p]);
}

#define ROWS(M)                                                                                      \
    case M:                                                                                          \
        if (np == 2) rows(M, 2, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);                 \
        else rows(M, 1, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);                         \
        break;

static void tile_avx512(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                        ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    switch (m) {
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11)
    default:
        if (np == 2) rows(MR, 2, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
        else rows(MR, 1, K, a, rs_a, cs_a, b, ldb, panel_stride, tile, ldt);
    }
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

const Kernels kernels_avx512 = {"avx512", MR, NP, tile_avx512, exp_avx512, tanh_avx512, erf_avx512};
#endif
