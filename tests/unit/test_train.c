/* The trainer: parameter gradients against central finite differences of the loss; a short run
 * lowers the loss; the same recipe gives the same weights; a saved model loads back to the same
 * logits, bit for bit.
 *
 * Finite differences: the loss is a double sum of float32 per-token terms, so with a step of
 * h = 1e-2 on weights of scale 0.3 the difference quotient carries ~1e-4 truncation and ~1e-5
 * rounding error; we accept 2e-3 (1 + max|grad|) per parameter. A wrong gradient term is O(grad). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/train.h"
#include "patchsweep/transformer.h"
#include "test_support.h"

static const ModelConfig tiny = {.model_type = "gpt2", .n_layer = 2, .d_model = 8, .n_head = 2, .n_kv_head = 2,
                                 .d_head = 4, .d_mlp = 12, .vocab = 11, .n_ctx = 10, .norm_eps = 1e-5f,
                                 .norm = NORM_LAYER, .act = ACT_GELU_TANH, .learned_pos = 1, .tied_unembed = 1,
                                 .linear_bias = 1};
/* GPT-NeoX's layout: the parallel residual, rotary on half of each head, exact GELU, untied. */
static const ModelConfig tiny_neox = {.model_type = "gpt_neox", .n_layer = 2, .d_model = 8, .n_head = 2,
                                      .n_kv_head = 2, .d_head = 4, .d_mlp = 12, .vocab = 11, .n_ctx = 10,
                                      .norm_eps = 1e-5f, .norm = NORM_LAYER, .act = ACT_GELU_ERF, .rotary_dims = 2,
                                      .rope_theta = 10000.0, .linear_bias = 1, .parallel_residual = 1};

static void examples(Example *ex) {
    int tokens[2][7] = {{0, 3, 7, 1, 3, 7, 9}, {0, 5, 2, 5, 8, 10, 4}};
    for (int i = 0; i < 2; i++) {
        ex[i].T = 7;
        for (int t = 0; t < 7; t++) ex[i].tokens[t] = tokens[i][t], ex[i].targets[t] = t % 2 ? tokens[i][(t + 1) % 7] : -1;
    }
}

static void check_parameter_gradients(const ModelConfig *cfg) {
    Model m;
    model_init_random(&m, cfg, 3, 0.3f);
    for (size_t i = 0; i < (size_t)cfg->n_layer * cfg->d_model; i++) m.w.ln1_w[i] = m.w.ln2_w[i] = 1.0f + 0.1f * (float)(i % 3);
    model_pack(&m);
    Example ex[2];
    examples(ex);
    float *grad = alloc_floats(m.n_weights);
    Params pg;
    params_point(&pg, grad, &m.cfg);
    batch_loss(&m, ex, 2, &pg);
    double scale = 0.0, worst = 0.0;
    size_t worst_i = 0;
    for (size_t i = 0; i < m.n_weights; i++) scale = fmax(scale, fabs(grad[i]));
    for (size_t i = 0; i < m.n_weights; i++) {
        float keep = m.weights[i];
        m.weights[i] = keep + 1e-2f;
        model_pack(&m); /* the forward pass reads the packed copies */
        double up = batch_loss(&m, ex, 2, NULL);
        m.weights[i] = keep - 1e-2f;
        model_pack(&m);
        double down = batch_loss(&m, ex, 2, NULL);
        m.weights[i] = keep;
        model_pack(&m);
        double fd = (up - down) / 2e-2;
        if (fabs(fd - grad[i]) > worst) worst = fabs(fd - grad[i]), worst_i = i;
    }
    printf("  %s: %zu parameters: max |fd - analytic| %.2e (max |grad| %.2e)\n", cfg->model_type, m.n_weights, worst, scale);
    if (worst > 2e-3 * (1 + scale)) fail_msg("parameter %zu: analytic %.6g, finite difference off by %.3g", worst_i, grad[worst_i], worst);
    free(grad);
    model_free(&m);
}

static void test_parameter_gradients(void **state) {
    (void)state;
    check_parameter_gradients(&tiny);
}

static void test_parameter_gradients_parallel_residual(void **state) {
    (void)state;
    check_parameter_gradients(&tiny_neox);
}

static Recipe small_recipe(int steps) {
    Recipe r;
    memset(&r, 0, sizeof r);
    r.task = task_find("induction");
    r.cfg = (ModelConfig){.model_type = "gpt2", .n_layer = 2, .d_model = 32, .n_head = 2, .n_kv_head = 2, .d_head = 16,
                          .d_mlp = 64, .vocab = r.task->vocab, .n_ctx = 48, .norm_eps = 1e-5f, .norm = NORM_LAYER,
                          .act = ACT_GELU_TANH, .learned_pos = 1, .tied_unembed = 1, .linear_bias = 1};
    r.steps = steps, r.batch = 8, r.lr = 3e-3, r.weight_decay = 0.01, r.warmup_frac = 0.1, r.seed = 7;
    return r;
}

/* A short run lowers the loss on held-out examples. */
static void test_loss_falls(void **state) {
    (void)state;
    Recipe r = small_recipe(300);
    Example held_out[16];
    Rng rng;
    rng_seed(&rng, 99, 0, 0);
    for (int i = 0; i < 16; i++) r.task->sample(&rng, &held_out[i]);
    Model before, after;
    Recipe none = small_recipe(1);
    none.lr = 0.0; /* one step at learning rate 0: the initial weights */
    train(&none, &before, NULL);
    train(&r, &after, NULL);
    double l0 = batch_loss(&before, held_out, 16, NULL), l1 = batch_loss(&after, held_out, 16, NULL);
    printf("  held-out loss: %.3f at initialisation, %.3f after %d steps\n", l0, l1, r.steps);
    assert_true(l0 > 3.9);      /* ~ln(63): uniform over the words */
    assert_true(l1 < l0 - 0.5);
    model_free(&before);
    model_free(&after);
}

/* The same recipe gives the same weights, bit for bit; another seed does not. */
static void test_training_is_deterministic(void **state) {
    (void)state;
    Recipe r = small_recipe(20), other = small_recipe(20);
    other.seed = 8;
    Model a, b, c;
    train(&r, &a, NULL);
    train(&r, &b, NULL);
    train(&other, &c, NULL);
    assert_memory_equal(a.weights, b.weights, a.n_weights * sizeof(float));
    assert_true(memcmp(a.weights, c.weights, a.n_weights * sizeof(float)) != 0);
    model_free(&a), model_free(&b), model_free(&c);
}

/* model_save writes a folder model_load reads back to the same weights, bit for bit, with the
 * task's words as token names. */
static void test_save_load_round_trip(void **state) {
    (void)state;
    Recipe r = small_recipe(5);
    Model m, back;
    train(&r, &m, NULL);
    char dir[] = "/tmp/ps_model_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[256];
    snprintf(sub, sizeof sub, "%s/model", dir);
    assert_int_equal(model_save(&m, r.task, sub), 0);
    if (model_load(&back, sub)) fail_msg("%s", ps_error());
    assert_int_equal(back.n_weights, m.n_weights);
    assert_memory_equal(back.weights, m.weights, m.n_weights * sizeof(float));
    assert_string_equal(tokenizer_token(back.tokenizer, 1), r.task->words[1]);
    assert_string_equal(tokenizer_token(back.tokenizer, 0), "<bos>");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    model_free(&m), model_free(&back);
}

/* The shipped model (models/induction-2l): loads, predicts the repeated half nearly perfectly,
 * and has previous-token heads in layer 0 and induction heads in layer 1 by its attention
 * patterns. CI does not retrain it. */
static void test_shipped_induction_model(void **state) {
    (void)state;
    Model m;
    if (model_load(&m, PS_FIXTURES "/../../models/induction-2l")) fail_msg("%s", ps_error());
    double acc = task_accuracy(&m, task_find("induction"), 100, 12345, 0);
    int L = m.cfg.n_layer, H = m.cfg.n_head;
    double ind[64], prev[64], best_prev0 = 0, best_ind1 = 0;
    head_scores(&m, model_bos(&m), 32, 10, 7, ind, prev);
    assert_int_equal(model_bos(&m), 0); /* <bos>, from the tokenizer's template */
    for (int h = 0; h < H; h++) best_prev0 = fmax(best_prev0, prev[h]), best_ind1 = fmax(best_ind1, ind[(L - 1) * H + h]);
    printf("  accuracy %.4f, best layer-0 previous-token score %.3f, best layer-1 induction score %.3f\n", acc, best_prev0,
           best_ind1);
    assert_true(acc >= 0.99);
    assert_true(best_prev0 >= 0.5);
    assert_true(best_ind1 >= 0.5);
    model_free(&m);
}

/* The shipped IOI model: names the indirect object on templates and name pairs it never saw. */
static void test_shipped_ioi_model(void **state) {
    (void)state;
    Model m;
    if (model_load(&m, PS_FIXTURES "/../../models/ioi-small")) fail_msg("%s", ps_error());
    double heldout = task_accuracy(&m, task_find("ioi-heldout"), 500, 4321, 1);
    printf("  held-out accuracy at the answer: %.4f\n", heldout);
    assert_true(heldout >= 0.95);
    model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parameter_gradients),
        cmocka_unit_test(test_parameter_gradients_parallel_residual),   cmocka_unit_test(test_loss_falls),
        cmocka_unit_test(test_training_is_deterministic), cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_shipped_induction_model), cmocka_unit_test(test_shipped_ioi_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
