/* Joint edge patches (the bound command's subsets on edges, docs/edges.md "Joint patches"):
 * - a set of one cell is the exact edge patch bit for bit (edge_effects, naive and fast), for every
 *   edge of GPT-2, Llama (GQA) and NeoX at one position and at every position at once, with pair
 *   (both directions), gaussian (two noise draws) and zero corruptions;
 * - every edge patched at every position is the source run itself (denoising a pair: every input
 *   then reads the clean stream), so the effect is metric(clean) - metric(corrupt), up to the
 *   float32 rounding of a differently ordered sum (tolerance below).
 * The joint effects of larger sets are checked against the independent reference by
 * tests/cli/test_bound.py (fixtures/golden/bound-edges.json). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "test_support.h"

static const char *pair_prompt =
    "[{\"clean\": [5,17,3,9,60,2,17,3], \"corrupt\": [5,17,3,9,60,2,17,8], \"answer\": 9, \"wrong\": 12}]";
static const char *clean_prompt = "[{\"clean\": [7,1,22,9,60,4,13,3], \"answer\": 22, \"wrong\": 50}]";

static void make_job(Job *job, const Model *m, const char *model, const char *prompts, const char *extra) {
    char text[4096];
    snprintf(text, sizeof text, "{\"model\": \"%s\", \"prompts\": %s, \"edges\": \"all\", %s}", model, prompts, extra);
    if (job_parse_text(job, text, fixture("job.json"))) fail_msg("job: %s", ps_error());
    if (job_check(job, m)) fail_msg("%s", ps_error());
}

/* Every edge of the plan at positions 3 and all (-1), one cell at a time, against edge_effects. */
static double single_cells(const Model *m, const Job *job, const char *label) {
    Plan plan;
    plan_build(&plan, job, &m->cfg);
    JobRuns jr;
    job_runs_init(&jr, m, job);
    PromptRuns r;
    prompt_runs_build(&r, m, job, &jr, 0);
    EdgeScratch *scratch = edge_scratch_new(m, r.T, 5);
    EdgeJoint *joint = edge_joint_new(m, r.T);
    int positions[2] = {3, -1}, M = r.n_metrics;
    double largest = 0.0;
    for (int e = 0; e < plan.n_edges; e++) {
        float want[2 * N_METRICS], fast[2 * N_METRICS];
        edge_effects(scratch, &r, &plan.edges[e], 1, positions, 2, want, 1);
        edge_effects(scratch, &r, &plan.edges[e], 1, positions, 2, fast, 0);
        for (int j = 0; j < 2; j++) {
            EdgeCell cell = {e, positions[j]};
            float got = (float)edge_joint_effect(joint, &r, plan.edges, &cell, 1, 0);
            largest = fmax(largest, fabs(want[j * M]));
            if (memcmp(&got, &want[j * M], sizeof got) != 0 || memcmp(&fast[j * M], &want[j * M], sizeof got) != 0) {
                char name[64];
                edge_name(&plan.edges[e], name, sizeof name);
                fail_msg("%s {%s} %s at %d: joint %.9g, exact %.9g (fast %.9g)", m->dir, label, name, positions[j], got,
                         want[j * M], fast[j * M]);
            }
        }
    }
    edge_joint_free(joint);
    edge_scratch_free(scratch);
    prompt_runs_free(&r);
    job_runs_free(&jr);
    plan_free(&plan);
    return largest;
}

static void test_one_cell_is_the_exact_patch(void **state) {
    (void)state;
    const char *models[] = {"models/gpt2-tiny", "models/llama-tiny", "models/neox-tiny"};
    struct { const char *prompts, *extra; } variants[] = {
        {pair_prompt, "\"direction\": \"denoise\""},
        {pair_prompt, "\"direction\": \"noise\", \"metric\": \"logprob\""},
        {clean_prompt, "\"corruption\": {\"gaussian\": {\"positions\": [1, 2], \"samples\": 2, \"seed\": 5}}, \"metric\": \"logit_diff\""},
        {clean_prompt, "\"corruption\": \"zero\", \"metric\": \"logprob\""},
    };
    for (int mi = 0; mi < 3; mi++) {
        Model m;
        if (model_load(&m, fixture(models[mi]))) fail_msg("%s", ps_error());
        for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
            Job job;
            make_job(&job, &m, fixture(models[mi]), variants[v].prompts, variants[v].extra);
            double largest = single_cells(&m, &job, variants[v].extra);
            printf("  %s {%s}: one cell == exact edge patch, largest |effect| %.3g\n", models[mi], variants[v].extra, largest);
            assert_true(largest > 1e-3); /* the comparison saw real effects */
            job_free(&job);
        }
        model_free(&m);
    }
}

/* Tolerance: the patched stream is rebuilt as x_v + sum(u^S - u) in double and rounded to float,
 * against the source run's float32 residual sums: ~1e-7 relative per row, a few 1e-6 on a
 * logit difference of order 1 through two layers. A missed edge or row is off by O(0.1). */
#define EVERYTHING_TOL 1e-4

static void test_every_edge_is_the_source_run(void **state) {
    (void)state;
    const char *models[] = {"models/gpt2-tiny", "models/llama-tiny", "models/neox-tiny"};
    for (int mi = 0; mi < 3; mi++) {
        Model m;
        if (model_load(&m, fixture(models[mi]))) fail_msg("%s", ps_error());
        Job job;
        make_job(&job, &m, fixture(models[mi]), pair_prompt, "\"direction\": \"denoise\"");
        Plan plan;
        plan_build(&plan, &job, &m.cfg);
        JobRuns jr;
        job_runs_init(&jr, &m, &job);
        PromptRuns r;
        prompt_runs_build(&r, &m, &job, &jr, 0);
        EdgeJoint *joint = edge_joint_new(&m, r.T);
        EdgeCell *cells = malloc(sizeof(EdgeCell) * (size_t)plan.n_edges);
        for (int e = 0; e < plan.n_edges; e++) cells[e] = (EdgeCell){plan.n_edges - 1 - e, -1}; /* any order: it sorts */
        double got = edge_joint_effect(joint, &r, plan.edges, cells, plan.n_edges, 0);
        double want = r.source_metric[0] - r.base_metric[0];
        printf("  %s: every edge patched %.9g, source - base %.9g\n", models[mi], got, want);
        assert_true(fabs(want) > 0.1);
        assert_true(fabs(got - want) <= EVERYTHING_TOL);
        free(cells);
        edge_joint_free(joint);
        prompt_runs_free(&r);
        job_runs_free(&jr);
        plan_free(&plan);
        job_free(&job);
        model_free(&m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_cell_is_the_exact_patch),
        cmocka_unit_test(test_every_edge_is_the_source_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
