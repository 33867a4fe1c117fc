/* bench_edges: the exact edge sweep (docs/edges.md) on the GPT-2-small-shaped model of
 * bench_engine (random weights, 12 layers, 12 heads, d_model 768, vocabulary 50257), one prompt of
 * 24 tokens, pair corruption, logit difference, one core; every one of the 32,491 edges at every
 * position is 779,784 patches, about an hour and a half here, so the sweep is timed on a sample:
 * every stride-th work unit of the plan (a unit: up to 64 edges into one downstream input, every
 * position; units are in layer order, so the sample spans the layers and kinds as the sweep does).
 * Reported, all from this one run:
 *   - the sample's patches per second (patches whose upstream output is the same in both runs on
 *     the column's rows, e.g. before the first corrupted token, are exactly 0 and cost nothing:
 *     they count, as in the sweep);
 *   - the planner's FLOPs of the sampled units per second (they include the patches skipped as
 *     exactly 0, so this is not the kernels' rate) and the whole sweep's time predicted from the
 *     planner's FLOPs of every unit at that rate;
 *   - FLOPs: the exhaustive sweep's (the planner's count: each patch recomputes v's layer and
 *     everything after from the patched row on) against one full forward pass per edge and
 *     position, the way a loop that patches one edge per forward computes it. Counted, not timed.
 * The last line ("edge_patches_per_second ...") is read by bench/bench_edges_torch.py.
 *
 * usage: bench_edges [stride=50] */
#include <stdio.h>
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/plan.h"
#include "bench_common.h"

enum { T = 24 };

int main(int argc, char **argv) {
    int stride = argc > 1 ? atoi(argv[1]) : 50;
    if (stride < 1) stride = 1;
    Model m;
    bench_model(&m);
    Job job;
    bench_job_keys(&job, &m, 1, T, "\"edges\": \"all\"");
    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    PlanStats st;
    plan_stats(&plan, &job, &m.cfg, &st);
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    PromptRuns r;
    prompt_runs_build(&r, &m, &job, &jr, 0);
    EdgeScratch *w = edge_scratch_new(&m, T, plan.batch_limit);
    float *out = alloc_floats((size_t)EDGE_BLOCK * T);

    long patches = 0;
    int units = 0, exact_units = 0;
    double flops = 0.0, t0 = now_seconds();
    for (int u = 0; u < plan.n_units; u++) {
        const Unit *unit = &plan.units[u];
        if (unit->kind != UNIT_EDGE_EXACT || exact_units++ % stride) continue;
        edge_effects(w, &r, plan.edges + unit->node0, unit->n_nodes, plan_prompt_positions(&plan, 0), T, out, 0);
        patches += (long)unit->n_nodes * T;
        flops += unit->cost;
        units++;
    }
    double seconds = now_seconds() - t0, rate = patches / seconds, gflops = flops / seconds / 1e9;
    double predicted = st.flops / (gflops * 1e9);

    printf("bench_edges: GPT-2-small shape (12 layers, d_model 768, vocab 50257), T = %d, one core\n", T);
    printf("  graph: %d edges x %d positions = %lld patches in %d work units\n", plan.n_edges, T, st.patches, exact_units);
    printf("  sample (every %d-th unit): %d units, %ld patches in %.1f s: %.1f patches/s, planned %.1f GFLOP/s\n",
           stride, units, patches, seconds, rate, gflops);
    printf("  the whole sweep predicted at that rate: %.0f s (%.1f patches/s)\n", predicted, st.patches / predicted);
    printf("  FLOPs of the exhaustive sweep: %.3g, one forward per edge and position: %.3g; ratio %.1fx fewer\n",
           st.flops, st.naive_flops, st.naive_flops / st.flops);
    printf("edge_patches_per_second %.3f whole_sweep %.3f flops_ratio %.3f\n", rate, st.patches / predicted,
           st.naive_flops / st.flops);
    free(out);
    edge_scratch_free(w);
    prompt_runs_free(&r);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
