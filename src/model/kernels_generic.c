/* The portable kernels: plain C, one fmaf() chain per output element. fmaf is exactly rounded
 * on every machine (in hardware or in the C library), so this is the reference the vector
 * kernels must match bit for bit (kernels.h says why they can). */
#include <math.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

static void tile_generic(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                         ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    for (int i = 0; i < m; i++)
        for (int p = 0; p < np; p++) {
            const float *panel = b + p * panel_stride;
            float acc[PANEL] = {0}; /* one chain per output column j */
            for (int k = 0; k < K; k++) {
                float a_ik = a[i * rs_a + k * cs_a];
                for (int j = 0; j < PANEL; j++) acc[j] = fmaf(a_ik, panel[k * ldb + j], acc[j]);
            }
            for (int j = 0; j < PANEL; j++) tile[i * ldt + p * PANEL + j] = acc[j];
        }
}

/* The same chain with each b element widened from 16 bits first (exact). */
static void tile16_generic(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const uint16_t *b,
                           WeightType type, ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt) {
    for (int i = 0; i < m; i++)
        for (int p = 0; p < np; p++) {
            const uint16_t *panel = b + p * panel_stride;
            float acc[PANEL] = {0};
            for (int k = 0; k < K; k++) {
                float a_ik = a[i * rs_a + k * cs_a], b_k[PANEL];
                /* the type tested once per row of the panel, so both loops stay plain (and vectorise) */
                if (type == WEIGHTS_BF16)
                    for (int j = 0; j < PANEL; j++) b_k[j] = bf16_widen(panel[k * ldb + j]);
                else
                    for (int j = 0; j < PANEL; j++) b_k[j] = f16_widen(panel[k * ldb + j]);
                for (int j = 0; j < PANEL; j++) acc[j] = fmaf(a_ik, b_k[j], acc[j]);
            }
            for (int j = 0; j < PANEL; j++) tile[i * ldt + p * PANEL + j] = acc[j];
        }
}

static void exp_generic(float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = det_expf(x[i]);
}
static void tanh_generic(float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = det_tanhf(x[i]);
}
static void erf_generic(float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = det_erff(x[i]);
}

const Kernels kernels_generic = {"generic", 4, 1, tile_generic, exp_generic, tanh_generic, erf_generic, tile16_generic};
