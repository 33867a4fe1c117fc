/* Every backward kernel against central finite differences of its forward.
 *
 * The loss is L = sum_i r_i out_i for a fixed random r (so dL/dout = r), accumulated in double.
 * Forward kernels are float32, so the step is h = 1e-2: the truncation error is O(h^2 f''') ~
 * 1e-4 relative and the float32 rounding of L contributes ~1e-7 |L| / h ~ 1e-5. We accept
 * |fd - analytic| <= 2e-3 (1 + max |analytic|); a wrong term in a backward is off by O(1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "test_support.h"

typedef struct {
    float *out;
    size_t n_out;
    const float *r;
    void (*forward)(void *ctx);
    void *ctx;
} Probe;

static double probe_loss(const Probe *p) {
    p->forward(p->ctx);
    double L = 0.0;
    for (size_t i = 0; i < p->n_out; i++) L += (double)p->r[i] * p->out[i];
    return L;
}

/* Checks grad (the analytic dL/dx) against finite differences over every element of x. */
static void check_grad(const char *what, const Probe *p, float *x, const float *grad, size_t n) {
    const float h = 1e-2f;
    double worst = 0.0, scale = 0.0;
    size_t worst_i = 0;
    double *fd = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double up = probe_loss(p);
        x[i] = keep - h;
        double down = probe_loss(p);
        x[i] = keep;
        fd[i] = (up - down) / (2.0 * h);
        scale = fmax(scale, fabs(grad[i]));
    }
    for (size_t i = 0; i < n; i++)
        if (fabs(fd[i] - grad[i]) > worst) {
            worst = fabs(fd[i] - grad[i]);
            worst_i = i;
        }
    printf("  %-28s max |fd - analytic| %.2e (max |grad| %.2e)\n", what, worst, scale);
    if (worst > 2e-3 * (1.0 + scale))
        fail_msg("%s: element %zu analytic %.6g vs finite difference %.6g", what, worst_i, grad[worst_i], fd[worst_i]);
    free(fd);
    p->forward(p->ctx); /* leave out consistent with x */
}

static float *randn(Rng *rng, size_t n, float scale) {
    float *x = alloc_floats(n);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * rng_normal(rng));
    return x;
}

/* ---- matmul --------------------------------------------------------------------------- */
typedef struct { float *out, *inp, *w, *b, *packed; int N, C, OC; } MatmulCtx;
static void matmul_fw(void *p) {
    MatmulCtx *c = p;
    pack_weights(c->packed, c->w, c->OC, c->C); /* the probe perturbs w itself */
    matmul_forward(c->out, c->inp, c->packed, c->b, c->N, c->C, c->OC);
}
static void test_matmul(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 1, 0, 0);
    MatmulCtx c = {NULL, NULL, NULL, NULL, alloc_floats(packed_floats(6, 7)), 5, 7, 6};
    c.inp = randn(&rng, 35, 1), c.w = randn(&rng, 42, 1), c.b = randn(&rng, 6, 1), c.out = alloc_floats(30);
    float *r = randn(&rng, 30, 1), *dinp = alloc_floats(35), *dw = alloc_floats(42), *db = alloc_floats(6);
    matmul_fw(&c);
    matmul_backward(dinp, dw, db, r, c.inp, c.w, c.N, c.C, c.OC);
    Probe p = {c.out, 30, r, matmul_fw, &c};
    check_grad("matmul dinp", &p, c.inp, dinp, 35);
    check_grad("matmul dw", &p, c.w, dw, 42);
    check_grad("matmul dbias", &p, c.b, db, 6);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.packed), free(r), free(dinp), free(dw), free(db);
}

/* Threads split a product by output columns, never a sum: forward (packed, a partial last
 * panel) and both backward products give the same bits on 1, 2 and 3 threads. 70 x 150 x 117
 * is above the size below which products stay on one thread. */
static void test_matmul_threads(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 9, 0, 0);
    int N = 70, C = 150, OC = 117;
    float *inp = randn(&rng, (size_t)N * C, 1), *w = randn(&rng, (size_t)OC * C, 1), *b = randn(&rng, OC, 1);
    float *dout = randn(&rng, (size_t)N * OC, 1), *packed = alloc_floats(packed_floats(OC, C));
    pack_weights(packed, w, OC, C);
    float *out[3], *dinp[3], *dw[3];
    for (int t = 0; t < 3; t++) {
        assert_int_equal(threads_start(t + 1), PS_OK);
        out[t] = alloc_floats((size_t)N * OC), dinp[t] = alloc_floats((size_t)N * C), dw[t] = alloc_floats((size_t)OC * C);
        matmul_forward(out[t], inp, packed, b, N, C, OC);
        matmul_backward(dinp[t], dw[t], NULL, dout, inp, w, N, C, OC);
    }
    threads_stop();
    for (int t = 1; t < 3; t++) {
        assert_memory_equal(out[t], out[0], sizeof(float) * (size_t)N * OC);
        assert_memory_equal(dinp[t], dinp[0], sizeof(float) * (size_t)N * C);
        assert_memory_equal(dw[t], dw[0], sizeof(float) * (size_t)OC * C);
    }
    for (int t = 0; t < 3; t++) free(out[t]), free(dinp[t]), free(dw[t]);
    free(inp), free(w), free(b), free(dout), free(packed);
}

/* ---- norms ------------------------------------------------------------------------------ */
typedef struct { NormKind kind; float *out, *mean, *rstd, *inp, *w, *b; int N, C; } NormCtx;
static void norm_fw(void *p) {
    NormCtx *c = p;
    norm_forward(c->kind, c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, 1e-5f);
}
static void check_norm(NormKind kind) {
    Rng rng;
    rng_seed(&rng, 2, kind, 0);
    int N = 4, C = 9;
    NormCtx c = {kind, alloc_floats(36), alloc_floats(4), alloc_floats(4), randn(&rng, 36, 2), randn(&rng, 9, 1),
                 kind == NORM_LAYER ? randn(&rng, 9, 1) : NULL, N, C};
    for (int i = 0; i < 36; i++) c.inp[i] += 0.5f; /* a non-zero mean exercises the centring */
    float *r = randn(&rng, 36, 1), *dinp = alloc_floats(36), *dw = alloc_floats(9), *db = alloc_floats(9);
    norm_fw(&c);
    norm_backward(kind, dinp, dw, c.b ? db : NULL, r, c.inp, c.w, c.mean, c.rstd, N, C);
    Probe p = {c.out, 36, r, norm_fw, &c};
    check_grad(kind == NORM_LAYER ? "layernorm dinp" : "rmsnorm dinp", &p, c.inp, dinp, 36);
    check_grad(kind == NORM_LAYER ? "layernorm dw" : "rmsnorm dw", &p, c.w, dw, 9);
    if (c.b) check_grad("layernorm db", &p, c.b, db, 9);
    free(c.out), free(c.mean), free(c.rstd), free(c.inp), free(c.w), free(c.b), free(r), free(dinp), free(dw), free(db);
}
static void test_layernorm(void **state) { (void)state; check_norm(NORM_LAYER); }
static void test_rmsnorm(void **state) { (void)state; check_norm(NORM_RMS); }

/* ---- activations --------------------------------------------------------------------------- */
typedef struct { ActKind kind; float *out, *inp, *up; int N; } ActCtx;
static void act_fw(void *p) {
    ActCtx *c = p;
    if (c->up) swiglu_forward(c->out, c->inp, c->up, c->N);
    else act_forward(c->kind, c->out, c->inp, c->N);
}
static void test_activations(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 3, 0, 0);
    const char *names[] = {"gelu (tanh) dinp", "gelu (erf) dinp", "silu dinp"};
    for (int k = ACT_GELU_TANH; k <= ACT_SILU; k++) {
        ActCtx c = {(ActKind)k, alloc_floats(20), randn(&rng, 20, 2), NULL, 20};
        float *r = randn(&rng, 20, 1), *dinp = alloc_floats(20);
        act_fw(&c);
        act_backward(c.kind, dinp, r, c.inp, 20);
        Probe p = {c.out, 20, r, act_fw, &c};
        check_grad(names[k], &p, c.inp, dinp, 20);
        free(c.out), free(c.inp), free(r), free(dinp);
    }
    ActCtx c = {ACT_SILU, alloc_floats(20), randn(&rng, 20, 2), randn(&rng, 20, 2), 20};
    float *r = randn(&rng, 20, 1), *dgate = alloc_floats(20), *dup = alloc_floats(20);
    act_fw(&c);
    swiglu_backward(dgate, dup, r, c.inp, c.up, 20);
    Probe p = {c.out, 20, r, act_fw, &c};
    check_grad("swiglu dgate", &p, c.inp, dgate, 20);
    check_grad("swiglu dup", &p, c.up, dup, 20);
    free(c.out), free(c.inp), free(c.up), free(r), free(dgate), free(dup);
}

/* ---- rotary -------------------------------------------------------------------------------- */
typedef struct { float *out, *inp; double inv_freq[4]; int rot; } RopeCtx;
static void rope_fw(void *p) {
    RopeCtx *c = p;
    rope_forward(c->out, c->inp, 2, 3, 5, 2, 8, c->rot, c->inv_freq); /* 2 seqs x 3 rows at pos 5.., 2 heads of 8 */
}
static void test_rope(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 4, 0, 0);
    for (int rot = 4; rot <= 8; rot += 4) { /* partial (NeoX-style) and full rotary */
        RopeCtx c = {alloc_floats(96), randn(&rng, 96, 1), {0}, rot};
        for (int j = 0; j < rot / 2; j++) c.inv_freq[j] = pow(10000.0, -2.0 * j / rot);
        float *r = randn(&rng, 96, 1), *dinp = alloc_floats(96);
        rope_fw(&c);
        rope_backward(dinp, r, 2, 3, 5, 2, 8, rot, c.inv_freq);
        Probe p = {c.out, 96, r, rope_fw, &c};
        check_grad(rot == 8 ? "rope (full) dinp" : "rope (partial) dinp", &p, c.inp, dinp, 96);
        free(c.out), free(c.inp), free(r), free(dinp);
    }
}

/* ---- attention ------------------------------------------------------------------------------ */
/* 4 query heads sharing 2 key/value heads, head size 3, 5 positions. */
typedef struct { float *z, *pattern, *q, *k, *v; AttnShape s; } AttnCtx;
static void attn_fw(void *p) {
    AttnCtx *c = p;
    attention_forward(c->z, c->pattern, c->q, c->k, c->v, NULL, NULL, &c->s);
}
/* z recomputed from a given (causal) pattern, to check dL/dpattern by finite differences; entries
 * above the diagonal are not part of the pattern and their gradient is defined as 0 */
static void z_from_pattern(void *p) {
    AttnCtx *c = p;
    int H = 4, dh = 3, T = 5;
    for (int i = 0; i < T; i++)
        for (int h = 0; h < H; h++)
            for (int e = 0; e < dh; e++) {
                float acc = 0.0f;
                for (int t = 0; t <= i; t++) acc += c->pattern[(h * T + i) * T + t] * c->v[t * 6 + (h / 2) * dh + e];
                c->z[i * 12 + h * dh + e] = acc;
            }
}
static void test_attention(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 5, 0, 0);
    AttnCtx c = {alloc_floats(60), alloc_floats(100), randn(&rng, 60, 1.5), randn(&rng, 30, 1.5), randn(&rng, 30, 1),
                 {4, 2, 3, 5, 0, 5, 0}};
    float *r = randn(&rng, 60, 1), *dq = alloc_floats(60), *dk = alloc_floats(30), *dv = alloc_floats(30);
    float *dpattern = alloc_floats(100);
    attn_fw(&c);
    attention_backward(dq, dk, dv, dpattern, r, c.q, c.k, c.v, c.pattern, &c.s);
    Probe p = {c.z, 60, r, attn_fw, &c};
    check_grad("attention dq", &p, c.q, dq, 60);
    check_grad("attention dk (GQA)", &p, c.k, dk, 30);
    check_grad("attention dv (GQA)", &p, c.v, dv, 30);
    Probe pp = {c.z, 60, r, z_from_pattern, &c};
    check_grad("attention dpattern", &pp, c.pattern, dpattern, 100);
    free(c.z), free(c.pattern), free(c.q), free(c.k), free(c.v), free(r), free(dq), free(dk), free(dv), free(dpattern);
}

/* A suffix computed against a cached prefix equals the same rows of the full computation. */
static void test_attention_prefix(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 6, 0, 0);
    int T = 7, r0 = 3;
    float *q = randn(&rng, (size_t)T * 12, 1), *k = randn(&rng, (size_t)T * 6, 1), *v = randn(&rng, (size_t)T * 6, 1);
    float *z_full = alloc_floats((size_t)T * 12), *pat_full = alloc_floats((size_t)4 * T * T);
    AttnShape full = {4, 2, 3, T, 0, T, 0};
    attention_forward(z_full, pat_full, q, k, v, NULL, NULL, &full);
    AttnShape suffix = {4, 2, 3, T - r0, r0, T - r0, r0};
    float *z_suf = alloc_floats((size_t)T * 12), *pat_suf = alloc_floats((size_t)4 * T * T);
    attention_forward(z_suf, pat_suf, q + r0 * 12, k + r0 * 6, v + r0 * 6, k, v, &suffix);
    assert_memory_equal(z_suf, z_full + r0 * 12, (size_t)(T - r0) * 12 * sizeof(float));
    free(q), free(k), free(v), free(z_full), free(pat_full), free(z_suf), free(pat_suf);
}

/* Threads split attention by (sequence, key/value head), norms by rows and activations by chunks,
 * never a sum: the same bits on 1, 2 and 3 threads. Three sequences of a GQA suffix against their
 * own prefixes, the pattern kept and not kept (z the same either way); a norm of 300 x 130 and
 * an activation of 70,001 floats are above the sizes below which they stay on one thread. */
static void test_attention_norm_threads(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 10, 0, 0);
    enum { B = 3, T = 9, R0 = 2, H = 4, KV = 2, DH = 5, N = 300, C = 130, A = 70001 };
    int R = T - R0, qd = H * DH, kvd = KV * DH;
    float *q = randn(&rng, (size_t)B * R * qd, 1), *k = randn(&rng, (size_t)B * R * kvd, 1);
    float *v = randn(&rng, (size_t)B * R * kvd, 1), *prefix = randn(&rng, (size_t)2 * B * R0 * kvd, 1);
    const float *k_prefix[B], *v_prefix[B];
    for (int b = 0; b < B; b++) k_prefix[b] = prefix + (size_t)b * R0 * kvd, v_prefix[b] = prefix + (size_t)(B + b) * R0 * kvd;
    float *x = randn(&rng, (size_t)N * C, 1), *w = randn(&rng, C, 1), *bias = randn(&rng, C, 1), *pre = randn(&rng, A, 2);
    AttnShape shape = {H, KV, DH, R, R0, R, R0};
    size_t nz = (size_t)B * R * qd, npat = (size_t)B * H * R * T;
    float *z[3], *z_lean[3], *pat[3], *y[3], *mean[3], *rstd[3], *act[3];
    for (int t = 0; t < 3; t++) {
        assert_int_equal(threads_start(t + 1), PS_OK);
        z[t] = alloc_floats(nz), z_lean[t] = alloc_floats(nz), pat[t] = alloc_floats(npat);
        y[t] = alloc_floats((size_t)N * C), mean[t] = alloc_floats(N), rstd[t] = alloc_floats(N), act[t] = alloc_floats(A);
        attention_forward_batch(z[t], pat[t], q, k, v, k_prefix, v_prefix, B, &shape);
        attention_forward_batch(z_lean[t], NULL, q, k, v, k_prefix, v_prefix, B, &shape);
        norm_forward(NORM_LAYER, y[t], mean[t], rstd[t], x, w, bias, N, C, 1e-5f);
        act_forward(ACT_GELU_TANH, act[t], pre, A);
    }
    threads_stop();
    for (int t = 0; t < 3; t++) {
        assert_memory_equal(z_lean[t], z[0], sizeof(float) * nz);
        if (t == 0) continue;
        assert_memory_equal(z[t], z[0], sizeof(float) * nz);
        assert_memory_equal(pat[t], pat[0], sizeof(float) * npat);
        assert_memory_equal(y[t], y[0], sizeof(float) * (size_t)N * C);
        assert_memory_equal(mean[t], mean[0], sizeof(float) * N);
        assert_memory_equal(rstd[t], rstd[0], sizeof(float) * N);
        assert_memory_equal(act[t], act[0], sizeof(float) * A);
    }
    /* and sequence 1 alone, through the one-sequence call, is the batch's sequence 1 */
    float *one = alloc_floats((size_t)R * qd);
    attention_forward(one, NULL, q + (size_t)R * qd, k + (size_t)R * kvd, v + (size_t)R * kvd, k_prefix[1], v_prefix[1], &shape);
    assert_memory_equal(one, z[0] + (size_t)R * qd, sizeof(float) * (size_t)R * qd);
    for (int t = 0; t < 3; t++) free(z[t]), free(z_lean[t]), free(pat[t]), free(y[t]), free(mean[t]), free(rstd[t]), free(act[t]);
    free(q), free(k), free(v), free(prefix), free(x), free(w), free(bias), free(pre), free(one);
}

/* ---- embedding ------------------------------------------------------------------------------- */
typedef struct { float *out, *wte, *wpe; int tokens[4]; } EmbCtx;
static void emb_fw(void *p) {
    EmbCtx *c = p;
    embedding_forward(c->out, c->tokens, 4, weight_f32(c->wte), weight_f32(c->wpe), NULL, 3);
}
static void test_embedding(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 7, 0, 0);
    EmbCtx c = {alloc_floats(12), randn(&rng, 15, 1), randn(&rng, 12, 1), {2, 0, 2, 4}}; /* token 2 twice */
    float *r = randn(&rng, 12, 1), *dwte = alloc_floats(15), *dwpe = alloc_floats(12);
    emb_fw(&c);
    embedding_backward(dwte, dwpe, r, c.tokens, 4, 3);
    Probe p = {c.out, 12, r, emb_fw, &c};
    check_grad("embedding dwte", &p, c.wte, dwte, 15);
    check_grad("embedding dwpe", &p, c.wpe, dwpe, 12);
    free(c.out), free(c.wte), free(c.wpe), free(r), free(dwte), free(dwpe);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),    cmocka_unit_test(test_matmul_threads), cmocka_unit_test(test_attention_norm_threads), cmocka_unit_test(test_layernorm),        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_activations), cmocka_unit_test(test_rope),         cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_prefix), cmocka_unit_test(test_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
