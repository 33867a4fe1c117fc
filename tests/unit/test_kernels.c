/* The kernels' promises (include/patchsweep/kernels.h), for every kernel family this CPU can run:
 *
 *   - every product element is one fma chain over k in order from zero: equal, bit for bit, to
 *     the chain written out here (forward on packed weights, and both backward products), for
 *     shapes with ragged edges in every dimension;
 *   - so a row's bits do not depend on how many rows share the call or where it starts (many row
 *     counts and offsets), and every family gives the same bits;
 *   - the vectorised exp / tanh / erf equal the scalar function on every input (vector body and
 *     scalar tail agree) and are within 1 ulp of the float64 C library;
 *   - the deterministic double functions are within 1 ulp (erfc 1.5) of long double.
 *
 * Each family is selected in turn with kernels_select(), as PATCHSWEEP_ISA does. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"
#include "test_support.h"

static float *randn(Rng *rng, size_t n) {
    float *x = alloc_floats(n ? n : 1);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(rng);
    return x;
}

static int available(const Kernels *out[8]) {
    int n = kernels_available(out, 8);
    assert_true(n >= 1);
    return n;
}

/* Selects family k for the rest of the test. */
static void use(const Kernels *k) {
    assert_int_equal(kernels_select(k->name), PS_OK);
    assert_ptr_equal(kernels(), k);
}

/* The reference: one fmaf chain per element, written out. */
static float chain(const float *a, ptrdiff_t a_step, const float *b, ptrdiff_t b_step, int K) {
    float acc = 0.0f;
    for (int k = 0; k < K; k++) acc = fmaf(a[k * a_step], b[k * b_step], acc);
    return acc;
}

static void expect_bits(const char *what, const Kernels *k, const float *got, const float *want, size_t n, int M,
                        int N, int K) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s (%s kernels), M=%d N=%d K=%d: element %zu is %.9g, the fma chain gives %.9g", what, k->name, M,
                     N, K, i, got[i], want[i]);
}

static const int row_counts[] = {1, 2, 3, 5, 7, 13, 16, 29, 64};
static const int shapes[][2] = {{1, 1}, {5, 3}, {16, 16}, {17, 33}, {40, 72}, {100, 37}, {48, 300}, {33, 1}};

static void test_products_equal_the_chain(void **state) {
    (void)state;
    const Kernels *fam[8];
    int n_fam = available(fam);
    Rng rng;
    rng_seed(&rng, 10, 0, 0);
    long checked = 0;
    for (int f = 0; f < n_fam; f++) {
        use(fam[f]);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
                int M = row_counts[r], N = shapes[s][0], K = shapes[s][1];
                float *a = randn(&rng, (size_t)M * K), *w = randn(&rng, (size_t)N * K), *bias = randn(&rng, N);
                float *packed = alloc_floats(packed_floats(N, K)), *out = alloc_floats((size_t)M * N);
                float *want = alloc_floats((size_t)M * N);
                /* forward: out[i][j] = chain_k a[i][k] w[j][k], then + bias[j] */
                pack_weights(packed, w, N, K);
                matmul_forward(out, a, packed, bias, M, K, N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) want[i * N + j] = chain(a + i * K, 1, w + j * K, 1, K) + bias[j];
                expect_bits("matmul_forward", fam[f], out, want, (size_t)M * N, M, N, K);
                /* backward, reading a as dout[M, N=out] against w[N, K]: dinp[i][c] += chain_o dout[i][o] w[o][c];
                 * dw[o][c] += chain_i dout[i][o] inp[i][c] */
                float *dout = randn(&rng, (size_t)M * N), *dinp = randn(&rng, (size_t)M * K), *dw = randn(&rng, (size_t)N * K);
                float *want_dinp = alloc_floats((size_t)M * K), *want_dw = alloc_floats((size_t)N * K);
                for (int i = 0; i < M; i++)
                    for (int c = 0; c < K; c++) want_dinp[i * K + c] = dinp[i * K + c] + chain(dout + i * N, 1, w + c, K, N);
                for (int o = 0; o < N; o++)
                    for (int c = 0; c < K; c++) want_dw[o * K + c] = dw[o * K + c] + chain(dout + o, N, a + c, K, M);
                matmul_backward(dinp, dw, NULL, dout, a, w, M, K, N);
                expect_bits("matmul_backward dinp", fam[f], dinp, want_dinp, (size_t)M * K, M, N, K);
                expect_bits("matmul_backward dw", fam[f], dw, want_dw, (size_t)N * K, M, N, K);
                checked += 3;
                free(a), free(w), free(bias), free(packed), free(out), free(want), free(dout), free(dinp), free(dw);
                free(want_dinp), free(want_dw);
            }
        printf("  %-8s forward, dinp and dw equal the fma chain bit for bit\n", fam[f]->name);
    }
    printf("  %ld products checked\n", checked);
}

/* Random 16-bit weights of type t: bfloat16 from normal floats; float16 with every exponent
 * (subnormals included) and any mantissa. Never infinite or NaN, as loading guarantees. */
static uint16_t *random_half(Rng *rng, size_t n, WeightType t) {
    uint16_t *h = xmalloc(sizeof(uint16_t) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next(rng);
        if (t == WEIGHTS_F16) h[i] = (uint16_t)((r & 0x8000) | ((r >> 16) % 31) << 10 | ((r >> 32) & 0x3ff));
        else {
            float x = (float)rng_normal(rng);
            uint32_t bits;
            memcpy(&bits, &x, sizeof bits);
            h[i] = (uint16_t)(bits >> 16);
        }
    }
    return h;
}

/* Products on weights held in 16 bits equal the products on the widened float32 weights (which
 * the test above holds to the fma chain), for forward (packed) and dinp (from rows, ragged last
 * panel, and from the packed copy), on every family and both types. */
static void test_products_on_16_bit_weights(void **state) {
    (void)state;
    const Kernels *fam[8];
    int n_fam = available(fam);
    Rng rng;
    rng_seed(&rng, 12, 0, 0);
    static const int rows[] = {1, 3, 7, 13, 29};
    long checked = 0;
    for (int f = 0; f < n_fam; f++) {
        use(fam[f]);
        for (int t = WEIGHTS_BF16; t <= WEIGHTS_F16; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
                    int M = rows[r], N = shapes[s][0], K = shapes[s][1];
                    uint16_t *w16 = random_half(&rng, (size_t)N * K, (WeightType)t);
                    uint16_t *packed16 = xmalloc(sizeof(uint16_t) * packed_floats(N, K));
                    float *w = alloc_floats((size_t)N * K), *packed = alloc_floats(packed_floats(N, K));
                    WeightRef held = {w16, (WeightType)t, 0};
                    weights_widen(w, held, (size_t)N * K);
                    pack_weights(packed, w, N, K);
                    pack_weights16(packed16, w16, N, K);
                    float *a = randn(&rng, (size_t)M * K), *bias = randn(&rng, N);
                    float *out = alloc_floats((size_t)M * N), *want = alloc_floats((size_t)M * N);
                    matmul_forward(want, a, packed, bias, M, K, N);
                    matmul_forward_ref(out, a, (WeightRef){packed16, (WeightType)t, 1}, bias, M, K, N);
                    expect_bits(t == WEIGHTS_BF16 ? "forward on bf16" : "forward on f16", fam[f], out, want,
                                (size_t)M * N, M, N, K);
                    float *dout = randn(&rng, (size_t)M * N), *dinp = randn(&rng, (size_t)M * K);
                    float *want_dinp = alloc_floats((size_t)M * K);
                    memcpy(want_dinp, dinp, sizeof(float) * (size_t)M * K);
                    matmul_backward(want_dinp, NULL, NULL, dout, a, w, M, K, N);
                    float *from_packed = alloc_floats((size_t)M * K);
                    memcpy(from_packed, dinp, sizeof(float) * (size_t)M * K);
                    matmul_backward_ref(dinp, NULL, NULL, dout, a, held, M, K, N);
                    expect_bits(t == WEIGHTS_BF16 ? "dinp on bf16" : "dinp on f16", fam[f], dinp, want_dinp,
                                (size_t)M * K, M, N, K);
                    /* from the packed copy alone, its panels read across (a 16-bit model's backward) */
                    matmul_backward_ref(from_packed, NULL, NULL, dout, a, (WeightRef){packed16, (WeightType)t, 1}, M, K, N);
                    expect_bits(t == WEIGHTS_BF16 ? "dinp on packed bf16" : "dinp on packed f16", fam[f], from_packed,
                                want_dinp, (size_t)M * K, M, N, K);
                    free(from_packed);
                    checked += 3;
                    free(w16), free(packed16), free(w), free(packed), free(a), free(bias), free(out), free(want);
                    free(dout), free(dinp), free(want_dinp);
                }
        printf("  %-8s forward and dinp on bf16 and f16 weights equal the widened float32 products bit for bit\n",
               fam[f]->name);
    }
    printf("  %ld products checked\n", checked);
}

/* A row's bits do not depend on how many rows share the call or where it starts, on any family,
 * and every family gives the bits of the first. */
static void test_rows_do_not_depend_on_the_batch(void **state) {
    (void)state;
    const Kernels *fam[8];
    int n_fam = available(fam);
    Rng rng;
    rng_seed(&rng, 11, 0, 0);
    int M = 64, C = 768 / 8, OC = 2304 / 8 + 5; /* a GPT-2-like ratio, with a ragged last panel */
    float *inp = randn(&rng, (size_t)M * C), *w = randn(&rng, (size_t)OC * C), *b = randn(&rng, OC);
    float *packed = alloc_floats(packed_floats(OC, C)), *first = alloc_floats((size_t)M * OC);
    float *all = alloc_floats((size_t)M * OC), *part = alloc_floats((size_t)M * OC);
    pack_weights(packed, w, OC, C);
    int calls = 0;
    for (int f = 0; f < n_fam; f++) {
        use(fam[f]);
        matmul_forward(all, inp, packed, b, M, C, OC);
        if (f == 0) memcpy(first, all, sizeof(float) * (size_t)M * OC);
        else if (memcmp(first, all, sizeof(float) * (size_t)M * OC) != 0)
            fail_msg("the %s kernels give other bits than the %s kernels", fam[f]->name, fam[0]->name);
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++)
            for (int start = 0; start + row_counts[r] <= M; start += 1 + 5 * (row_counts[r] > 8)) {
                int n = row_counts[r];
                matmul_forward(part, inp + (size_t)start * C, packed, b, n, C, OC);
                calls++;
                if (memcmp(part, all + (size_t)start * OC, sizeof(float) * (size_t)n * OC) != 0)
                    fail_msg("%s kernels: rows %d..%d computed in a call of %d rows differ from the same rows in a "
                             "call of %d", fam[f]->name, start, start + n - 1, n, M);
            }
    }
    printf("  %d calls on %d kernel families: every row bit-identical\n", calls, n_fam);
    free(inp), free(w), free(b), free(packed), free(first), free(all), free(part);
}

/* The other row-wise operations: a row (or an element) computed alone equals the same row in a
 * call of many, whatever its offset. */
static void test_other_ops_row_invariant(void **state) {
    (void)state;
    const Kernels *fam[8];
    int n_fam = available(fam);
    Rng rng;
    rng_seed(&rng, 12, 0, 0);
    int M = 29, C = 83;
    float *x = randn(&rng, (size_t)M * C), *g = randn(&rng, C), *bias = randn(&rng, C);
    float *all = alloc_floats((size_t)M * C), *part = alloc_floats((size_t)M * C);
    float *stats = alloc_floats(2 * (size_t)M), *first[4];
    for (int i = 0; i < 4; i++) first[i] = alloc_floats((size_t)M * C);
    for (int f = 0; f < n_fam; f++) {
        use(fam[f]);
        for (int op = 0; op < 4; op++) { /* layernorm, gelu (tanh), gelu (erf), silu */
            for (int rows = M; rows >= 1; rows = rows > 1 ? rows / 2 : 0)
                for (int start = 0; start + rows <= M; start += rows) {
                    float *out = rows == M ? all : part;
                    const float *in = x + (size_t)start * C;
                    if (op == 0) norm_forward(NORM_LAYER, out, stats + M, stats, in, g, bias, rows, C, 1e-5f);
                    else act_forward(op == 1 ? ACT_GELU_TANH : op == 2 ? ACT_GELU_ERF : ACT_SILU, out, in, rows * C);
                    if (rows < M && memcmp(part, all + (size_t)start * C, sizeof(float) * (size_t)rows * C) != 0)
                        fail_msg("%s kernels, op %d: rows %d..%d alone differ from the same rows in a call of %d",
                                 fam[f]->name, op, start, start + rows - 1, M);
                    if (rows == M && f == 0) memcpy(first[op], all, sizeof(float) * (size_t)M * C);
                    if (rows == M && f > 0 && memcmp(first[op], all, sizeof(float) * (size_t)M * C) != 0)
                        fail_msg("op %d: the %s kernels give other bits than the %s kernels", op, fam[f]->name,
                                 fam[0]->name);
                }
        }
    }
    printf("  layernorm and the three activations: row- and family-invariant on %d families\n", n_fam);
    for (int i = 0; i < 4; i++) free(first[i]);
    free(x), free(g), free(bias), free(all), free(part), free(stats);
}

/* Distance in units in the last place of a float, measured against a double reference. */
static double ulps(float got, double want) {
    if (isnan(want)) return isnan(got) ? 0.0 : INFINITY;
    if (isinf((float)want)) return got == (float)want ? 0.0 : INFINITY; /* overflows float: inf is right */
    double mag = fabs(want) < FLT_MIN ? FLT_MIN : fabs(want);
    int e;
    frexp(mag, &e);
    double ulp = ldexp(1.0, e - 24); /* float has a 24-bit significand */
    if (fabs(want) < FLT_MIN) ulp = ldexp(1.0, -149);
    return fabs((double)got - want) / ulp;
}

typedef struct {
    const char *name;
    ArrayFn (*pick)(const Kernels *k);
    float (*scalar)(float);
    double (*reference)(double);
    float lo, hi;
} FnCase;

static ArrayFn pick_exp(const Kernels *k) { return k->exp; }
static ArrayFn pick_tanh(const Kernels *k) { return k->tanh; }
static ArrayFn pick_erf(const Kernels *k) { return k->erf; }

/* Every family's vectorised function equals the scalar one on every input, including the ends
 * of the range, zeros, infinities and NaN; and stays within 1 ulp of the float64 C library. */
static void test_array_functions(void **state) {
    (void)state;
    const Kernels *fam[8];
    int n_fam = available(fam);
    FnCase cases[] = {
        {"exp", pick_exp, det_expf, exp, -104.0f, 89.0f},
        {"tanh", pick_tanh, det_tanhf, tanh, -20.0f, 20.0f},
        {"erf", pick_erf, det_erff, erf, -10.0f, 10.0f},
    };
    enum { N = 1 << 20 };
    float *x = alloc_floats(N + 7), *y = alloc_floats(N + 7);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* an even grid over the range, then specials; N + 7 elements so the tail is exercised */
        for (int i = 0; i < N; i++) x[i] = cases[c].lo + (cases[c].hi - cases[c].lo) * (float)i / (float)N;
        float specials[7] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-30f, -3.5e-39f};
        memcpy(x + N, specials, sizeof specials);
        double worst = 0.0;
        float worst_x = 0.0f;
        for (int f = 0; f < n_fam; f++) {
            cases[c].pick(fam[f])(y, x, N + 7);
            for (int i = 0; i < N + 7; i++) {
                float s = cases[c].scalar(x[i]);
                if (memcmp(&s, &y[i], sizeof s) != 0 && !(isnan(s) && isnan(y[i])))
                    fail_msg("%s (%s kernels) at x = %.9g: %.9g, the scalar function gives %.9g", cases[c].name,
                             fam[f]->name, x[i], y[i], s);
                double e = ulps(y[i], cases[c].reference(x[i]));
                if (e > worst) worst = e, worst_x = x[i];
            }
        }
        printf("  %-5s vector == scalar on %d inputs x %d families; max error %.3f ulp (at %.6g)\n", cases[c].name,
               N + 7, n_fam, worst, worst_x);
        if (worst > 1.0) fail_msg("%s: %.3f ulp at x = %.9g, SLEEF's u10 promises at most 1", cases[c].name, worst, worst_x);
    }
    free(x), free(y);
}

/* The double functions against long double, in ulps of double. */
static double ulps_double(double got, long double want) {
    if (isnan((double)want)) return isnan(got) ? 0.0 : INFINITY;
    int e;
    frexpl(fabsl(want) < DBL_MIN ? DBL_MIN : fabsl(want), &e);
    return (double)(fabsl((long double)got - want) / ldexpl(1.0L, e - 53));
}

static void test_double_functions(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 13, 0, 0);
    double worst[6] = {0};
    const char *names[6] = {"exp", "log", "pow", "sin", "cos", "erfc"};
    for (int i = 0; i < 200000; i++) {
        double u = rng_uniform(&rng), x = -700.0 + 1400.0 * u, pos = ldexp(u + 0.5, (int)(rng_uniform(&rng) * 200) - 100);
        double small = -20.0 + 40.0 * u, base = 0.5 + 2.0 * rng_uniform(&rng), power = -50.0 + 100.0 * u;
        double e[6] = {
            ulps_double(det_exp(x), expl(x)),           ulps_double(det_log(pos), logl(pos)),
            ulps_double(det_pow(base, power), powl(base, power)), ulps_double(det_sin(small), sinl(small)),
            ulps_double(det_cos(small), cosl(small)),   ulps_double(det_erfc(small / 4), erfcl(small / 4)),
        };
        for (int k = 0; k < 6; k++)
            if (e[k] > worst[k]) worst[k] = e[k];
    }
    for (int k = 0; k < 6; k++) {
        printf("  det_%-4s max error %.3f ulp over 200000 inputs\n", names[k], worst[k]);
        if (worst[k] > (k == 5 ? 1.5 : 1.0)) fail_msg("det_%s: %.3f ulp", names[k], worst[k]);
    }
}

/* PATCHSWEEP_ISA's messages: an unknown family, and the generic one always runs. */
static void test_select_by_name(void **state) {
    (void)state;
    assert_int_equal(kernels_select("sse9"), PS_EUSER);
    assert_non_null(strstr(ps_error(), "sse9 is not a kernel family of this build (it has: generic"));
    assert_int_equal(kernels_select("generic"), PS_OK);
    assert_string_equal(kernels()->name, "generic");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_products_equal_the_chain), cmocka_unit_test(test_products_on_16_bit_weights),
        cmocka_unit_test(test_rows_do_not_depend_on_the_batch),
        cmocka_unit_test(test_other_ops_row_invariant),  cmocka_unit_test(test_array_functions),
        cmocka_unit_test(test_double_functions),         cmocka_unit_test(test_select_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
