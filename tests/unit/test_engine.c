/* The exact engine: fast path (suffix recompute, batched) against the naive path (full forward
 * per patch) for every site, corruption, direction, metric and position mode on GPT-2, Llama
 * and GPT-NeoX (and a joint patch of one node against both); effects that must vanish; denoising the whole input restoring the clean metric; and
 * the metric definitions on a model whose logits are known by hand.
 *
 * The kernels are batch invariant (src/model/ops.c, checked in test_ops.c): a row's bits do not
 * depend on which other rows share its GEMM. So the fast path must equal the naive path bit for
 * bit, self-patching must give exactly 0, and denoising everything must give exactly the clean
 * metric. A wrong row, stage or prefix would be off by O(1), a lost invariance by ~1e-7. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "test_support.h"

static const char *prompts_gpt2 =
    "[{\"clean\": [5,17,3,9,60,2,17,3,33,41], \"corrupt\": [5,17,3,9,60,2,17,8,33,41], \"answer\": 9, \"wrong\": 12},"
    " {\"clean\": [7,1,22,9,60,4,13,3,33,2], \"corrupt\": [7,1,50,9,60,4,13,3,33,2], \"answer\": 22, \"wrong\": 50}]";
static const char *prompts_gpt2_clean =
    "[{\"clean\": [5,17,3,9,60,2,17,3,33,41], \"answer\": 9, \"wrong\": 12},"
    " {\"clean\": [7,1,22,9,60,4,13,3,33,2], \"answer\": 22, \"wrong\": 50},"
    " {\"clean\": [8,8,3,19,6,21,13,30,3,2], \"answer\": 3, \"wrong\": 13}]";

/* Every site unless extra names the nodes. */
static void make_job(Job *job, const char *model, const char *prompts, const char *extra) {
    char text[8192];
    const char *every = "\"nodes\": [\"resid_pre\", \"attn_out\", \"mlp_out\", \"resid_mid\", \"resid_post\", \"z\", "
                        "\"q\", \"k\", \"v\", \"mlp_post\"], ";
    snprintf(text, sizeof text, "{\"model\": \"%s\", \"prompts\": %s, %s%s}", model, prompts,
             strstr(extra, "\"nodes\"") ? "" : every, extra);
    if (job_parse_text(job, text, fixture("job.json"))) fail_msg("job: %s", ps_error());
}

/* Fast vs naive over every site, layer, node and position of every prompt; returns the
 * largest |effect| seen (so callers can check the comparison was not vacuous). */
static double compare_paths(const Model *m, const Job *job, int positions_all, const char *label) {
    const ModelConfig *c = &m->cfg;
    JobRuns jr;
    job_runs_init(&jr, m, job);
    int T = job->prompts[0].T, n_pos = positions_all ? 1 : T;
    int positions[64];
    for (int j = 0; j < n_pos; j++) positions[j] = positions_all ? -1 : j;
    Engine *e = engine_new(m, T, 7); /* a small batch limit exercises the sub-batching */
    double largest = 0.0;
    for (int p = 0; p < job->n_prompts; p++) {
        PromptRuns r;
        prompt_runs_build(&r, m, job, &jr, p);
        for (int si = 0; si < job->n_sites; si++) {
            Site s = job->sites[si];
            int n = site_nodes_per_layer(c, s);
            if (n > 24) n = 24; /* a block of neurons is enough to compare */
            int M = job->n_metrics;
            float *fast = malloc(sizeof(float) * (size_t)n * n_pos * M), *naive = malloc(sizeof(float) * (size_t)n * n_pos * M);
            for (int l = 0; l < c->n_layer; l++) {
                engine_effects(e, job, &r, s, l, 0, n, positions, n_pos, fast);
                engine_effects_naive(e, job, &r, s, l, 0, n, positions, n_pos, naive);
                for (int i = 0; i < n * n_pos * M; i++) {
                    largest = fmax(largest, fabs(naive[i]));
                    if (memcmp(&fast[i], &naive[i], sizeof(float)) != 0)
                        fail_msg("%s {%s} prompt %d L%d.%s node %d pos %d metric %d: fast %.9g naive %.9g", m->dir, label, p,
                                 l, site_name(s), i / M / n_pos, positions[i / M % n_pos], i % M, fast[i], naive[i]);
                }
                /* A joint patch of one node is that node's patch (the bound command's joint
                 * forward pass against the sweep's), for the first two nodes. */
                int first, last;
                job_window(job, l, c->n_layer, &first, &last);
                for (int i = 0; i < 2 * n_pos && i < n * n_pos && job->sever == N_SITES; i++) {
                    if (positions[i % n_pos] >= r.T) continue;
                    Patch one = {s, first, last, site_has_index(s) ? i / n_pos : -1, positions[i % n_pos], NULL};
                    for (int k = 0; k < M; k++) {
                        float joint = (float)engine_joint_effect(e, &r, &one, 1, k);
                        if (memcmp(&joint, &naive[(size_t)i * M + k], sizeof(float)) != 0)
                            fail_msg("%s {%s} prompt %d L%d.%s node %d pos %d metric %d: joint patch of one node %.9g, its "
                                     "effect %.9g", m->dir, label, p, l, site_name(s), i / n_pos, positions[i % n_pos], k,
                                     joint, naive[(size_t)i * M + k]);
                    }
                }
            }
            free(fast);
            free(naive);
        }
        prompt_runs_free(&r);
    }
    engine_free(e);
    job_runs_free(&jr);
    return largest;
}

static void run_variants(const char *model_rel, const char *pair_prompts, const char *clean_prompts) {
    Model m;
    if (model_load(&m, fixture(model_rel))) fail_msg("%s", ps_error());
    char model[512];
    snprintf(model, sizeof model, "%s", fixture(model_rel));
    struct { const char *prompts, *extra; int all; } variants[] = {
        {pair_prompts, "\"direction\": \"denoise\"", 0},
        {pair_prompts, "\"direction\": \"noise\"", 0},
        {pair_prompts, "\"direction\": \"denoise\", \"metric\": \"logprob\"", 0},
        {pair_prompts, "\"direction\": \"noise\", \"metric\": \"prob\"", 0},
        {pair_prompts, "\"direction\": \"denoise\", \"metric\": \"kl\"", 0},
        {pair_prompts, "\"direction\": \"noise\", \"metric\": \"kl\"", 0},
        {pair_prompts, "\"window\": 2", 0},
        {pair_prompts, "\"positions\": \"all\"", 1},
        {pair_prompts, "\"positions\": \"all\", \"window\": 2, \"direction\": \"noise\"", 1},
        {pair_prompts, "\"metric\": [\"kl\", \"logit_diff\", \"prob\", \"logprob\"]", 0},
        {clean_prompts, "\"corruption\": {\"gaussian\": {\"positions\": [1, 2], \"samples\": 3, \"seed\": 5}}", 0},
        {clean_prompts, "\"corruption\": {\"gaussian\": {\"positions\": [0], \"samples\": 2}}, \"direction\": \"noise\", \"metric\": \"kl\"", 0},
        {clean_prompts, "\"corruption\": \"mean\"", 0},
        {clean_prompts, "\"corruption\": \"zero\", \"metric\": \"logprob\"", 0},
        {clean_prompts, "\"corruption\": {\"resample\": {\"seed\": 3}}", 0},
        {clean_prompts, "\"corruption\": \"resample\", \"positions\": \"all\"", 1},
        /* causal tracing: a centred window, severed paths */
        {pair_prompts, "\"window\": {\"size\": 2, \"align\": \"center\"}", 0},
        {pair_prompts, "\"nodes\": [\"resid_pre\", \"resid_mid\", \"resid_post\"], \"sever\": \"mlp\"", 0},
        {pair_prompts, "\"nodes\": [\"resid_pre\", \"resid_post\"], \"sever\": \"attn\", \"direction\": \"noise\", "
                       "\"window\": {\"size\": 2, \"align\": \"center\"}", 0},
        {pair_prompts, "\"nodes\": [\"resid_mid\"], \"sever\": \"mlp\", \"positions\": \"all\"", 1},
        {clean_prompts, "\"nodes\": [\"resid_pre\", \"resid_mid\"], \"sever\": \"attn\", "
                        "\"corruption\": {\"gaussian\": {\"positions\": [1, 2], \"samples\": 3, \"std\": \"subjects\"}}", 0},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        Job job;
        make_job(&job, model, variants[v].prompts, variants[v].extra);
        if (job_check(&job, &m)) fail_msg("%s", ps_error());
        double largest = compare_paths(&m, &job, variants[v].all, variants[v].extra);
        printf("  %s {%s}: fast == naive, largest |effect| %.3g\n", model_rel, variants[v].extra, largest);
        assert_true(largest > 1e-3); /* the comparison saw real effects */
        job_free(&job);
    }
    model_free(&m);
}

static void test_fast_equals_naive_gpt2(void **state) {
    (void)state;
    run_variants("models/gpt2-tiny", prompts_gpt2, prompts_gpt2_clean);
}

static void test_fast_equals_naive_llama(void **state) {
    (void)state;
    run_variants("models/llama-tiny", prompts_gpt2, prompts_gpt2_clean);
}

static void test_fast_equals_naive_neox(void **state) {
    (void)state;
    run_variants("models/neox-tiny", prompts_gpt2, prompts_gpt2_clean);
}

/* Effects of every node of one site and layer at every position, fast path. */
static float *site_effects(const Model *m, const Job *job, const PromptRuns *r, Site s, int l, int *n_out) {
    int n = site_nodes_per_layer(&m->cfg, s), T = r->T, positions[64];
    for (int j = 0; j < T; j++) positions[j] = j;
    Engine *e = engine_new(m, T, 64);
    float *out = malloc(sizeof(float) * (size_t)n * T);
    engine_effects(e, job, r, s, l, 0, n, positions, T, out);
    engine_free(e);
    *n_out = n * T;
    return out;
}

/* Patching in the base run's own activations changes nothing: with corrupt == clean every
 * source equals its base. Zero up to the rounding of regrouped GEMM rows. */
static void test_self_patch_is_zero(void **state) {
    (void)state;
    const char *models[] = {"models/gpt2-tiny", "models/llama-tiny", "models/neox-tiny"};
    for (int mi = 0; mi < 3; mi++) {
        Model m;
        if (model_load(&m, fixture(models[mi]))) fail_msg("%s", ps_error());
        for (int dir = 0; dir < 2; dir++) {
            Job job;
            make_job(&job, fixture(models[mi]),
                     "[{\"clean\": [5,17,3,9,60,2,17,3], \"corrupt\": [5,17,3,9,60,2,17,3], \"answer\": 9, \"wrong\": 12}]",
                     dir ? "\"direction\": \"noise\", \"metric\": \"kl\"" : "\"direction\": \"denoise\"");
            JobRuns jr;
            job_runs_init(&jr, &m, &job);
            PromptRuns r;
            prompt_runs_build(&r, &m, &job, &jr, 0);
            double worst = 0.0;
            for (int si = 0; si < job.n_sites; si++)
                for (int l = 0; l < m.cfg.n_layer; l++) {
                    int n;
                    float *eff = site_effects(&m, &job, &r, job.sites[si], l, &n);
                    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(eff[i]));
                    free(eff);
                }
            printf("  %s %s: largest |effect| of self-patching %.3g\n", models[mi], dir ? "noise/kl" : "denoise", worst);
            assert_true(worst == 0.0);
            prompt_runs_free(&r);
            job_runs_free(&jr);
            job_free(&job);
        }
        model_free(&m);
    }
}

/* Denoising resid_pre of layer 0 at every position at once replaces the whole input by the
 * clean one: the patched metric is the clean metric, so the effect is source - base. */
static void test_denoise_everything_restores_clean(void **state) {
    (void)state;
    Model m;
    if (model_load(&m, fixture("models/llama-tiny"))) fail_msg("%s", ps_error());
    const char *extras[] = {"\"positions\": \"all\"", "\"positions\": \"all\", \"metric\": \"kl\""};
    for (int v = 0; v < 2; v++) {
        Job job;
        make_job(&job, fixture("models/llama-tiny"), prompts_gpt2, extras[v]);
        JobRuns jr;
        job_runs_init(&jr, &m, &job);
        for (int p = 0; p < job.n_prompts; p++) {
            PromptRuns r;
            prompt_runs_build(&r, &m, &job, &jr, p);
            int all = -1;
            float eff;
            Engine *e = engine_new(&m, r.T, 4);
            engine_effects(e, &job, &r, SITE_RESID_PRE, 0, 0, 1, &all, 1, &eff);
            double want = r.source_metric[0] - r.base_metric[0];
            printf("  prompt %d %s: effect %.7g, clean - corrupt %.7g\n", p, metric_name(job.metrics[0]), eff, want);
            assert_true(fabs(want) > 1e-3);
            assert_true(eff == (float)want); /* the patched run is the clean run, bit for bit */
            engine_free(e);
            prompt_runs_free(&r);
        }
        job_runs_free(&jr);
        job_free(&job);
    }
    model_free(&m);
}

/* Several metrics in one job give each metric's values bit for bit as a job of that metric alone:
 * the patched runs are the same, and each metric is read off them by the same code. */
static void test_metrics_together_equal_alone(void **state) {
    (void)state;
    static const char *const alone[] = {"logit_diff", "logprob", "prob", "kl"};
    const char *models[] = {"models/gpt2-tiny", "models/llama-tiny"};
    for (int mi = 0; mi < 2; mi++) {
        Model m;
        if (model_load(&m, fixture(models[mi]))) fail_msg("%s", ps_error());
        Job together;
        make_job(&together, fixture(models[mi]), prompts_gpt2, "\"metric\": [\"prob\", \"kl\", \"logit_diff\", \"logprob\"]");
        int order[4] = {2, 3, 0, 1}; /* together's metric k is alone[order[k]] */
        JobRuns jr;
        job_runs_init(&jr, &m, &together);
        int T = together.prompts[0].T, positions[64], n = 4, compared = 0;
        for (int j = 0; j < T; j++) positions[j] = j;
        Engine *e = engine_new(&m, T, 5);
        float *all = malloc(sizeof(float) * (size_t)n * T * 4), *one = malloc(sizeof(float) * (size_t)n * T);
        for (int k = 0; k < 4; k++) {
            char extra[64];
            snprintf(extra, sizeof extra, "\"metric\": \"%s\"", alone[order[k]]);
            Job single;
            make_job(&single, fixture(models[mi]), prompts_gpt2, extra);
            for (int p = 0; p < together.n_prompts; p++) {
                PromptRuns rt, rs;
                prompt_runs_build(&rt, &m, &together, &jr, p);
                prompt_runs_build(&rs, &m, &single, &jr, p);
                assert_memory_equal(&rt.base_metric[k], &rs.base_metric[0], sizeof(double));
                assert_memory_equal(&rt.source_metric[k], &rs.source_metric[0], sizeof(double));
                for (int l = 0; l < m.cfg.n_layer; l++) {
                    engine_effects(e, &together, &rt, SITE_Z, l, 0, n, positions, T, all);
                    engine_effects(e, &single, &rs, SITE_Z, l, 0, n, positions, T, one);
                    for (int i = 0; i < n * T; i++, compared++)
                        if (memcmp(&all[(size_t)i * 4 + k], &one[i], sizeof(float)) != 0)
                            fail_msg("%s %s prompt %d L%d node %d pos %d: together %.9g alone %.9g", models[mi],
                                     alone[order[k]], p, l, i / T, i % T, all[(size_t)i * 4 + k], one[i]);
                }
                prompt_runs_free(&rt);
                prompt_runs_free(&rs);
            }
            job_free(&single);
        }
        printf("  %s: %d cells, each metric equal alone and together\n", models[mi], compared);
        free(all), free(one);
        engine_free(e);
        job_runs_free(&jr);
        job_free(&together);
        model_free(&m);
    }
}

/* A one-layer Llama-shaped model whose attention and MLP write nothing (W_O = W_down = 0), so
 * the final residual is the token embedding. Embeddings are 2 e_t (RMS 1), the final norm
 * gain is 1, so the logits at a position holding token t are u_v = 2 U[v][t] / sqrt(1 + eps).
 * Patching resid_pre of the last position swaps the token the logits read: every metric and
 * effect then follows from U by hand. */
static void test_metrics_by_hand(void **state) {
    (void)state;
    ModelConfig c = {.model_type = "llama", .n_layer = 1, .d_model = 4, .n_head = 1, .n_kv_head = 1, .d_head = 4,
                     .d_mlp = 4, .vocab = 4, .n_ctx = 8, .norm_eps = 1e-5f, .norm = NORM_RMS, .act = ACT_SILU,
                     .gated_mlp = 1, .rotary_dims = 4, .rope_theta = 10000.0, .tied_unembed = 0};
    Model m;
    model_alloc(&m, &c);
    const float U[4][4] = {{1.0f, 0.5f, -1.0f, 0.0f}, {0.0f, 2.0f, 0.25f, 1.0f}, {-0.5f, 0.0f, 1.5f, 0.5f}, {0.3f, -0.2f, 0.1f, 0.0f}};
    for (int i = 0; i < 4; i++) {
        m.w.wte[i * 4 + i] = 2.0f;
        m.w.ln1_w[i] = m.w.ln2_w[i] = m.w.lnf_w[i] = 1.0f;
        for (int j = 0; j < 4; j++) m.w.unembed[i * 4 + j] = U[i][j];
        for (int j = 0; j < 4; j++) m.w.wq[i * 4 + j] = m.w.wk[i * 4 + j] = m.w.wv[i * 4 + j] = 0.1f * (i + j);
    }
    model_pack(&m);
    /* clean ends in token 1, corrupt in token 2; answer 1, wrong 2 */
    const char *metrics[] = {"logit_diff", "logprob", "prob", "kl"};
    double scale = 2.0 / sqrt(1.0 + 1e-5);
    for (int k = 0; k < 4; k++) {
        char text[1024];
        snprintf(text, sizeof text,
                 "{\"model\": \"unused\", \"prompts\": [{\"clean\": [0, 3, 1], \"corrupt\": [0, 3, 2], \"answer\": 1, "
                 "\"wrong\": 2}], \"nodes\": [\"resid_pre\"], \"metric\": \"%s\"}", metrics[k]);
        Job job;
        if (job_parse_text(&job, text, "hand.json")) fail_msg("%s", ps_error());
        /* by hand: log-probabilities of the distribution when the last token is t */
        double lp[2][4];
        for (int side = 0; side < 2; side++) {
            int t = side ? 2 : 1;
            double z = 0.0;
            for (int v = 0; v < 4; v++) z += exp(scale * U[v][t]);
            for (int v = 0; v < 4; v++) lp[side][v] = scale * U[v][t] - log(z);
        }
        double metric_clean, metric_corrupt;
        if (k == 0) metric_clean = scale * (U[1][1] - U[2][1]), metric_corrupt = scale * (U[1][2] - U[2][2]);
        else if (k == 1) metric_clean = lp[0][1], metric_corrupt = lp[1][1];
        else if (k == 2) metric_clean = exp(lp[0][1]), metric_corrupt = exp(lp[1][1]);
        else {
            metric_clean = 0.0, metric_corrupt = 0.0;
            for (int v = 0; v < 4; v++) metric_corrupt += exp(lp[0][v]) * (lp[0][v] - lp[1][v]);
        }
        JobRuns jr;
        job_runs_init(&jr, &m, &job);
        PromptRuns r;
        prompt_runs_build(&r, &m, &job, &jr, 0);
        int last = 2;
        float eff;
        Engine *e = engine_new(&m, 3, 4);
        engine_effects(e, &job, &r, SITE_RESID_PRE, 0, 0, 1, &last, 1, &eff);
        printf("  %-10s base %.6f (hand %.6f) source %.6f (hand %.6f) effect %.6f\n", metrics[k], r.base_metric[0],
               metric_corrupt, r.source_metric[0], metric_clean, eff);
        assert_true(fabs(r.base_metric[0] - metric_corrupt) < 1e-5);
        assert_true(fabs(r.source_metric[0] - metric_clean) < 1e-5);
        assert_true(fabs(eff - (metric_clean - metric_corrupt)) < 1e-5);
        engine_free(e);
        prompt_runs_free(&r);
        job_runs_free(&jr);
        job_free(&job);
    }
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_equals_naive_gpt2),
        cmocka_unit_test(test_fast_equals_naive_llama),
        cmocka_unit_test(test_fast_equals_naive_neox),
        cmocka_unit_test(test_metrics_together_equal_alone),
        cmocka_unit_test(test_self_patch_is_zero),
        cmocka_unit_test(test_denoise_everything_restores_clean),
        cmocka_unit_test(test_metrics_by_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
