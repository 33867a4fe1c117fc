/* bench_engine: the exact engine's fast path against the naive path (a full forward per patch)
 * and against the machine's limit, on a GPT-2-small-shaped model with random weights generated
 * in memory (12 layers, 12 heads, d_model 768, d_mlp 3072, vocabulary 50257), one prompt of 24
 * tokens, pair corruption, logit difference, one core.
 *
 * Two sweeps: z (every head of every layer at every position) and mlp_post (the first 64 neurons
 * of every layer, one unit each, at every position). Reported, all from this one run:
 *   - patches per second of each sweep, and of the naive path on a sample of z patches;
 *   - the kernels' peak: the best GFLOP/s of the forward product at 512 rows on GPT-2's three
 *     weight shapes, with the kernels the engine uses;
 *   - each sweep's useful work (the FLOPs its suffixes need, from the planner's count) in GFLOP/s
 *     and as a fraction of that peak. Patches at positions before the first corrupted token write
 *     the base run's own values, so the engine skips them (their effect is exactly 0); they
 *     count as patches in the rate but contribute no FLOPs to the useful work;
 *   - the z sweep on the prompt's lean runs against the same sweep on full runs (every activation
 *     cached: the code path before memory-lean runs), and on 2 threads against 1, each pair
 *     alternated `repeats` times in this run, best of each.
 * The last line ("z_patches_per_second ...") is read by bench/bench_torch.py.
 *
 * usage: bench_engine [naive_sample=36] [neurons=64] [repeats=2]   (neurons 0: the z sweep alone) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"
#include "patchsweep/plan.h"
#include "bench_common.h"

enum { T = 24 };

/* The best forward-product GFLOP/s at 512 rows over GPT-2's qkv, MLP-in and MLP-out shapes. */
static double kernel_peak(void) {
    const int shapes[3][2] = {{2304, 768}, {3072, 768}, {768, 3072}};
    double best = 0.0;
    Rng rng;
    rng_seed(&rng, 3, 0, 0);
    for (int s = 0; s < 3; s++) {
        int N = shapes[s][0], K = shapes[s][1], M = 512;
        float *a = alloc_floats((size_t)M * K), *w = alloc_floats(packed_floats(N, K)), *c = alloc_floats((size_t)M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)rng_normal(&rng);
        for (size_t i = 0; i < packed_floats(N, K); i++) w[i] = (float)rng_normal(&rng);
        for (int rep = 0; rep < 5; rep++) {
            int calls = 0;
            double t0 = now_seconds(), t;
            do {
                matmul_forward(c, a, w, NULL, M, K, N);
                calls++;
            } while ((t = now_seconds() - t0) < 0.2);
            double rate = 2.0 * M * N * K * calls / t / 1e9;
            if (rate > best) best = rate;
        }
        free(a), free(w), free(c);
    }
    return best;
}

typedef struct {
    const char *name;
    long patches, skipped;
    double seconds, useful_flops, all_flops; /* all_flops: had the skipped patches been computed */
    double cpu_seconds;                      /* the process's CPU time: other programs' load leaves it be */
} Sweep;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Every layer of one site, nodes [0, n) of each, every position. */
static Sweep sweep(Engine *e, const Job *job, const PromptRuns *r, const Plan *plan, const ModelConfig *c, Site site,
                   int n, float *out) {
    Sweep s = {site_name(site), 0, 0, 0.0, 0.0, 0.0, 0.0};
    int first_diff = 0;
    while (job->prompts[0].clean[first_diff] == job->prompts[0].corrupt[first_diff]) first_diff++;
    double t0 = now_seconds(), c0 = cpu_seconds();
    for (int l = 0; l < c->n_layer; l++) engine_effects(e, job, r, site, l, 0, n, plan_prompt_positions(plan, 0), T, out);
    s.seconds = now_seconds() - t0;
    s.cpu_seconds = cpu_seconds() - c0;
    s.patches = (long)c->n_layer * n * T;
    s.skipped = (long)c->n_layer * n * first_diff;
    for (int l = 0; l < c->n_layer; l++)
        for (int t = 0; t < T; t++) {
            double flops = n * patch_flops(c, T, l, site, t);
            s.all_flops += flops;
            if (t >= first_diff) s.useful_flops += flops;
        }
    return s;
}

int main(int argc, char **argv) {
    int naive_sample = argc > 1 ? atoi(argv[1]) : 36, neurons = argc > 2 ? atoi(argv[2]) : 64;
    int repeats = argc > 3 ? atoi(argv[3]) : 2;
    Model m;
    bench_model(&m);
    const ModelConfig c = m.cfg;
    Job job;
    bench_job(&job, &m, 1, T, "[\"z\", \"mlp_post\"]", "[]");
    Plan plan;
    plan_build(&plan, &job, &c);
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    Engine *e = engine_new(&m, T, plan.batch_limit);
    float *out = alloc_floats((size_t)(neurons > c.n_head ? neurons : c.n_head) * T);
    PromptRuns r;
    double t0 = now_seconds();
    prompt_runs_build(&r, &m, &job, &jr, 0);
    double runs_seconds = now_seconds() - t0;

    Sweep sweeps[2] = {sweep(e, &job, &r, &plan, &c, SITE_Z, c.n_head, out)};
    int n_sweeps = 1;
    if (neurons > 0) sweeps[n_sweeps++] = sweep(e, &job, &r, &plan, &c, SITE_MLP_POST, neurons, out);

    /* Naive path: a sample of z patches spread over layers and positions. */
    t0 = now_seconds();
    for (int i = 0; i < naive_sample; i++) {
        int layer = i % c.n_layer, pos = (i * 7) % T;
        engine_effects_naive(e, &job, &r, SITE_Z, layer, i % c.n_head, 1, &pos, 1, out);
    }
    double naive_rate = naive_sample / (now_seconds() - t0);
    double peak = kernel_peak();

    printf("bench_engine: GPT-2-small shape (12 layers, d_model 768, vocab 50257), T = %d, one core, %s kernels\n", T,
           kernels()->name);
    printf("  base/source runs: %.2f s\n", runs_seconds);
    printf("  kernel peak      : %6.1f GFLOP/s (forward product, 512 rows, best of GPT-2's shapes)\n", peak);
    for (int i = 0; i < n_sweeps; i++) {
        double rate = sweeps[i].patches / sweeps[i].seconds, useful = sweeps[i].useful_flops / sweeps[i].seconds / 1e9;
        printf("  %-8s fast path: %7.1f patches/s (%ld patches in %.2f s, %ld of them before the first corrupted "
               "token, skipped);\n                     useful work %.1f GFLOP/s = %.0f%% of peak\n",
               sweeps[i].name, rate, sweeps[i].patches, sweeps[i].seconds, sweeps[i].skipped, useful,
               100.0 * useful / peak);
    }
    double z_rate = sweeps[0].patches / sweeps[0].seconds;
    printf("  naive path (z)   : %7.1f patches/s (sample of %d); the fast path is %.1fx faster\n", naive_rate,
           naive_sample, z_rate / naive_rate);
    /* Had the skipped patches been computed at the same GFLOP/s: */
    double z_no_skip = sweeps[0].patches / (sweeps[0].all_flops / (sweeps[0].useful_flops / sweeps[0].seconds));
    printf("  z without the skip (estimated: every patch computed at the measured GFLOP/s): %.1f patches/s\n", z_no_skip);
    /* Lean runs against full ones, and 2 threads against 1: each pair measured alternately in
     * this one run (best of `repeats` each), so both sides see the same machine. The full runs
     * are the old code path (every activation of every layer cached, nothing recomputed); the
     * engine reads them directly. */
    size_t cells = (size_t)(neurons > c.n_head ? neurons : c.n_head) * T;
    float *lean_out = alloc_floats(cells), *full_out = alloc_floats(cells), *threaded = alloc_floats(cells);
    PromptRuns full;
    prompt_runs_expand(&r, &m, &full);
    double lean_best = 1e30, full_best = 1e30, one_best = 1e30, two_best = 1e30, lean_cpu = 1e30, full_cpu = 1e30;
    int two_ok = 1;
    for (int rep = 0; rep < repeats; rep++) {
        Sweep a = sweep(e, &job, &r, &plan, &c, SITE_Z, c.n_head, lean_out);
        Sweep b = sweep(e, &job, &full, &plan, &c, SITE_Z, c.n_head, full_out);
        if (a.seconds < lean_best) lean_best = a.seconds;
        if (b.seconds < full_best) full_best = b.seconds;
        if (a.cpu_seconds < lean_cpu) lean_cpu = a.cpu_seconds;
        if (b.cpu_seconds < full_cpu) full_cpu = b.cpu_seconds;
        if (threads_start(2) != PS_OK) {
            two_ok = 0;
            continue;
        }
        Sweep two = sweep(e, &job, &r, &plan, &c, SITE_Z, c.n_head, threaded);
        threads_stop();
        Sweep one = sweep(e, &job, &r, &plan, &c, SITE_Z, c.n_head, lean_out);
        if (two.seconds < two_best) two_best = two.seconds;
        if (one.seconds < one_best) one_best = one.seconds;
    }
    int same_full = memcmp(lean_out, full_out, sizeof(float) * (size_t)c.n_head * T) == 0;
    printf("  z, lean runs     : %7.1f patches/s; full runs (every activation cached): %7.1f patches/s; speed lean/full "
           "%.3f by wall time, %.3f by CPU time (best of %d each, alternated; %s bits)\n", sweeps[0].patches / lean_best,
           sweeps[0].patches / full_best, full_best / lean_best, full_cpu / lean_cpu, repeats,
           same_full ? "the same" : "DIFFERENT");
    if (two_ok) {
        int same = memcmp(lean_out, threaded, sizeof(float) * (size_t)c.n_head * T) == 0;
        printf("  z on 2 threads   : %7.1f patches/s, %.2fx one thread's %.1f (best of %d each, alternated; %s bits)\n",
               sweeps[0].patches / two_best, one_best / two_best, sweeps[0].patches / one_best, repeats,
               same ? "the same" : "DIFFERENT");
    }
    prompt_runs_expanded_free(&full);
    free(lean_out), free(full_out), free(threaded);
    printf("z_patches_per_second %.3f no_skip %.3f\n", z_rate, z_no_skip);
    prompt_runs_free(&r);
    free(out);
    engine_free(e);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return 0;
}
