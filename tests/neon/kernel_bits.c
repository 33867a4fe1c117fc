/* The kernels' promises (include/patchsweep/kernels.h), checked for every kernel family that this
 * build has and this CPU runs, on any instruction set: built natively here, and cross-compiled
 * for AArch64 and run under qemu by run_qemu.sh, which is how the NEON kernels get checked on an
 * x86-64 machine.
 *
 *   - the tile kernel, called directly as matmul.c calls it (packed weights, rows of an unpacked
 *     matrix, the transposed a of dw, the zero-padded edge panel; every m up to mr, every np up
 *     to the family's, K from 0 to 300), equals the fma chain written out here bit for bit,
 *     writes nothing else of its tile, and reads nothing past a and b (they end at a page the
 *     process may not touch);
 *   - the products through matmul.c (forward on packed weights, both backward products) equal
 *     the chain, for ragged shapes;
 *   - the vectorised exp / tanh / erf equal the scalar det_* function (SLEEF's purecfma member)
 *     on every input: 2^19 float bit patterns spread over all of them, the special values, and a
 *     dense sweep of [-20, 20]; and at every length up to 40 they read and write nothing past n.
 *
 * The inputs come from an integer generator, so they are the same on every machine, and the last
 * line printed is a digest of the reference results (the chains and the det_* values): run_qemu.sh
 * compares the digest of the AArch64 run with this machine's, so the two instruction sets are
 * also checked to give each other's bits. Exit status 0 when everything held, 1 otherwise. */
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"

static int failures;

/* What is being checked, for the report of a crash (a read past a guard page, say). */
static char current[256] = "setting up";

static void crashed(int sig) {
    (void)sig;
    const char *parts[] = {"CRASH during: ", current, "\n"};
    for (int i = 0; i < 3; i++)
        if (write(2, parts[i], strlen(parts[i])) < 0) break;
    _exit(3);
}

#define FAIL(...)                                    \
    do {                                             \
        if (failures++ < 10) {                       \
            fprintf(stderr, "FAIL: " __VA_ARGS__);   \
            fputc('\n', stderr);                     \
        }                                            \
    } while (0)

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* splitmix64: the same numbers on every machine. */
static uint64_t next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A float built from random bits: mostly of magnitude 2^-6 .. 2^6 with a full random mantissa (so
 * products round and sums cancel), sometimes +0 or -0, sometimes tiny enough that the products
 * and the chains are subnormal. */
static float random_float(uint64_t *s) {
    uint64_t r = next(s);
    uint32_t sign = (uint32_t)(r >> 63) << 31, mantissa = (uint32_t)r & 0x7FFFFF;
    unsigned kind = (unsigned)(r >> 32) & 63;
    if (kind == 0) return from_bits(sign); /* +0 or -0 */
    int e = kind == 1 ? -70 + (int)((r >> 40) % 8) : -6 + (int)((r >> 40) % 13);
    return from_bits(sign | (uint32_t)(127 + e) << 23 | mantissa);
}

/* FNV-1a over the reference results. */
static uint64_t digest = 0xCBF29CE484222325u;
static void digest_float(float x) {
    uint32_t u = bits(x);
    for (int i = 0; i < 4; i++) digest = (digest ^ ((u >> (8 * i)) & 0xFF)) * 0x100000001B3u;
}

/* n floats that end where a page the process may not touch begins, so a read past the end
 * faults. */
typedef struct {
    void *map;
    size_t len;
    float *p;
} Guarded;

static Guarded guarded(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), bytes = n * sizeof(float);
    size_t data_pages = (bytes + page - 1) / page;
    Guarded g;
    g.len = (data_pages + 1) * page;
    g.map = mmap(NULL, g.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.map == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    char *guard = (char *)g.map + data_pages * page;
    if (mprotect(guard, page, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
    g.p = (float *)(guard - bytes);
    return g;
}

static void release(Guarded g) { munmap(g.map, g.len); }

static void fill(uint64_t *s, float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = random_float(s);
}

/* The reference: one fmaf chain from +0, written out. */
static float chain(const float *a, ptrdiff_t a_step, const float *b, ptrdiff_t b_step, int K) {
    float acc = 0.0f;
    for (int k = 0; k < K; k++) acc = fmaf(a[k * a_step], b[k * b_step], acc);
    return acc;
}

static const int tile_Ks[] = {0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 64, 100, 255, 256, 300};

/* How matmul.c lays out b for the tile (ld and panel stride as functions of K and np). */
enum { PACKED, ROWS, ROWS_TRANSPOSED_A, EDGE, N_LAYOUTS };
static const char *const layout_names[] = {"packed weights", "rows of b (dinp)", "rows of b, a transposed (dw)",
                                           "edge panel"};

/* The tile kernel against the chain for one layout, m and np, into a tile of the driver's width
 * (or 5 columns wider: any ldt is allowed); returns 1 if it held. */
static int check_tile(const Kernels *fam, int layout, int m, int np, int K, int wide, uint64_t *s, int digest_it) {
    ptrdiff_t ldb, panel_stride, rs_a, cs_a;
    int a_rows = m + 3; /* the dw layout reads a column of a taller matrix */
    if (layout == PACKED) ldb = PANEL, panel_stride = (ptrdiff_t)PANEL * K;
    else if (layout == EDGE) ldb = PANEL, panel_stride = 0;
    else ldb = (ptrdiff_t)np * PANEL + 5, panel_stride = PANEL; /* a matrix with np full panels and 5 columns more */
    if (layout == ROWS_TRANSPOSED_A) rs_a = 1, cs_a = a_rows;
    else rs_a = K, cs_a = 1;
    size_t a_len = K == 0 ? 0 : (size_t)((m - 1) * rs_a + (K - 1) * cs_a + 1);
    size_t b_len = K == 0 ? 0 : (size_t)((np - 1) * panel_stride + (K - 1) * ldb + PANEL);
    Guarded a = guarded(a_len), b = guarded(b_len);
    fill(s, a.p, a_len);
    fill(s, b.p, b_len);
    /* The driver's tile: mr rows of ldt = the family's np panels, here prefilled with a marker. */
    ptrdiff_t ldt = (ptrdiff_t)fam->np * PANEL + (wide ? 5 : 0);
    size_t tile_len = (size_t)fam->mr * (size_t)ldt;
    float *tile = malloc(tile_len * sizeof(float));
    const float marker = from_bits(0x7FC0BEEF);
    for (size_t t = 0; t < tile_len; t++) tile[t] = marker;
    snprintf(current, sizeof current, "%s tile, %s, m=%d np=%d K=%d", fam->name, layout_names[layout], m, np, K);
    fam->tile(m, np, K, a.p, rs_a, cs_a, b.p, ldb, panel_stride, tile, ldt);
    int ok = 1;
    for (int i = 0; i < fam->mr; i++)
        for (ptrdiff_t c = 0; c < ldt; c++) {
            float got = tile[i * ldt + c];
            if (i < m && c < (ptrdiff_t)np * PANEL) {
                int p = (int)(c / PANEL), j = (int)(c % PANEL);
                float want = chain(a.p + i * rs_a, cs_a, b.p + p * panel_stride + j, ldb, K);
                if (digest_it) digest_float(want);
                if (bits(got) != bits(want) && ok) {
                    FAIL("%s tile, %s, m=%d np=%d K=%d: row %d column %d is %a (0x%08x), the fma chain gives %a "
                         "(0x%08x)",
                         fam->name, layout_names[layout], m, np, K, i, (int)c, (double)got, (unsigned)bits(got),
                         (double)want, (unsigned)bits(want));
                    ok = 0;
                }
            } else if (bits(got) != bits(marker) && ok) {
                FAIL("%s tile, %s, m=%d np=%d K=%d: wrote row %d column %d, outside its m x np panels", fam->name,
                     layout_names[layout], m, np, K, i, (int)c);
                ok = 0;
            }
        }
    free(tile);
    release(a), release(b);
    return ok;
}

static long check_tiles(const Kernels *fam) {
    uint64_t s = 1;
    long n = 0;
    for (size_t k = 0; k < sizeof tile_Ks / sizeof tile_Ks[0]; k++)
        for (int layout = 0; layout < N_LAYOUTS; layout++)
            for (int np = 1; np <= (layout == EDGE ? 1 : fam->np); np++)
                for (int m = 1; m <= fam->mr; m++, n++) check_tile(fam, layout, m, np, tile_Ks[k], (int)(k % 2), &s, 0);
    return n;
}

/* The reference for the digest, on fixed shapes: the same on every machine whatever its kernel
 * families are (the generic family, mr 4 and np 1, exists everywhere). */
static void digest_tiles(void) {
    uint64_t s = 2;
    for (size_t k = 0; k < sizeof tile_Ks / sizeof tile_Ks[0]; k++)
        for (int layout = 0; layout < N_LAYOUTS; layout++)
            for (int m = 1; m <= kernels_generic.mr; m++)
                check_tile(&kernels_generic, layout, m, 1, tile_Ks[k], 0, &s, 1);
}

static float *alloc_random(uint64_t *s, size_t n) {
    float *x = alloc_floats(n ? n : 1);
    fill(s, x, n);
    return x;
}

static int expect_chain(const char *fam, const char *what, const float *got, const float *want, size_t n, int M, int N,
                        int K) {
    for (size_t i = 0; i < n; i++)
        if (bits(got[i]) != bits(want[i])) {
            FAIL("%s kernels, %s, M=%d N=%d K=%d: element %zu is %a, the fma chain gives %a", fam, what, M, N, K, i,
                 (double)got[i], (double)want[i]);
            return 0;
        }
    return 1;
}

static const int row_counts[] = {1, 2, 5, 6, 7, 13, 29};
static const int shapes[][2] = {{1, 1}, {5, 3}, {16, 16}, {17, 33}, {40, 72}, {100, 37}, {48, 300}, {33, 1}};

/* matmul.c's products on the selected family against the chain; returns how many. */
static long check_products(const char *fam) {
    uint64_t s = 3;
    long n = 0;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++)
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
            int M = row_counts[r], N = shapes[sh][0], K = shapes[sh][1];
            snprintf(current, sizeof current, "%s kernels, products M=%d N=%d K=%d", fam, M, N, K);
            float *a = alloc_random(&s, (size_t)M * K), *w = alloc_random(&s, (size_t)N * K);
            float *bias = alloc_random(&s, (size_t)N), *packed = alloc_floats(packed_floats(N, K));
            float *out = alloc_floats((size_t)M * N), *want = alloc_floats((size_t)M * N);
            pack_weights(packed, w, N, K);
            matmul_forward(out, a, packed, bias, M, K, N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) want[i * N + j] = chain(a + i * K, 1, w + j * K, 1, K) + bias[j];
            expect_chain(fam, "matmul_forward", out, want, (size_t)M * N, M, N, K);
            /* a as dout[M, N] against w[N, K]: dinp[i][c] += chain_o dout[i][o] w[o][c];
             * dw[o][c] += chain_i dout[i][o] inp[i][c] */
            float *dout = alloc_random(&s, (size_t)M * N), *dinp = alloc_random(&s, (size_t)M * K);
            float *dw = alloc_random(&s, (size_t)N * K);
            float *want_dinp = alloc_floats((size_t)M * K), *want_dw = alloc_floats((size_t)N * K);
            for (int i = 0; i < M; i++)
                for (int c = 0; c < K; c++)
                    want_dinp[i * K + c] = dinp[i * K + c] + chain(dout + i * N, 1, w + c, K, N);
            for (int o = 0; o < N; o++)
                for (int c = 0; c < K; c++) want_dw[o * K + c] = dw[o * K + c] + chain(dout + o, N, a + c, K, M);
            matmul_backward(dinp, dw, NULL, dout, a, w, M, K, N);
            expect_chain(fam, "matmul_backward dinp", dinp, want_dinp, (size_t)M * K, M, N, K);
            expect_chain(fam, "matmul_backward dw", dw, want_dw, (size_t)N * K, M, N, K);
            n += 3;
            /* w's leading 16 bits as bfloat16, or as float16 with the top exponent bit cleared (finite):
             * products on them held in 16 bits equal the chain on their widened values */
            for (int t = WEIGHTS_BF16; t <= WEIGHTS_F16; t++) {
                uint16_t *w16 = xmalloc(2 * (size_t)N * K + 2), *packed16 = xmalloc(2 * packed_floats(N, K));
                for (size_t i = 0; i < (size_t)N * K; i++)
                    w16[i] = (uint16_t)(bits(w[i]) >> 16) & (t == WEIGHTS_F16 ? 0xbfff : 0xffff);
                WeightRef held = {w16, (WeightType)t, 0};
                weights_widen(w, held, (size_t)N * K);
                pack_weights16(packed16, w16, N, K);
                matmul_forward_ref(out, a, (WeightRef){packed16, (WeightType)t, 1}, bias, M, K, N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) want[i * N + j] = chain(a + i * K, 1, w + j * K, 1, K) + bias[j];
                expect_chain(fam, t == WEIGHTS_BF16 ? "forward on bf16" : "forward on f16", out, want, (size_t)M * N, M,
                             N, K);
                memset(dinp, 0, sizeof(float) * (size_t)M * K);
                for (int i = 0; i < M; i++)
                    for (int c = 0; c < K; c++) want_dinp[i * K + c] = 0.0f + chain(dout + i * N, 1, w + c, K, N);
                matmul_backward_ref(dinp, NULL, NULL, dout, a, held, M, K, N);
                expect_chain(fam, t == WEIGHTS_BF16 ? "dinp on bf16" : "dinp on f16", dinp, want_dinp, (size_t)M * K, M,
                             N, K);
                /* and from the packed copy alone, its panels read across (a 16-bit model's backward) */
                memset(dinp, 0, sizeof(float) * (size_t)M * K);
                matmul_backward_ref(dinp, NULL, NULL, dout, a, (WeightRef){packed16, (WeightType)t, 1}, M, K, N);
                expect_chain(fam, t == WEIGHTS_BF16 ? "dinp on packed bf16" : "dinp on packed f16", dinp, want_dinp,
                             (size_t)M * K, M, N, K);
                n += 3;
                free(w16), free(packed16);
            }
            free(a), free(w), free(bias), free(packed), free(out), free(want), free(dout), free(dinp), free(dw);
            free(want_dinp), free(want_dw);
        }
    return n;
}

/* The inputs of the function checks: 2^19 bit patterns spread evenly over all 2^32 (every sign,
 * exponent, subnormals, infinities, NaNs), the special values, and [-20, 20] in steps of 2^-10. */
static float *function_inputs(size_t *n_out) {
    static const float special[] = {0.0f,    -0.0f,    INFINITY, -INFINITY, NAN,       1.0f,       -1.0f,
                                    0.5f,    -0.5f,    0.84375f, 3.92f,     -3.92f,    9.0f,       -9.0f,
                                    88.72f,  88.73f,   -87.33f,  -103.97f,  -104.0f,   FLT_MAX,    -FLT_MAX,
                                    FLT_MIN, -FLT_MIN, 1e-40f,   -1e-40f,   0x1p-149f, 0x1p-24f,   -0x1p-24f};
    size_t n_special = sizeof special / sizeof special[0], n_spread = (size_t)1 << 19, n_dense = 40 * 1024 + 1;
    size_t n = n_special + n_spread + n_dense;
    float *x = alloc_floats(n);
    size_t i = 0;
    for (size_t j = 0; j < n_special; j++) x[i++] = special[j];
    for (size_t j = 0; j < n_spread; j++) x[i++] = from_bits((uint32_t)(j << 13) | ((uint32_t)j * 2654435761u >> 19));
    for (size_t j = 0; j < n_dense; j++) x[i++] = -20.0f + (float)j * 0x1p-10f;
    *n_out = n;
    return x;
}

typedef float (*ScalarFn)(float);
static const char *const fn_names[] = {"exp", "tanh", "erf"};
static const ScalarFn scalar_fns[] = {det_expf, det_tanhf, det_erff};

static ArrayFn array_fn(const Kernels *fam, int f) { return f == 0 ? fam->exp : f == 1 ? fam->tanh : fam->erf; }

/* The family's array functions against the scalar ones (want[f], computed once): over the whole
 * array (the vector body), and over its first 2^16 from an odd offset and in place. */
static long check_functions(const Kernels *fam, const float *x, float *const want[3], size_t n) {
    float *out = alloc_floats(n);
    for (int f = 0; f < 3; f++) {
        ArrayFn fn = array_fn(fam, f);
        for (int pass = 0; pass < 3; pass++) {
            snprintf(current, sizeof current, "%s kernels, %s pass %d", fam->name, fn_names[f], pass);
            size_t off = pass == 1 ? 1 : 0, end = pass == 0 ? n : (size_t)1 << 16;
            if (pass == 2) {
                memcpy(out, x, end * sizeof(float));
                fn(out, out, (int)end);
            } else fn(out + off, x + off, (int)(end - off));
            for (size_t i = off; i < end; i++)
                if (bits(out[i]) != bits(want[f][i])) {
                    FAIL("%s kernels, %s(%a) (0x%08x)%s: %a (0x%08x), the scalar det_%sf gives %a (0x%08x)", fam->name,
                         fn_names[f], (double)x[i], (unsigned)bits(x[i]),
                         pass == 1 ? " from offset 1" : pass == 2 ? " in place" : "", (double)out[i],
                         (unsigned)bits(out[i]), fn_names[f], (double)want[f][i], (unsigned)bits(want[f][i]));
                    break;
                }
        }
    }
    free(out);
    /* Every short length, into arrays that end at a page the process may not touch: the vector
     * body and the scalar tail neither read nor write past n. */
    for (int len = 0; len <= 40; len++) {
        Guarded in = guarded((size_t)len), res = guarded((size_t)len);
        memcpy(in.p, x + n - (size_t)len - 100, (size_t)len * sizeof(float));
        for (int f = 0; f < 3; f++) {
            snprintf(current, sizeof current, "%s kernels, %s of %d floats", fam->name, fn_names[f], len);
            array_fn(fam, f)(res.p, in.p, len);
            for (int i = 0; i < len; i++)
                if (bits(res.p[i]) != bits(scalar_fns[f](in.p[i]))) {
                    FAIL("%s kernels, %s of %d floats: element %d differs from det_%sf", fam->name, fn_names[f], len, i,
                         fn_names[f]);
                    break;
                }
        }
        release(in), release(res);
    }
    return (long)n;
}

int main(void) {
#if defined(__aarch64__)
    const char *arch = "aarch64";
#elif defined(__x86_64__)
    const char *arch = "x86-64";
#else
    const char *arch = "other";
#endif
    signal(SIGSEGV, crashed);
    signal(SIGBUS, crashed);
    const Kernels *fam[8];
    int n_fam = kernels_available(fam, 8);
    printf("kernel_bits on %s:", arch);
    for (int f = 0; f < n_fam; f++) printf(" %s", fam[f]->name);
    printf("\n");
    size_t n_x;
    float *x = function_inputs(&n_x), *want[3];
    for (int f = 0; f < 3; f++) {
        want[f] = alloc_floats(n_x);
        for (size_t i = 0; i < n_x; i++) want[f][i] = scalar_fns[f](x[i]);
    }
    for (int f = 0; f < n_fam; f++) {
        if (kernels_select(fam[f]->name) != PS_OK) {
            FAIL("kernels_select(%s): %s", fam[f]->name, ps_error());
            continue;
        }
        int before = failures;
        long tiles = check_tiles(fam[f]), products = check_products(fam[f]->name);
        /* The generic family's functions are the scalar ones, element by element. */
        long inputs = fam[f] == &kernels_generic ? 0 : check_functions(fam[f], x, want, n_x);
        printf("  %-8s %s: %ld tile calls, %ld products", fam[f]->name,
               failures == before ? "equal to the fma chain and det_* bit for bit" : "FAILED", tiles, products);
        printf(inputs ? ", %ld inputs to exp/tanh/erf\n" : "\n", inputs);
    }
    digest_tiles();
    for (int f = 0; f < 3; f++) {
        for (size_t i = 0; i < n_x; i++) /* a NaN is a NaN: its payload is not compared */
            digest_float(isnan(want[f][i]) ? NAN : want[f][i]);
        free(want[f]);
    }
    free(x);
    printf("digest %016llx\n", (unsigned long long)digest);
    if (failures) fprintf(stderr, "%d failures\n", failures);
    return failures ? 1 : 0;
}
