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

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Output columns per packed weight panel, the same on every instruction set. */
enum { PANEL = 16 };
/* Floats of a matrix of OC output columns by C inputs, packed: whole panels of PANEL columns. */
static inline size_t packed_floats(int OC, int C) { return (size_t)((OC + PANEL - 1) / PANEL) * PANEL * (size_t)C; }

/* How a weight matrix is held in memory: float32, or the 16-bit type of a BF16 / F16 checkpoint,
 * widened to float32 as the kernel reads it. Widening is exact (every bfloat16 and every float16
 * value, subnormals included, is a float32 value), so a product on 16-bit weights has the same
 * bits as the same product on the widened float32 matrix. */
typedef enum { WEIGHTS_F32, WEIGHTS_BF16, WEIGHTS_F16 } WeightType;
static inline size_t weight_type_size(WeightType t) { return t == WEIGHTS_F32 ? 4 : 2; }
static inline const char *weight_type_name(WeightType t) {
    return t == WEIGHTS_F32 ? "float32" : t == WEIGHTS_BF16 ? "bfloat16" : "float16";
}
/* bfloat16 is the top half of a float32. */
static inline float bf16_widen(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}
static inline float f16_widen(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24); /* zero and subnormals */
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), (int)exp - 25);
    return sign ? -v : v;
}
static inline float half_widen(uint16_t h, WeightType t) { return t == WEIGHTS_BF16 ? bf16_widen(h) : f16_widen(h); }

/* A read-only weight array as it is held: where it starts, its type, and for a matrix whether
 * these are its rows or its packed panels (ops.h: pack_weights). */
typedef struct {
    const void *p;
    WeightType type;
    int packed;
} WeightRef;
static inline WeightRef weight_f32(const float *p) { return (WeightRef){p, WEIGHTS_F32, 0}; }
/* The array from element i on (NULL stays NULL: a parameter the model does not have). */
static inline WeightRef weight_at(WeightRef w, size_t i) {
    return w.p ? (WeightRef){(const char *)w.p + i * weight_type_size(w.type), w.type, w.packed} : w;
}
/* Element i, widened to float32. */
static inline float weight_value(WeightRef w, size_t i) {
    if (w.type == WEIGHTS_F32) return ((const float *)w.p)[i];
    return half_widen(((const uint16_t *)w.p)[i], w.type);
}

/* tile[i * ldt + p * PANEL + j] = sum over k = 0..K-1, as one fma chain from +0, of
 *   a[i * rs_a + k * cs_a] * b[p * panel_stride + k * ldb + j]
 * for rows i < m (1 <= m <= mr) and panels p < np (1 <= np <= the family's np), j < PANEL. */
typedef void (*TileKernel)(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const float *b,
                           ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt);
/* The same with b held in 16 bits (type WEIGHTS_BF16 or WEIGHTS_F16), each element widened to
 * float32 before its multiply-add: the same bits as tile on the widened b. */
typedef void (*Tile16Kernel)(int m, int np, int K, const float *a, ptrdiff_t rs_a, ptrdiff_t cs_a, const uint16_t *b,
                             WeightType type, ptrdiff_t ldb, ptrdiff_t panel_stride, float *tile, ptrdiff_t ldt);
/* out[i] = f(x[i]) for i < n (out may be x). */
typedef void (*ArrayFn)(float *out, const float *x, int n);

typedef struct {
    const char *name;  /* what PATCHSWEEP_ISA calls it */
    int mr, np;        /* largest tile: mr rows by np panels */
    TileKernel tile;
    ArrayFn exp, tanh, erf;
    Tile16Kernel tile16;
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
