/* bench_estimates: what the gradient estimates cost, in forward passes, on the GPT-2-small-shaped
 * benchmark model (12 layers, d_model 768, vocabulary 50257), a prompt of 24 tokens, every site
 * (resid_pre, attn_out, mlp_out, z, q, k, v, mlp_post) at every position, one core. Reported from
 * one run: the time of a forward pass, of the metric's backward pass, and of each estimator (AtP:
 * backward + products; AtP+QK fix: AtP + the recomputed attention rows; AtP*: AtP+QK fix +
 * GradDrop), each also as a multiple of the forward pass, and how many exact patches the fast
 * engine computes in the time AtP* takes.
 *
 * usage: bench_estimates [T=24] */
#include <stdio.h>
#include <stdlib.h>
#include "bench_common.h"
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 24;
    Model m;
    bench_model(&m);
    Job job;
    bench_job(&job, &m, 1, T, "[\"resid_pre\", \"attn_out\", \"mlp_out\", \"z\", \"q\", \"k\", \"v\", \"mlp_post\"]",
              "[\"atp\", \"atp_qk\", \"atp_star\"]");
    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    PromptRuns r;
    prompt_runs_build(&r, &m, &job, &jr, 0);

    RunCache run, grads;
    run_cache_init(&run, &m.cfg, T, 0);
    run_cache_init(&grads, &m.cfg, T, 0);
    MetricWork w = {0};
    int reps = 5;
    double t0 = now_seconds();
    for (int i = 0; i < reps; i++) run_forward(&m, job.prompts[0].clean, T, NULL, &run, NULL, NULL);
    double forward = (now_seconds() - t0) / reps;
    t0 = now_seconds();
    PromptRuns full; /* the backward pass reads every activation: the lean runs expanded, as an estimate unit does */
    prompt_runs_expand(&r, &m, &full);
    for (int i = 0; i < reps; i++) metric_backward(&m, &full, 0, 0, &grads, &w);
    prompt_runs_expanded_free(&full);
    double backward = (now_seconds() - t0) / reps;

    size_t cells = (size_t)plan.n_nodes * plan.n_positions * job.n_metrics;
    float *out[N_ESTIMATES] = {alloc_floats(cells), alloc_floats(cells), alloc_floats(cells)};
    double seconds[N_ESTIMATES];
    Attributor *a = attrib_new(&m, T);
    attrib_estimates(a, &job, &plan, &r, out, seconds);

    /* exact patches per second of the fast engine on this prompt, for the comparison */
    Engine *e = engine_new(&m, T, plan.batch_limit);
    float *effects = alloc_floats((size_t)m.cfg.n_head * T);
    t0 = now_seconds();
    for (int l = 0; l < m.cfg.n_layer; l += 3) engine_effects(e, &job, &r, SITE_Z, l, 0, m.cfg.n_head, plan.positions, T, effects);
    double patch_rate = (double)(m.cfg.n_layer / 3) * m.cfg.n_head * T / (now_seconds() - t0);

    printf("bench_estimates: GPT-2-small shape, T = %d, %d nodes x %d positions = %zu cells, 1 thread\n", T, plan.n_nodes,
           plan.n_positions, cells);
    printf("  forward pass      %8.3f s   1.0 F\n", forward);
    printf("  backward pass     %8.3f s   %.1f F\n", backward, backward / forward);
    printf("  atp               %8.3f s   %.1f F  (backward + products over every cell)\n", seconds[EST_ATP], seconds[EST_ATP] / forward);
    printf("  atp_qk            %8.3f s   %.1f F  (+ recomputed attention rows for q and k)\n", seconds[EST_ATP_QK], seconds[EST_ATP_QK] / forward);
    printf("  atp_star          %8.3f s   %.1f F  (+ GradDrop: %d partial backward passes)\n", seconds[EST_ATP_STAR], seconds[EST_ATP_STAR] / forward, m.cfg.n_layer);
    printf("  exact, fast path  %8.1f patches/s: AtP* costs as much as %.0f exact patches, of %zu cells\n", patch_rate,
           seconds[EST_ATP_STAR] * patch_rate, cells);
    for (int i = 0; i < N_ESTIMATES; i++) free(out[i]);
    free(effects);
    engine_free(e);
    attrib_free(a);
    metric_work_free(&w);
    run_cache_free(&run);
    run_cache_free(&grads);
    prompt_runs_free(&r);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
