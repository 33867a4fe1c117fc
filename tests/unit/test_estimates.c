/* The estimators on cases whose answers are known:
 * - the O(T^2) closed form of the key fix equals recomputing every changed softmax row, also
 *   when rows are saturated (naive equals fast);
 * - saturated attention: plain AtP misses a large key effect, the QK fix recovers it within 10%;
 * - cancellation: a node's direct and indirect paths cancel in the gradient, so AtP is ~0 while
 *   the exact effect is large; AtP* (GradDrop) is large;
 * - a tiny patch: AtP agrees with the exact effect to first order (the error shrinks ~4x when
 *   the patch halves).
 * The hand-built models have RMSNorm, no rotary embedding, and a large constant residual
 * direction (C = 100) so the norms are nearly linear and each case's numbers can be read off
 * the weights; the comments give them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"
#include "test_support.h"

/* ---- key fix: closed form == brute force ----------------------------------------------------- */
static void test_key_fix_closed_form(void **state) {
    (void)state;
    ModelConfig c = {.n_layer = 1, .d_model = 8, .n_head = 4, .n_kv_head = 2, .d_head = 4, .d_mlp = 8};
    int T = 9, qd = 16, kvd = 8;
    Rng rng;
    rng_seed(&rng, 11, 0, 0);
    for (int trial = 0; trial < 4; trial++) {
        /* 9 saturates most rows; at 30 the other keys' weight underflows to 0 against the max in
         * double (score gaps beyond 745), which the closed form must survive (log space) */
        double amp = trial == 0 ? 1.0 : trial == 1 ? 4.0 : trial == 2 ? 9.0 : 30.0;
        LayerActs base = {0}, src = {0}, grad = {0};
        base.q_rot = alloc_floats((size_t)T * qd), base.k_rot = alloc_floats((size_t)T * kvd);
        base.pattern = alloc_floats((size_t)4 * T * T), grad.pattern = alloc_floats((size_t)4 * T * T);
        src.k_rot = alloc_floats((size_t)T * kvd);
        for (int i = 0; i < T * qd; i++) base.q_rot[i] = (float)(amp * rng_normal(&rng));
        for (int i = 0; i < T * kvd; i++) base.k_rot[i] = (float)(amp * rng_normal(&rng)), src.k_rot[i] = (float)(amp * rng_normal(&rng));
        for (int i = 0; i < 4 * T * T; i++) grad.pattern[i] = (float)rng_normal(&rng);
        /* the base pattern, as the forward pass computes it */
        double *scores = alloc_doubles((size_t)T);
        for (int h = 0; h < 4; h++)
            for (int t = 0; t < T; t++) {
                double m = -INFINITY, z = 0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0;
                    for (int e = 0; e < 4; e++) dot += (double)base.q_rot[t * qd + h * 4 + e] * base.k_rot[s * kvd + (h / 2) * 4 + e];
                    scores[s] = dot / 2.0, m = fmax(m, scores[s]);
                }
                for (int s = 0; s <= t; s++) z += exp(scores[s] - m);
                for (int s = 0; s <= t; s++) base.pattern[(h * T + t) * T + s] = (float)(exp(scores[s] - m) / z);
            }
        QkScratch room;
        qk_scratch_init(&room, T);
        LayerView v = {&c, T, &base, &src, &grad, &room};
        int positions[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
        for (int g = 0; g < 2; g++) {
            double fast[9] = {0}, brute[9] = {0};
            qk_fix_key(&v, g, positions, T, fast);
            /* brute force: each changed row recomputed in full, in double */
            for (int j = 0; j < T; j++)
                for (int h = 2 * g; h < 2 * g + 2; h++)
                    for (int t = j; t < T; t++) {
                        double m = -INFINITY, z = 0, sum = 0;
                        for (int s = 0; s <= t; s++) {
                            const float *k = s == j ? src.k_rot : base.k_rot;
                            double dot = 0;
                            for (int e = 0; e < 4; e++) dot += (double)base.q_rot[t * qd + h * 4 + e] * k[s * kvd + g * 4 + e];
                            scores[s] = dot / 2.0, m = fmax(m, scores[s]);
                        }
                        for (int s = 0; s <= t; s++) z += exp(scores[s] - m);
                        for (int s = 0; s <= t; s++)
                            sum += (exp(scores[s] - m) / z - base.pattern[(h * T + t) * T + s]) * grad.pattern[(h * T + t) * T + s];
                        brute[j] += sum;
                    }
            for (int j = 0; j < T; j++)
                if (fabs(fast[j] - brute[j]) > 1e-5 * (1 + fabs(brute[j])))
                    fail_msg("amplitude %g, kv head %d, key %d: closed form %.9g, brute force %.9g", amp, g, j, fast[j], brute[j]);
        }
        printf("  key fix, score amplitude %g: closed form == brute force at every key\n", amp * amp);
        free(base.q_rot), free(base.k_rot), free(base.pattern), free(grad.pattern), free(src.k_rot), free(scores);
        qk_scratch_free(&room);
    }
}

/* ---- hand-built models ---------------------------------------------------------------------------- */
enum { C_DIM = 0 };
static const float C = 100.0f;

static void hand_model(Model *m, int n_layer) {
    ModelConfig c = {.model_type = "llama", .n_layer = n_layer, .d_model = 4, .n_head = 1, .n_kv_head = 1,
                     .d_head = 2, .d_mlp = 2, .vocab = 6, .n_ctx = 16, .norm_eps = 1e-5f, .norm = NORM_RMS,
                     .act = ACT_SILU, .gated_mlp = 1, .rotary_dims = 0, .rope_theta = 10000.0, .tied_unembed = 0};
    model_alloc(m, &c);
    for (int i = 0; i < n_layer * 4; i++) m->w.ln1_w[i] = m->w.ln2_w[i] = 1.0f;
    for (int i = 0; i < 4; i++) m->w.lnf_w[i] = 1.0f;
}

static void set_token(Model *m, int token, float c, float x1, float x2, float x3) {
    float e[4] = {c, x1, x2, x3};
    memcpy(m->w.wte + token * 4, e, sizeof e);
}

typedef struct { double exact, atp, atp_qk, atp_star; } Estimates;

/* Exact effect and estimates of one node (site, layer, index) at one position. */
static Estimates estimate_node(const Model *m, const char *job_text, Site site, int layer, int index, int pos) {
    Job job;
    if (job_parse_text(&job, job_text, "hand.json")) fail_msg("%s", ps_error());
    Plan plan;
    plan_build(&plan, &job, &m->cfg);
    JobRuns jr;
    job_runs_init(&jr, m, &job);
    PromptRuns r;
    prompt_runs_build(&r, m, &job, &jr, 0);
    Engine *e = engine_new(m, r.T, 16);
    Estimates out;
    float exact;
    engine_effects(e, &job, &r, site, layer, index < 0 ? 0 : index, 1, &pos, 1, &exact);
    out.exact = exact;
    size_t cells = (size_t)plan.n_nodes * plan.n_positions;
    float *est[N_ESTIMATES] = {alloc_floats(cells), alloc_floats(cells), alloc_floats(cells)};
    double seconds[N_ESTIMATES];
    Attributor *a = attrib_new(m, r.T);
    attrib_estimates(a, &job, &plan, &r, est, seconds);
    int n = 0;
    while (!(plan.nodes[n].site == site && plan.nodes[n].layer == layer && plan.nodes[n].index == index)) n++;
    size_t cell = (size_t)n * plan.n_positions + pos;
    out.atp = est[0][cell], out.atp_qk = est[1][cell], out.atp_star = est[2][cell];
    for (int i = 0; i < N_ESTIMATES; i++) free(est[i]);
    attrib_free(a);
    engine_free(e);
    prompt_runs_free(&r);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    return out;
}

/* One layer, one head, MLP silent. Dims: c (constant), u (how much a token is looked at),
 * w (the value it carries), o (what the metric reads). After the first RMSNorm a token is about
 * (2, 2u/C, 2w/C, 0), so with q = (1, 0) c' and k = (707, 0) u' the score of a key is ~20 u:
 * the last position looks at the token with the largest u. Token 1 has u = 1, w = +1; token 2
 * u = 0.5, w = -1; token 3 (the corruption of token 1) u = 0, w = +1. v = (50, 0) w' and W_O puts
 * it on o, read by the metric: logit_diff ~ the value looked at. Clean [0, 1, 2, 4]: attention
 * on token 1 with probability 1 - e^-10 (saturated), metric ~ +1. Patching the key of position 1
 * from the corrupt run moves attention to position 2: metric ~ -1, an effect of ~ -2. The key's
 * gradient is ~e^-10 (saturated softmax), so AtP ~ 0; the QK fix recomputes the softmax. */
static void test_saturated_attention(void **state) {
    (void)state;
    Model m;
    hand_model(&m, 1);
    set_token(&m, 0, C, 0, 0, 0);
    set_token(&m, 1, C, 1, 1, 0);
    set_token(&m, 2, C, 0.5f, -1, 0);
    set_token(&m, 3, C, 0, 1, 0);
    set_token(&m, 4, C, 0, 0, 0);
    m.w.wq[0 * 4 + 0] = 1.0f;    /* q0 = c' */
    m.w.wk[0 * 4 + 1] = 707.0f;  /* k0 = 707 u' */
    m.w.wv[0 * 4 + 2] = 50.0f;   /* v0 = 50 w' */
    m.w.wo[3 * 2 + 0] = 1.0f;    /* o += z0 */
    m.w.unembed[0 * 4 + 3] = 50.0f; /* answer 0 reads o (times C/2 to undo the final norm) */
    model_pack(&m);
    const char *job = "{\"model\": \"x\", \"prompts\": [{\"clean\": [0, 1, 2, 4], \"corrupt\": [0, 3, 2, 4], "
                      "\"answer\": 0, \"wrong\": 5}], \"direction\": \"noise\", \"nodes\": [\"k\", \"q\", \"v\"], "
                      "\"estimates\": [\"atp\", \"atp_qk\", \"atp_star\"]}";
    Estimates e = estimate_node(&m, job, SITE_K, 0, 0, 1);
    printf("  saturated key: exact %.4f, atp %.2e, atp_qk %.4f, atp_star %.4f\n", e.exact, e.atp, e.atp_qk, e.atp_star);
    assert_true(e.exact < -1.5);                        /* a large effect */
    assert_true(fabs(e.atp) < 0.01 * fabs(e.exact));    /* that plain AtP misses */
    assert_true(fabs(e.atp_qk - e.exact) <= 0.1 * fabs(e.exact)); /* and the QK fix recovers */
    assert_true(fabs(e.atp_star - fabs(e.atp_qk)) < 1e-6);        /* one layer: AtP* = |atp_qk| */
    model_free(&m);
}

/* Two layers. Token 4 at the last position carries s (dim 1) = 0, its corruption token 5
 * s = 2. Layer 0 is silent. Layer 1's MLP reads s: gate = 100 s' (s' = 2s/C), up = c' = 2, and
 * writes -0.5 silu(gate) up onto s. The metric reads s (unembedding 50 on dim 1). At s = 0:
 * d(s - 0.5 * 2 silu(4 s))/ds = 1 - 4 silu'(0) = 0: the direct path (+1) and the MLP (-1)
 * cancel in the gradient of resid_pre at the last position, so AtP ~ 0. The patch s = 0 -> 2
 * moves gate from 0 to 4, where silu is far from linear: the final s changes by
 * 2 - 0.5 * 2 * (silu(4) - silu(0)) = 2 - 3.93 = -1.93, the exact effect. GradDrop with layer
 * 1's writes cut keeps the direct path alone: AtP* = |2| / (L - 1) = 2. */
static void test_cancellation(void **state) {
    (void)state;
    Model m;
    hand_model(&m, 2);
    for (int t = 0; t < 4; t++) set_token(&m, t, C, 0, 0, 0);
    set_token(&m, 4, C, 0, 0, 0);
    set_token(&m, 5, C, 2, 0, 0);
    size_t L1 = (size_t)1 * 2 * 4;             /* layer 1's [d_mlp, d] gate/up blocks */
    m.w.w_gate[L1 + 0 * 4 + 1] = 100.0f;       /* gate = 100 s' */
    m.w.w_in[L1 + 0 * 4 + 0] = 1.0f;           /* up = c' */
    m.w.w_out[(size_t)1 * 4 * 2 + 1 * 2 + 0] = -0.5f; /* s -= 0.5 mlp_post */
    m.w.unembed[0 * 4 + 1] = 50.0f;            /* answer 0 reads s */
    model_pack(&m);
    const char *job = "{\"model\": \"x\", \"prompts\": [{\"clean\": [0, 1, 4], \"corrupt\": [0, 1, 5], "
                      "\"answer\": 0, \"wrong\": 2}], \"direction\": \"noise\", \"nodes\": [\"resid_pre\"], "
                      "\"estimates\": [\"atp\", \"atp_qk\", \"atp_star\"]}";
    Estimates e = estimate_node(&m, job, SITE_RESID_PRE, 0, -1, 2);
    printf("  cancelling node: exact %.4f, atp %.2e, atp_qk %.2e, atp_star %.4f\n", e.exact, e.atp, e.atp_qk, e.atp_star);
    assert_true(fabs(e.exact) > 1.0);                   /* large */
    assert_true(fabs(e.atp) < 0.05 * fabs(e.exact));    /* missed by AtP */
    assert_true(e.atp_star > 0.5 * fabs(e.exact));      /* and seen by AtP* */
    model_free(&m);
}

/* A tiny patch: source = base + eps * noise (gaussian noise on position 1, noise direction).
 * AtP is the first-order term, so |atp - exact| = O(eps^2) while |exact| = O(eps). */
static void test_tiny_patch_first_order(void **state) {
    (void)state;
    Model m;
    if (model_load(&m, fixture("models/llama-tiny"))) fail_msg("%s", ps_error());
    double err[2], size[2];
    for (int k = 0; k < 2; k++) {
        char text[512];
        snprintf(text, sizeof text,
                 "{\"model\": \"x\", \"prompts\": [{\"clean\": [1, 7, 33, 2, 9, 40, 7], \"answer\": 33, \"wrong\": 2}],"
                 " \"corruption\": {\"gaussian\": {\"positions\": [1], \"scale\": %g, \"samples\": 1}},"
                 " \"direction\": \"noise\", \"nodes\": [\"resid_pre\"], \"estimates\": [\"atp\"]}", k ? 0.02 : 0.04);
        Estimates e = estimate_node(&m, text, SITE_RESID_PRE, 1, -1, 1);
        err[k] = fabs(e.atp - e.exact), size[k] = fabs(e.exact);
        printf("  noise scale %.2f: exact %.6f, atp %.6f, |error| %.2e\n", k ? 0.02 : 0.04, e.exact, e.atp, err[k]);
    }
    assert_true(size[1] > 1e-4);
    assert_true(err[1] < 0.05 * size[1]);  /* agreement to first order */
    assert_true(err[0] / err[1] > 3.0);     /* second-order error: halving the patch quarters it */
    model_free(&m);
}

/* The bound's normal quantile against Python's statistics.NormalDist (an independent
 * implementation), from the centre to far in the tail where 1 - Phi(x) would round to 0. */
static void test_normal_upper_quantile(void **state) {
    (void)state;
    struct { double tail, x; } known[] = {
        {0.5, 0.0}, {0.9, -1.2815515655446008}, {0.025, 1.9599639845400536}, {2.5e-5, 4.055626981121907},
        {1e-10, 6.361340902404056},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        double x = normal_upper_quantile(known[i].tail);
        if (fabs(x - known[i].x) > 1e-9) fail_msg("tail %g: %.15g, expected %.15g", known[i].tail, x, known[i].x);
    }
}

/* Subsets from a table ([K, U], row k = subset k), as bound_cells asks for them. */
static void table_draw(void *ctx, int k, int U, uint8_t *in) {
    memcpy(in, (const uint8_t *)ctx + (size_t)k * U, (size_t)U);
}

/* Subset statistics on a case solved by hand: cell 0 in subsets 0 and 1 (effects 1, 3), out of
 * 2 and 3 (effects 0, 2): estimate 2 - 1 = 1, se = sqrt(2/2 + 2/2) = sqrt 2. Cell 1 is in one
 * subset only: no bound. */
static void test_bound_cells_by_hand(void **state) {
    (void)state;
    double effect[4] = {1, 3, 0, 2};
    uint8_t in[4 * 2] = {1, 0, 1, 1, 0, 0, 0, 0};
    CellBound b[2];
    bound_cells(effect, 4, 2, 2.0, table_draw, in, b);
    assert_true(b[0].n_in == 2 && fabs(b[0].estimate - 1.0) < 1e-15 && fabs(b[0].se - sqrt(2.0)) < 1e-15);
    assert_true(fabs(b[0].ucb - (1.0 + 2.0 * sqrt(2.0))) < 1e-15);
    assert_true(b[1].n_in == 1 && isinf(b[1].ucb));
}

/* The verified set for a budget, by hand: keys 9, 7, 5, 5, 5, 2 (ranked). A budget of 2 or 5 ends
 * between distinct keys; a budget of 3 or 4 falls inside the block of three 5s, which is then left
 * whole to the bound (2 verified) or verified whole (5), never split by position. */
static void test_bound_verified_count(void **state) {
    (void)state;
    double key[6] = {5, 9, 2, 5, 7, 5};
    int order[6] = {1, 4, 0, 3, 5, 2}, block;
    struct { int k, verify, want, block; } cases[] = {
        {0, 0, 0, 0}, {2, 0, 2, 0}, {3, 0, 2, 3}, {4, 0, 2, 3}, {3, 1, 5, 3}, {4, 1, 5, 3},
        {5, 0, 5, 0}, {5, 1, 5, 0}, {6, 0, 6, 0}, {9, 1, 6, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = bound_verified_count(key, order, 6, cases[i].k, cases[i].verify, &block);
        if (got != cases[i].want || block != cases[i].block)
            fail_msg("budget %d, verify_ties %d: %d verified (block %d), expected %d (block %d)", cases[i].k,
                     cases[i].verify, got, block, cases[i].want, cases[i].block);
    }
    double zeros[4] = {0, 0, 0, 0}; /* one block of all: nothing, or everything */
    int identity[4] = {0, 1, 2, 3};
    assert_int_equal(bound_verified_count(zeros, identity, 4, 2, 0, &block), 0);
    assert_int_equal(block, 4);
    assert_int_equal(bound_verified_count(zeros, identity, 4, 2, 1, &block), 4);
}

/* Recall of the true top k within the first k, by hand. Truth 10, 8, 6, 6, 1, 0: the top 3 is
 * cells 0 and 1 and either of 2 and 3. A ranking in truth's order finds 3; one whose 2nd to 4th
 * places tie (cells 2, 3, 4 at 3) finds only cell 0, above the tie; one that ranks cells 1, 2, 3
 * first finds cell 1 and one of the tied pair (a second adds nothing): 2; every cell, all 6. */
static void test_bound_top_k_found(void **state) {
    (void)state;
    double truth[6] = {10, 8, 6, 6, 1, 0};
    double in_order[6] = {5, 4, 3, 2, 1, 0}, tied[6] = {5, 0, 3, 3, 3, 1}, misses[6] = {0, 9, 9, 8, 0, 0};
    int order[6];
    assert_int_equal(bound_top_k_found(truth, in_order, 6, 3, order), 3);
    assert_int_equal(bound_top_k_found(truth, tied, 6, 3, order), 1);
    assert_int_equal(bound_top_k_found(truth, misses, 6, 3, order), 2);
    assert_int_equal(bound_top_k_found(truth, misses, 6, 6, order), 6);
    assert_int_equal(bound_top_k_found(truth, tied, 6, 1, order), 1);
}

/* Under the bound's assumption (effects add up), it covers: 60 cells with known effects (a few
 * large, most small, both signs), I(S) = the sum over the subset, 400 subsets at inclusion 0.1.
 * At confidence 0.95 every |c| must lie under its ucb (a fixed seed makes this one draw; the
 * chance it fails is at most 5%); with no margin (z = 0) some must not, or the check is void. */
static void test_bound_covers_additive_effects(void **state) {
    (void)state;
    enum { U = 60, K = 400 };
    double c[U], effect[K];
    static uint8_t in[K * U];
    Rng rng;
    rng_seed(&rng, 11, 0, 0);
    for (int n = 0; n < U; n++) c[n] = (n % 7 == 0 ? 5.0 : 0.3) * rng_normal(&rng);
    for (int k = 0; k < K; k++) {
        effect[k] = 0.0;
        for (int n = 0; n < U; n++) {
            in[k * U + n] = rng_uniform(&rng) < 0.1;
            if (in[k * U + n]) effect[k] += c[n];
        }
    }
    CellBound b[U];
    bound_cells(effect, K, U, normal_upper_quantile(0.05 / (2 * U)), table_draw, in, b);
    double theta = 0.0, largest = 0.0;
    for (int n = 0; n < U; n++) {
        if (fabs(c[n]) > b[n].ucb) fail_msg("cell %d: |c| = %.4g above its ucb %.4g", n, fabs(c[n]), b[n].ucb);
        theta = fmax(theta, b[n].ucb), largest = fmax(largest, fabs(c[n]));
    }
    bound_cells(effect, K, U, 0.0, table_draw, in, b);
    int uncovered = 0;
    for (int n = 0; n < U; n++) uncovered += fabs(c[n]) > b[n].ucb;
    printf("  additive effects: theta %.3g over a largest |c| of %.3g; %d of %d cells uncovered without the margin\n",
           theta, largest, uncovered, U);
    assert_true(uncovered > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_fix_closed_form),
        cmocka_unit_test(test_saturated_attention),
        cmocka_unit_test(test_cancellation),
        cmocka_unit_test(test_tiny_patch_first_order),
        cmocka_unit_test(test_normal_upper_quantile),
        cmocka_unit_test(test_bound_cells_by_hand),
        cmocka_unit_test(test_bound_verified_count),
        cmocka_unit_test(test_bound_top_k_found),
        cmocka_unit_test(test_bound_covers_additive_effects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
