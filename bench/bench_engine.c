/* bench_engine: the exact engine's fast path against the naive path (a full forward per patch),
 * on a GPT-2-small-shaped model with random weights generated in memory (12 layers, 12 heads,
 * d_model 768, d_mlp 3072, vocabulary 50257), patching z (every head) at every position of
 * prompts of 24 tokens, pair corruption, logit difference.
 *
 * Reported, all from this one run on one core:
 *   - patches per second, fast and naive, and their ratio. The fast path runs the whole sweep;
 *     the naive path, whose cost per patch does not depend on the patch, runs a sample.
 *   - single-thread cblas_sgemm throughput on a representative product, and the fast path's
 *     useful GFLOP/s (the FLOPs its suffixes need, from the planner's count) as a fraction of it.
 *
 * usage: bench_engine [prompts=1] [naive_sample=36] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/plan.h"
#include "bench_common.h"

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    int n_prompts = argc > 1 ? atoi(argv[1]) : 1, naive_sample = argc > 2 ? atoi(argv[2]) : 36, T = 24;
    Model m;
    bench_model(&m);
    const ModelConfig c = m.cfg;
    Job job;
    bench_job(&job, &m, n_prompts, T, "[\"z\"]", "[]");
    Plan plan;
    plan_build(&plan, &job, &c);
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    Engine *e = engine_new(&m, T, plan.batch_limit);
    float *out = alloc_floats((size_t)c.n_head * T);

    /* Fast path: the whole sweep. */
    double fast_seconds = 0.0, useful_flops = 0.0, runs_seconds = 0.0;
    long fast_patches = 0;
    for (int p = 0; p < n_prompts; p++) {
        PromptRuns r;
        double t0 = now_seconds();
        prompt_runs_build(&r, &m, &job, &jr, p);
        runs_seconds += now_seconds() - t0;
        t0 = now_seconds();
        for (int l = 0; l < c.n_layer; l++) engine_effects(e, &job, &r, SITE_Z, l, 0, c.n_head, plan.positions, T, out);
        fast_seconds += now_seconds() - t0;
        fast_patches += (long)c.n_layer * c.n_head * T;
        for (int l = 0; l < c.n_layer; l++)
            for (int t = 0; t < T; t++) useful_flops += c.n_head * patch_flops(&c, T, l, SITE_Z, t);
        prompt_runs_free(&r);
    }

    /* Naive path: a sample of patches spread over layers and positions of prompt 0. */
    PromptRuns r;
    prompt_runs_build(&r, &m, &job, &jr, 0);
    double t0 = now_seconds();
    for (int i = 0; i < naive_sample; i++) {
        int layer = i % c.n_layer, pos = (i * 7) % T;
        engine_effects_naive(e, &job, &r, SITE_Z, layer, i % c.n_head, 1, &pos, 1, out);
    }
    double naive_seconds = now_seconds() - t0;
    prompt_runs_free(&r);

    double fast_rate = fast_patches / fast_seconds, naive_rate = naive_sample / naive_seconds;
    double gemm = sgemm_gflops(12 * 12, 3 * 768, 768), gemm_big = sgemm_gflops(512, 3072, 768);
    double useful = useful_flops / fast_seconds / 1e9;
    printf("bench_engine: GPT-2-small shape (12 layers, d_model 768, vocab 50257), z x each position, T = %d, 1 thread\n", T);
    printf("  fast path : %7.1f patches/s  (%ld patches over %d prompts in %.2f s; base/source runs %.2f s)\n", fast_rate,
           fast_patches, n_prompts, fast_seconds, runs_seconds);
    printf("  naive path: %7.1f patches/s  (sample of %d patches in %.2f s)\n", naive_rate, naive_sample, naive_seconds);
    printf("  speedup   : %7.1fx\n", fast_rate / naive_rate);
    printf("  sgemm     : %6.1f GFLOP/s at 144x2304x768, %.1f GFLOP/s at 512x3072x768\n", gemm, gemm_big);
    printf("  fast path useful work: %.1f GFLOP/s = %.0f%% of sgemm peak (%.0f%% of the 144-row product)\n", useful,
           100.0 * useful / gemm_big, 100.0 * useful / gemm);
    free(out);
    engine_free(e);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
