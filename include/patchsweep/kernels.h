/* Our own kernels: the matrix product's register tile and vectorised exp / tanh / erf, one
 * implementation per instruction set, every one giving the same bits.
 *
 * Why the same bits: every element of a product is ONE fused multiply-add chain over k in
 * order, starting from +0:  acc = fma(a(i,0), b(0,j), 0);  acc = fma(a(i,1), b(1,j), acc); ...
 * A vector lane holds one output column and never meets another lane, so the width of the
 * vectors (1, 8 or 16 floats), the tile's shape, the number of rows in the call and a row's
 * place in it change nothing: an element's bits depend on its row of a and its column of b
 * alone. fma is exactly rounded (IEEE 754), so the portable fmaf() chain is the reference every
 * vector kernel must equal. The functions are SLEEF's bit-consistent "finz" family, whose scalar
 * variant finishes the tails (det_expf ... in core.h).
 *
 * Only ops.c (and tests, benchmarks) use this header; the rest of the program calls ops.h. */
#ifndef PATCHSWEEP_KERNELS_H
#define PATCHSWEEP_KERNELS_H

#include <stddef.h>

/* Output columns per packed weight panel, the same on every instruction set. */
enum { PANEL = 16 };
/* Floats of a matrix of OC output columns by C inputs, packed: whole panels of PANEL columns. */
static inline size_t packed_floats(int OC, int C) { return (size_t)((OC + PANEL - 1) / PANEL) * PANEL * (size_t)C; }

/* tile[i * ldt + p * PANEL + j] = sum over k = 0..K-1, as one fma chain from +0, of
 *   a[i * rs_a + k * cs_a] * b[p * panel_stride + k * ldb + j]
 * for rows i < m (1 <= m <= mr) and panels p < np (1 <= np <= the family's np), j < PANEL. */
typedef void (*TileKernel)(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                           ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt);
/* out[i] = f(x[i]) for i < n (out may be x). */
typedef void (*ArrayFn)(float *out, const float *x, int n);

typedef struct {
    const char *name;  /* what PATCHSWEEP_ISA calls it */
    int mr, np;        /* largest tile: mr rows by np panels */
    TileKernel tile;
    ArrayFn exp, tanh, erf;
} Kernels;

/* The family in use. The first call selects one (kernels_select(NULL)) if nobody has. */
const Kernels *kernels(void);
/* Selects a family by name ("generic", "avx2", "avx512", "neon"); NULL means the PATCHSWEEP_ISA
 * environment variable if set, else the fastest the CPU has. PS_EUSER with one line if the name
 * is unknown or the CPU cannot run it. */
int kernels_select(const char *name);
/* The families this build has and this CPU can run, fastest last; returns how many. */
int kernels_available(const Kernels *out[], int cap);

extern const Kernels kernels_generic;
#if defined(__x86_64__)
extern const Kernels kernels_avx2, kernels_avx512;
#elif defined(__aarch64__)
extern const Kernels kernels_neon;
#endif

#endif
