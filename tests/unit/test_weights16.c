/* Weights held in 16 bits (BF16 / F16 checkpoints) against the float32 model of their widened
 * values: the same bits everywhere, because widening is exact and the kernels widen before the
 * multiply-add (include/patchsweep/kernels.h).
 *
 *   - a 16-bit copy of each fixture architecture (GPT-2, Llama with GQA, GPT-NeoX), built here by
 *     rounding the F32 fixture's matrices, and the F32 model holding the widened values: equal
 *     fingerprints, logits and every residual stream bit for bit, every backward gradient, and the
 *     engine's effects (fast and naive, two metrics) bit for bit;
 *   - the BF16 and F16 checkpoint fixtures load held in 16 bits, the projections only packed (the
 *     block is about a quarter of the float32 one), and give the bits of their widened copy.
 *
 * No tolerance anywhere: a kernel that rounded, or read the wrong half of an element, would
 * change bits. Every family the CPU runs is checked by test_kernels; this runs the best one (and
 * PATCHSWEEP_ISA=generic in test_weights16_generic). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"
#include "test_support.h"

/* float16 bits of x, rounded toward zero (any 16-bit value near x will do: what is compared is a
 * model against the widened copy of itself). */
static uint16_t f16_of(float x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    float a = fabsf(x);
    if (a < 0x1p-14f) return sign | (uint16_t)(a * 0x1p24f); /* subnormal */
    int e = ilogbf(a);
    if (e > 15) return sign | 0x7bff;
    return sign | (uint16_t)((e + 15) << 10) | (uint16_t)((int)ldexpf(a, 10 - e) - 1024);
}

static uint16_t bf16_of(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (uint16_t)(bits >> 16);
}

/* held: src's matrices rounded to type, held in 16 bits; widened: the float32 model of the same
 * values. Vectors are copied to both. */
static void make_pair(const Model *src, WeightType type, Model *held, Model *widened) {
    ModelConfig c16 = src->cfg, c32 = src->cfg;
    c16.weight_type = type;
    c32.weight_type = WEIGHTS_F32;
    model_alloc(held, &c16);
    model_alloc(widened, &c32);
    size_t sizes[N_PARAM_TENSORS];
    param_sizes(&src->cfg, sizes);
    for (int f = 0; f < N_PARAM_TENSORS; f++) {
        if (!sizes[f]) continue;
        const float *from = model_param(src, f).p;
        float *to32 = (float *)model_param(widened, f).p;
        if (!param_is_matrix(f)) {
            memcpy((float *)model_param(held, f).p, from, sizes[f] * sizeof(float));
            memcpy(to32, from, sizes[f] * sizeof(float));
            continue;
        }
        uint16_t *rows = xmalloc(sizes[f] * sizeof(uint16_t));
        for (size_t i = 0; i < sizes[f]; i++) {
            rows[i] = type == WEIGHTS_BF16 ? bf16_of(from[i]) : f16_of(from[i]);
            to32[i] = half_widen(rows[i], type);
        }
        int layers = f == PARAM_WTE || f == PARAM_WPE || f == PARAM_UNEMBED ? 1 : src->cfg.n_layer;
        for (int l = 0; l < layers; l++) model_store_matrix(held, f, l, rows + (size_t)l * (sizes[f] / (size_t)layers));
        free(rows);
    }
    Model *both[2] = {held, widened};
    for (int k = 0; k < 2; k++) {
        model_pack(both[k]);
        both[k]->fingerprint = model_fingerprint(both[k]);
        snprintf(both[k]->dir, sizeof both[k]->dir, "%.200s (%s)", src->dir, k ? "widened" : "16-bit");
    }
}

/* Row-major float32 of field f, all layers, however m holds it. */
static void widen_field(const Model *m, int f, float *dst) {
    size_t sizes[N_PARAM_TENSORS];
    param_sizes(&m->cfg, sizes);
    if (!param_is_matrix(f)) {
        memcpy(dst, model_param(m, f).p, sizes[f] * sizeof(float));
        return;
    }
    int layers = f == PARAM_WTE || f == PARAM_WPE || f == PARAM_UNEMBED ? 1 : m->cfg.n_layer;
    for (int l = 0; l < layers; l++) {
        MatrixView v = model_view(m, f, l);
        size_t rows = sizes[f] / (size_t)layers / v.inputs;
        for (size_t o = 0; o < rows; o++)
            for (size_t c = 0; c < v.inputs; c++) *dst++ = view_value(v, (int)o, (int)c);
    }
}

static const int tokens[] = {5, 17, 3, 9, 60, 2, 17, 3, 33, 41};
enum { T = 10 };

static void expect_same(const char *what, const Model *m, int layer, const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) != 0) fail_msg("%s: %s of layer %d differs from the widened model's", m->dir, what, layer);
}

/* The forward pass and the backward pass from a fixed gradient at the top. */
static void compare_passes(const Model *held, const Model *widened) {
    const ModelConfig *c = &held->cfg;
    int L = c->n_layer, d = c->d_model;
    RunCache run[2], grads[2];
    const Model *m[2] = {held, widened};
    for (int k = 0; k < 2; k++) {
        run_cache_init(&run[k], c, T, 1);
        run_forward(m[k], tokens, T, NULL, &run[k], NULL, NULL);
        run_cache_init(&grads[k], c, T, 0);
        for (int i = 0; i < T * d; i++) grads[k].layer[L - 1].resid_post[i] = (float)((i * 7919) % 13) - 6.0f;
        run_backward(m[k], tokens, &run[k], &grads[k], NULL, L - 1, -1);
    }
    expect_same("logits", held, L - 1, run[0].logits, run[1].logits, (size_t)T * c->vocab);
    for (int l = 0; l < L; l++) {
        expect_same("resid_post", held, l, run[0].layer[l].resid_post, run[1].layer[l].resid_post, (size_t)T * d);
        expect_same("gradient at resid_pre", held, l, grads[0].layer[l].resid_pre, grads[1].layer[l].resid_pre, (size_t)T * d);
        expect_same("gradient at ln1", held, l, grads[0].layer[l].ln1, grads[1].layer[l].ln1, (size_t)T * d);
    }
    for (int k = 0; k < 2; k++) run_cache_free(&run[k]), run_cache_free(&grads[k]);
}

/* Exact effects of every node of a few sites at every position: the 16-bit model's fast path,
 * its naive path and the widened model's fast path, bit for bit. */
static double compare_effects(const Model *held, const Model *widened, const char *model_dir) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"model\": \"%s\", \"prompts\": [{\"clean\": [5,17,3,9,60,2,17,3,33,41], \"corrupt\": "
             "[5,17,3,9,60,2,17,8,33,41], \"answer\": 9, \"wrong\": 12}], \"nodes\": [\"z\", \"k\", \"mlp_post\", "
             "\"resid_pre\"], \"metric\": [\"logit_diff\", \"kl\"]}",
             model_dir);
    const Model *m[2] = {held, widened};
    Job job[2];
    float *out[3] = {NULL, NULL, NULL};
    double largest = 0.0;
    int positions[T];
    for (int j = 0; j < T; j++) positions[j] = j;
    for (int k = 0; k < 2; k++) {
        if (job_parse_text(&job[k], text, fixture("job.json")) || job_check(&job[k], m[k])) fail_msg("job: %s", ps_error());
    }
    int M = job[0].n_metrics;
    for (int si = 0; si < job[0].n_sites; si++)
        for (int l = 0; l < held->cfg.n_layer; l++) {
            Site s = job[0].sites[si];
            int n = site_nodes_per_layer(&held->cfg, s);
            if (n > 16) n = 16;
            for (int k = 0; k < 3; k++) {
                const Model *model = m[k == 2];
                JobRuns jr;
                PromptRuns r;
                job_runs_init(&jr, model, &job[k == 2]);
                prompt_runs_build(&r, model, &job[k == 2], &jr, 0);
                Engine *e = engine_new(model, T, 5);
                free(out[k]);
                out[k] = malloc(sizeof(float) * (size_t)n * T * M);
                if (k == 1) engine_effects_naive(e, &job[0], &r, s, l, 0, n, positions, T, out[k]);
                else engine_effects(e, &job[k == 2], &r, s, l, 0, n, positions, T, out[k]);
                engine_free(e);
                prompt_runs_free(&r);
                job_runs_free(&jr);
            }
            for (int i = 0; i < n * T * M; i++) {
                largest = fmax(largest, fabs(out[0][i]));
                if (memcmp(&out[0][i], &out[1][i], sizeof(float)) || memcmp(&out[0][i], &out[2][i], sizeof(float)))
                    fail_msg("%s L%d.%s cell %d: fast %.9g, naive %.9g, widened model %.9g", held->dir, l, site_name(s),
                             i, out[0][i], out[1][i], out[2][i]);
            }
        }
    for (int k = 0; k < 3; k++) free(out[k]);
    job_free(&job[0]), job_free(&job[1]);
    return largest;
}

static void test_fixture_architectures(void **state) {
    (void)state;
    const char *models[] = {"models/gpt2-tiny", "models/llama-tiny", "models/neox-tiny"};
    WeightType types[] = {WEIGHTS_BF16, WEIGHTS_F16};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        Model src;
        if (model_load(&src, fixture(models[i]))) fail_msg("%s", ps_error());
        assert_int_equal(src.cfg.weight_type, WEIGHTS_F32);
        for (int t = 0; t < 2; t++) {
            Model held, widened;
            make_pair(&src, types[t], &held, &widened);
            assert_true(held.fingerprint == widened.fingerprint);
            compare_passes(&held, &widened);
            double largest = compare_effects(&held, &widened, fixture(models[i]));
            assert_true(largest > 1e-3); /* real effects were compared */
            printf("  %s in %s: forward, backward, effects (fast, naive) = the widened float32 model's bit for bit; "
                   "largest |effect| %.3g\n", models[i], types[t] == WEIGHTS_BF16 ? "BF16" : "F16", largest);
            model_free(&held);
            model_free(&widened);
        }
        model_free(&src);
    }
}

/* The 16-bit checkpoints load held in 16 bits and equal their widened copy. */
static void test_checkpoints_load_in_16_bits(void **state) {
    (void)state;
    struct { const char *dir; WeightType type; } cases[] = {{"models/gpt2-tiny-bf16", WEIGHTS_BF16},
                                                            {"models/gpt2-tiny-f16", WEIGHTS_F16}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Model loaded, held, widened;
        if (model_load(&loaded, fixture(cases[i].dir))) fail_msg("%s", ps_error());
        assert_int_equal(loaded.cfg.weight_type, cases[i].type);
        ModelConfig c32 = loaded.cfg;
        c32.weight_type = WEIGHTS_F32;
        double ratio = (double)model_weight_bytes(&loaded.cfg) / (double)model_weight_bytes(&c32);
        /* one copy in 16 bits against the parameters and their packed copy in float32: about a quarter */
        printf("  %s: held as %s, %zu bytes of weights (%.2f of float32)\n", cases[i].dir,
               cases[i].type == WEIGHTS_BF16 ? "BF16" : "F16", model_weight_bytes(&loaded.cfg), ratio);
        assert_true(ratio < 0.35); /* plus the float32 vectors, the padding, and a tied embedding twice */
        /* rounding a widened 16-bit value gives its bits back, so this pair is loaded + widened */
        Model f32;
        model_alloc(&f32, &c32);
        size_t sizes[N_PARAM_TENSORS];
        param_sizes(&c32, sizes);
        for (int f = 0; f < N_PARAM_TENSORS; f++)
            if (sizes[f]) widen_field(&loaded, f, (float *)model_param(&f32, f).p);
        make_pair(&f32, cases[i].type, &held, &widened);
        assert_memory_equal(model_packed(&held, PACKED_WQ, 0).p, model_packed(&loaded, PACKED_WQ, 0).p,
                            (size_t)c32.n_layer * packed_floats(cfg_q_dim(&c32), c32.d_model) * 2);
        assert_true(model_fingerprint(&loaded) == widened.fingerprint);
        compare_passes(&loaded, &widened);
        model_free(&f32), model_free(&held), model_free(&widened), model_free(&loaded);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_architectures),
        cmocka_unit_test(test_checkpoints_load_in_16_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
