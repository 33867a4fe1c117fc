/* ARM NEON (AArch64 Advanced SIMD) kernels. Every AArch64 CPU has them, with fused
 * multiply-add.
 *
 * The tile is 6 rows by one 16-column panel: 24 accumulators of 4 floats, four loads of b and six
 * scalar reads of a per k. Each accumulator lane is one output element and sees one vfmaq_n_f32
 * (acc + b * a, fused) per k, in order, from zero: the same chain as the generic kernel's fmaf
 * loop, hence the same bits. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <sleef.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

enum { MR = 6 };

/* Four elements of b from element `at` on, widened to float32 (exact): a plain load, bfloat16
 * shifted into the top half of each lane, or float16 through the converter every AArch64 CPU has. */
static inline __attribute__((always_inline)) float32x4_t load_b(const void *b, ptrdiff_t at, WeightType type) {
    if (type == WEIGHTS_F32) return vld1q_f32((const float *)b + at);
    uint16x4_t h = vld1_u16((const uint16_t *)b + at);
    if (type == WEIGHTS_BF16) return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/* m rows of one panel of b held as type; both are constants where this is inlined, so acc lives
 * in registers. */
static inline __attribute__((always_inline)) void rows(int m, WeightType type, int K, const float *a, ptrdiff_t rs_a,
                                                       ptrdiff_t cs_a, const void *b, ptrdiff_t ldb, float *tile,
                                                       ptrdiff_t ldt) {
    float32x4_t acc[MR][4];
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int k = 0; k < K; k++) {
        float32x4_t b_k[4];
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) b_k[q] = load_b(b, k * ldb + 4 * q, type);
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            float a_ik = a[i * rs_a + k * cs_a];
#pragma GCC unroll 16
            for (int q = 0; q < 4; q++) acc[i][q] = vfmaq_n_f32(acc[i][q], b_k[q], a_ik);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < m; i++)
#pragma GCC unroll 16
        for (int q = 0; q < 4; q++) vst1q_f32(tile + i * ldt + 4 * q, acc[i][q]);
}

static inline __attribute__((always_inline)) void tile_of(WeightType type, int m, int K, const float *a,
                                                          ptrdiff_t rs_a, ptrdiff_t cs_a, const void *b, ptrdiff_t ldb,
                                                          float *tile, ptrdiff_t ldt) {
    switch (m) {
    case 1: rows(1, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 2: rows(2, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 3: rows(3, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 4: rows(4, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    case 5: rows(5, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    default: rows(6, type, K, a, rs_a, cs_a, b, ldb, tile, ldt); break;
    }
}

static void tile_neon(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                      ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    (void)np, (void)panel_stride; /* one panel per tile */
    tile_of(WEIGHTS_F32, m, K, a, rs_a, cs_a, b, ldb, tile, ldt);
}

static void tile16_neon(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const uint16_t *b,
                        WeightType type, ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    (void)np, (void)panel_stride;
    if (type == WEIGHTS_BF16) tile_of(WEIGHTS_BF16, m, K, a, rs_a, cs_a, b, ldb, tile, ldt);
    else tile_of(WEIGHTS_F16, m, K, a, rs_a, cs_a, b, ldb, tile, ldt);
}

/* Four lanes at a time; the tail through the scalar member of the same SLEEF family. */
#define ARRAY_FN(name, vector_fn, scalar_fn)                                                 \
    static void name(float *out, const float *x, int n) {                                    \
        int i = 0;                                                                           \
        for (; i + 4 <= n; i += 4) vst1q_f32(out + i, vector_fn(vld1q_f32(x + i)));          \
        for (; i < n; i++) out[i] = scalar_fn(x[i]);                                         \
    }
ARRAY_FN(exp_neon, Sleef_finz_expf4_u10advsimd, det_expf)
ARRAY_FN(tanh_neon, Sleef_finz_tanhf4_u10advsimd, det_tanhf)
ARRAY_FN(erf_neon, Sleef_finz_erff4_u10advsimd, det_erff)

const Kernels kernels_neon = {"neon", MR, 1, tile_neon, exp_neon, tanh_neon, erf_neon, tile16_neon};
#endif
