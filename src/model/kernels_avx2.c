/* AVX2 + FMA kernels (x86-64 since Haswell / Zen). Compiled with -mavx2 -mfma; used only when
 * the CPU has both (kernels.c).
 *
 * The tile is 6 rows by one 16-column panel: 12 accumulators of 8 floats, two loads of b and
 * six broadcasts of a per k (the BLIS Haswell shape). Each accumulator lane is one output
 * element and sees one _mm256_fmadd_ps per k, in order, from zero: the same chain as the
 * generic kernel's fmaf loop, hence the same bits. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <sleef.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

enum { MR = 6 };

/* m rows of one panel; m is a constant where this is inlined, so acc lives in registers. */
static inline __attribute__((always_inline)) void rows(int m, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                                                       const float *b, ptrdiff_t ldb, float *tile, ptrdiff_t ldt) {
    __m256 acc[MR][2];
    for (int i = 0; i < m; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        __m256 b_lo = _mm256_loadu_ps(b + k * ldb), b_hi = _mm256_loadu_ps(b + k * ldb + 8);
        for (int i = 0; i < m; i++) {
            __m256 a_ik = _mm256_broadcast_ss(a + i * rs_a + k * cs_a);
            acc[i][0] = _mm256_fmadd_ps(a_ik, b_lo, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(a_ik, b_hi, acc[i][1]);
        }
    }
    for (int i = 0; i < m; i++) {
        _mm256_storeu_ps(tile + i * ldt, acc[i][0]);
        _mm256_storeu_ps(tile + i * ldt + 8, acc[i][1]);
    }
}

static void tile_avx2(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                      ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    (void)np; /* one panel per tile */
    switch (m) {
    case 1: rows(1, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 2: rows(2, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 3: rows(3, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 4: rows(4, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 5: rows(5, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    default: rows(6, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    }
    (void)panel_stride;
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

const Kernels kernels_avx2 = {"avx2", MR, 1, tile_avx2, exp_avx2, tanh_avx2, erf_avx2};
#endif
