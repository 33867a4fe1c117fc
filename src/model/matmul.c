/* The matrix products, forward and backward, on our own kernels (kernels.h).
 *
 * Every output element is one fma chain over k in order from zero, whatever the number of rows,
 * the tile shape or the instruction set, so a row's bits depend on that row and the weights
 * alone: a suffix recomputed inside a batch of patched runs equals the full forward pass bit
 * for bit, a self-patch is exactly 0, and every CPU writes the same results file. A bias, or
 * the gradient already in an accumulating output, is added after the chain, once. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"

/* Panels of PANEL columns, k-major, zero past OC, for elements of es bytes (4 or 2; +0 is all
 * zero bits in float32, bfloat16 and float16 alike). */
static void pack_elements(char *packed, const char *w, size_t es, int OC, int C) {
    int panels = (OC + PANEL - 1) / PANEL;
    for (int p = 0; p < panels; p++)
        for (int k = 0; k < C; k++)
            for (int j = 0; j < PANEL; j++) {
                int o = p * PANEL + j;
                char *to = packed + (((size_t)p * C + k) * PANEL + j) * es;
                const char *from = w + ((size_t)o * C + k) * es;
                if (o >= OC) memset(to, 0, es);
                else if (es == 4) memcpy(to, from, 4);
                else memcpy(to, from, 2);
            }
}

void pack_weights(float *packed, const float *w, int OC, int C) { pack_elements((char *)packed, (const char *)w, 4, OC, C); }

void pack_weights16(uint16_t *packed, const uint16_t *w, int OC, int C) {
    pack_elements((char *)packed, (const char *)w, 2, OC, C);
}

void weights_widen(float *dst, WeightRef w, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = weight_value(w, i);
}

/* The b operand: column panel p, row k, column j at element p * panel_stride + k * ld + j of w. */
typedef struct {
    WeightRef w;
    ptrdiff_t ld, panel_stride;
} Panels;

/* b from panel p on. */
static Panels panels_from(Panels b, int p) {
    b.w = weight_at(b.w, (size_t)(p * b.panel_stride));
    return b;
}

/* Tile enough rows that a block of a stays in the L2 cache while the panels stream past it
 * (~256 KB); the arithmetic does not depend on it. */
static int row_block(const Kernels *kern, int K) {
    int rows = (65536 / (K > 0 ? K : 1)) / kern->mr * kern->mr;
    return rows > kern->mr ? rows : kern->mr;
}

/* c[i, col0 + j] (=, or += when accumulate) tile + bias, for panels [0, n_panels) of b that
 * hold columns col0 .. col0 + cols - 1 of c. */
static void panels_product(const Kernels *kern, int M, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a,
                           Panels b, int n_panels, int col0, int cols, float *c, ptrdiff_t ldc, const float *bias,
                           int accumulate) {
    float tile[16 * 64]; /* mr <= 16 rows, np * PANEL <= 64 columns */
    ptrdiff_t ldt = (ptrdiff_t)kern->np * PANEL;
    int mc = row_block(kern, K);
    for (int i0 = 0; i0 < M; i0 += mc)
        for (int p0 = 0; p0 < n_panels; p0 += kern->np) {
            int np = n_panels - p0 < kern->np ? n_panels - p0 : kern->np;
            int j0 = col0 + p0 * PANEL, width = cols - p0 * PANEL < np * PANEL ? cols - p0 * PANEL : np * PANEL;
            for (int i = i0; i < M && i < i0 + mc; i += kern->mr) {
                int m = M - i < kern->mr ? M - i : kern->mr;
                WeightRef b0 = panels_from(b, p0).w;
                if (b0.type == WEIGHTS_F32)
                    kern->tile(m, np, K, a + i * rs_a, rs_a, cs_a, b0.p, b.ld, b.panel_stride, tile, ldt);
                else
                    kern->tile16(m, np, K, a + i * rs_a, rs_a, cs_a, b0.p, b0.type, b.ld, b.panel_stride, tile, ldt);
                for (int r = 0; r < m; r++) {
                    float *c_row = c + (i + r) * ldc + j0;
                    const float *t_row = tile + r * ldt;
                    for (int j = 0; j < width; j++) {
                        float v = bias ? t_row[j] + bias[j0 + j] : t_row[j];
                        c_row[j] = accumulate ? c_row[j] + v : v;
                    }
                }
            }
        }
}

/* One product split over the rank's threads by column panels: each thread computes whole output
 * elements, each one the same fma chain as without threads. */
typedef struct {
    const Kernels *kern;
    int M, K, n_panels, cols;
    const float *a;
    ptrdiff_t rs_a, cs_a, ldc;
    Panels b;
    float *c;
    const float *bias;
    int accumulate;
} PanelsJob;

static void panels_task(void *ctx, int index, int count) {
    const PanelsJob *j = ctx;
    int p0 = (int)((long)j->n_panels * index / count), p1 = (int)((long)j->n_panels * (index + 1) / count);
    if (p1 <= p0) return;
    Panels b = panels_from(j->b, p0);
    int cols = (p1 * PANEL < j->cols ? p1 * PANEL : j->cols) - p0 * PANEL;
    panels_product(j->kern, j->M, j->K, j->a, j->rs_a, j->cs_a, b, p1 - p0, p0 * PANEL, cols, j->c, j->ldc, j->bias,
                   j->accumulate);
}

/* Products smaller than this many multiply-adds run on one thread: waking the others costs more. */
#define THREADED_FMAS (1L << 17)

/* c[M, N] (=, or += when accumulate) a b + bias, with a(i, k) = a[i * rs_a + k * cs_a]. b's
 * panels are zero-padded past column N when padded (packed weights); otherwise the last,
 * partial panel is copied (widened, exactly, if b is held in 16 bits) into a padded one first. */
static void gemm(int M, int N, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, Panels b, int padded, float *c,
                 ptrdiff_t ldc, const float *bias, int accumulate) {
    if (M <= 0 || N <= 0) return;
    const Kernels *kern = kernels();
    int full = padded ? (N + PANEL - 1) / PANEL : N / PANEL;
    PanelsJob job = {kern, M, K, full, padded ? N : full * PANEL, a, rs_a, cs_a, ldc, b, c, bias, accumulate};
    if (threads_count() > 1 && full > 1 && (long)M * N * K >= THREADED_FMAS) threads_run(panels_task, &job);
    else panels_task(&job, 0, 1);
    int edge_cols = N - full * PANEL;
    if (edge_cols <= 0) return;
    float *edge = alloc_floats((size_t)(K > 0 ? K : 1) * PANEL);
    WeightRef last = panels_from(b, full).w;
    for (int k = 0; k < K; k++) weights_widen(edge + (size_t)k * PANEL, weight_at(last, (size_t)(k * b.ld)), (size_t)edge_cols);
    Panels edge_panel = {weight_f32(edge), PANEL, 0};
    panels_product(kern, M, K, a, rs_a, cs_a, edge_panel, 1, full * PANEL, edge_cols, c, ldc, bias, accumulate);
    free(edge);
}

void matmul_packed(float *out, ptrdiff_t ld_out, const float *inp, ptrdiff_t ld_inp, const float *w_packed,
                   const float *bias, int N, int C, int OC) {
    Panels w = {weight_f32(w_packed), PANEL, (ptrdiff_t)PANEL * C};
    gemm(N, OC, C, inp, ld_inp, 1, w, 1, out, ld_out, bias, 0);
}

void matmul_forward_ref(float *out, const float *inp, WeightRef w_packed, const float *bias, int N, int C, int OC) {
    Panels w = {w_packed, PANEL, (ptrdiff_t)PANEL * C};
    gemm(N, OC, C, inp, C, 1, w, 1, out, OC, bias, 0);
}

void matmul_forward(float *out, const float *inp, const float *w_packed, const float *bias, int N, int C, int OC) {
    matmul_forward_ref(out, inp, weight_f32(w_packed), bias, N, C, OC);
}

/* dinp[N, C] += dout[N, OC] w[OC, C] with w given packed (panel o / PANEL, row c, column o % PANEL):
 * the b operand's panel of columns c0 .. c0 + PANEL - 1 is rows c0.. of w's panels read across,
 * so each thread gathers np such panels (widened, exactly) into a buffer and runs the tile on it.
 * Every element is still the one chain over o in order: the bits of the product on w's rows. */
typedef struct {
    const Kernels *kern;
    int N, C, OC;
    const float *dout;
    WeightRef w;
    float *dinp;
} GatherJob;

static void gather_task(void *ctx, int index, int count) {
    const GatherJob *j = ctx;
    int groups = (j->C + PANEL * j->kern->np - 1) / (PANEL * j->kern->np);
    int g0 = (int)((long)groups * index / count), g1 = (int)((long)groups * (index + 1) / count);
    if (g1 <= g0) return;
    size_t panel = (size_t)j->OC * PANEL;
    float *buffer = alloc_floats(panel * (size_t)j->kern->np);
    for (int g = g0; g < g1; g++) {
        int c0 = g * PANEL * j->kern->np, cols = j->C - c0 < PANEL * j->kern->np ? j->C - c0 : PANEL * j->kern->np;
        int np = (cols + PANEL - 1) / PANEL;
        for (int q = 0; q < np; q++)
            for (int o = 0; o < j->OC; o++)
                for (int jj = 0; jj < PANEL; jj++) {
                    int c = c0 + q * PANEL + jj;
                    size_t at = ((size_t)(o / PANEL) * j->C + (size_t)c) * PANEL + (size_t)(o % PANEL);
                    buffer[q * panel + (size_t)o * PANEL + jj] = c < j->C ? weight_value(j->w, at) : 0.0f;
                }
        Panels b = {weight_f32(buffer), PANEL, (ptrdiff_t)panel};
        panels_product(j->kern, j->N, j->OC, j->dout, j->OC, 1, b, np, c0, cols, j->dinp, j->C, NULL, 1);
    }
    free(buffer);
}

void matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, WeightRef w,
                         int N, int C, int OC) {
    if (N == 0) return;
    if (dinp && w.packed) {
        GatherJob job = {kernels(), N, C, OC, dout, w, dinp};
        if (threads_count() > 1 && (long)N * C * OC >= THREADED_FMAS) threads_run(gather_task, &job);
        else gather_task(&job, 0, 1);
    } else if (dinp) { /* dinp[N,C] += dout[N,OC] w[OC,C]: w's rows are the panels' rows */
        Panels w_rows = {w, C, PANEL};
        gemm(N, C, OC, dout, OC, 1, w_rows, 0, dinp, C, NULL, 1);
    }
    if (dw) { /* dw[OC,C] += dout^T[OC,N] inp[N,C] */
        Panels inp_rows = {weight_f32(inp), C, PANEL};
        gemm(OC, C, N, dout, 1, OC, inp_rows, 0, dw, C, NULL, 1);
    }
    if (dbias)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) dbias[o] += dout[(size_t)n * OC + o];
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int N, int C, int OC) {
    matmul_backward_ref(dinp, dw, dbias, dout, inp, weight_f32(w), N, C, OC);
}
