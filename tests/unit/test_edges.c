/* The edge graph (docs/edges.md, "The graph"): counts against the closed form and the published
 * counts of full-size shapes (from a configuration alone), names and order, and the job's filter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/plan.h"
#include "test_support.h"

static ModelConfig shape(int L, int H, int G, int parallel) {
    ModelConfig c = {.model_type = "test", .n_layer = L, .n_head = H, .n_kv_head = G, .parallel_residual = parallel};
    return c;
}

/* Σ_l [ (H + 2G)(1 + l(H+1)) + 1 + l(H+1) + H ] + 1 + L(H+1), without the + H under parallel blocks. */
static long closed_form(int L, int H, int G, int parallel) {
    long n = 1 + (long)L * (H + 1);
    for (long l = 0; l < L; l++) n += (H + 2L * G) * (1 + l * (H + 1)) + 1 + l * (H + 1) + (parallel ? 0 : H);
    return n;
}

static void test_published_counts(void **state) {
    (void)state;
    EdgeFilter all = {0};
    ModelConfig gpt2 = shape(12, 12, 12, 0), llama3 = shape(32, 32, 8, 0), pythia = shape(12, 12, 12, 1);
    assert_int_equal(edge_graph(&gpt2, &all, NULL), 32491);
    assert_int_equal(edge_graph(&llama3, &all, NULL), 805681);
    assert_int_equal(edge_graph(&pythia, &all, NULL), 32347);
    for (int L = 1; L <= 5; L++)
        for (int G = 1; G <= 4; G++)
            for (int parallel = 0; parallel < 2; parallel++) {
                ModelConfig c = shape(L, 2 * G, G, parallel);
                assert_int_equal(edge_graph(&c, &all, NULL), closed_form(L, 2 * G, G, parallel));
            }
}

/* Contract order: by downstream input (per layer q of every head, k then v of every key/value
 * head, mlp_in; then logits), within one by upstream node (embed, then per layer heads, MLP). */
static void test_names_and_order(void **state) {
    (void)state;
    ModelConfig c = shape(2, 4, 2, 0);
    EdgeFilter all = {0};
    long n = edge_graph(&c, &all, NULL);
    Edge *e = malloc(sizeof(Edge) * (size_t)n);
    edge_graph(&c, &all, e);
    char name[64];
    const struct { long at; const char *name; } want[] = {
        {0, "embed->L0.H0.q"}, {1, "embed->L0.H1.q"}, {4, "embed->L0.KV0.k"}, {6, "embed->L0.KV0.v"},
        {8, "embed->L0.mlp_in"}, {9, "L0.H0->L0.mlp_in"}, {12, "L0.H3->L0.mlp_in"}, {13, "embed->L1.H0.q"},
        {14, "L0.H0->L1.H0.q"}, {18, "L0.mlp->L1.H0.q"}, {n - 1, "L1.mlp->logits"}, {n - 11, "embed->logits"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        edge_name(&e[want[i].at], name, sizeof name);
        assert_string_equal(name, want[i].name);
    }
    /* Parallel residual: no edge within a layer. */
    ModelConfig neox = shape(2, 4, 4, 1);
    long m = edge_graph(&neox, &all, NULL);
    Edge *f = malloc(sizeof(Edge) * (size_t)m);
    edge_graph(&neox, &all, f);
    for (long i = 0; i < m; i++)
        if (f[i].down.kind != DOWN_LOGITS && f[i].up.kind != UP_EMBED) assert_true(f[i].up.layer < f[i].down.layer);
    free(e), free(f);
}

static long count_job(const char *edges_json) {
    char text[1024];
    snprintf(text, sizeof text, "{\"model\": \"m\", \"prompts\": [{\"clean\": [1, 2], \"corrupt\": [2, 1], \"answer\": 1}], \"metric\": \"logprob\", "
                                "\"edges\": %s}", edges_json);
    Job job;
    int rc = job_parse_text(&job, text, "edges.json");
    long n = -1;
    if (rc == PS_OK) {
        ModelConfig c = shape(2, 4, 4, 0);
        n = edge_graph(&c, &job.edges, NULL);
    }
    job_free(&job);
    return n;
}

/* The filter keeps edges whose kinds and layers are all selected; embed passes any from_layers,
 * logits any to_layers; the fixture edges-gpt2-filter's selection has 45 edges (its golden file). */
static void test_filter(void **state) {
    (void)state;
    assert_int_equal(count_job("\"all\""), closed_form(2, 4, 4, 0));
    assert_int_equal(count_job("{}"), closed_form(2, 4, 4, 0));
    assert_int_equal(count_job("{\"from\": [\"head\", \"mlp\"], \"to\": [\"q\", \"k\", \"logits\"], \"from_layers\": [0, 0], "
                               "\"to_layers\": [1, 1]}"), 45);
    /* only embed: one edge into every input (4 q + 4 k + 4 v + mlp_in per layer, and logits) */
    assert_int_equal(count_job("{\"from\": [\"embed\"]}"), 2 * 13 + 1);
    /* embed ignores from_layers; logits ignores to_layers */
    assert_int_equal(count_job("{\"from\": [\"embed\"], \"from_layers\": [1, 1], \"to\": [\"logits\"], \"to_layers\": [0, 0]}"), 1);
    /* into layer-1 MLP from layer 1 heads only */
    assert_int_equal(count_job("{\"from\": [\"head\"], \"from_layers\": [1, 1], \"to\": [\"mlp_in\"]}"), 4);
    assert_int_equal(count_job("{\"from\": [\"neuron\"]}"), -1);
    assert_int_equal(count_job("{\"from_layers\": [1, 0]}"), -1);
    assert_int_equal(count_job("{\"to\": []}"), -1);
    assert_int_equal(count_job("\"some\""), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_published_counts),
        cmocka_unit_test(test_names_and_order),
        cmocka_unit_test(test_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
