/* bench_circuits: what one circuit evaluation costs against a plain forward pass, on the
 * GPT-2-small-shaped benchmark model (12 layers, 12 heads, d_model 768; 32,491 edges), a prompt of
 * 24 tokens, one core. Reported from one run, each as a multiple of the forward pass:
 *   - the full circuit (every edge kept: the forward pass plus the node outputs it records);
 *   - the empty circuit under pair ablation (every input of every layer recomputed at the rows
 *     where the corrupt prompt differs: from the first corrupted token on);
 *   - a random half of the edges (the same rows, a different sum per input);
 *   - the empty circuit under zero ablation (every row of every input recomputed: the worst case).
 * An input recomputes its whole q/k/v projection to keep one head's slice (input_row_forward),
 * which is what the worst case measures.
 *
 * usage: bench_circuits [T=24] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_common.h"
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/plan.h"

static double seconds_per(CircuitScratch *w, const int *tokens, int T, const double *abl, const uint8_t *kept,
                          const MetricSpec *spec, int reps) {
    double out[N_METRICS], t0 = now_seconds();
    for (int i = 0; i < reps; i++) circuit_metrics(w, tokens, T, abl, kept, spec, out);
    return (now_seconds() - t0) / reps;
}

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 24;
    Model m;
    bench_model(&m);
    Job job;
    bench_job(&job, &m, 1, T, "[\"z\"]", "[]");
    const Prompt *pr = &job.prompts[0];
    EdgeFilter all = {0};
    long E = edge_graph(&m.cfg, &all, NULL);
    Edge *edges = xmalloc(sizeof(Edge) * (size_t)E);
    edge_graph(&m.cfg, &all, edges);
    size_t U = (size_t)circuit_n_upstream(&m.cfg), nodes = U * T * m.cfg.d_model;
    double *corrupt = alloc_doubles(nodes), *zero = alloc_doubles(nodes), *logprobs = alloc_doubles((size_t)m.cfg.vocab);
    memset(zero, 0, sizeof(double) * nodes);
    RunCache run;
    run_cache_init(&run, &m.cfg, T, 0);
    int reps = 3;
    double t0 = now_seconds();
    for (int i = 0; i < reps; i++) run_forward(&m, pr->clean, T, NULL, &run, NULL, NULL);
    double forward = (now_seconds() - t0) / reps;
    MetricWork work = {0};
    final_logprobs(&m, run.layer[m.cfg.n_layer - 1].resid_post + (size_t)(T - 1) * m.cfg.d_model, logprobs, &work);
    run_forward(&m, pr->corrupt, T, NULL, &run, NULL, NULL);
    node_outputs(&m, &run, T, corrupt);
    MetricSpec spec = {job.metrics, job.n_metrics, pr->answer, pr->wrong, logprobs};

    uint8_t *kept = xmalloc((size_t)E * T);
    CircuitScratch *w = circuit_scratch_new(&m, edges, E, T);
    memset(kept, 1, (size_t)E * T);
    double full = seconds_per(w, pr->clean, T, corrupt, kept, &spec, reps);
    memset(kept, 0, (size_t)E * T);
    double empty = seconds_per(w, pr->clean, T, corrupt, kept, &spec, reps);
    double worst = seconds_per(w, pr->clean, T, zero, kept, &spec, reps);
    Rng rng;
    rng_seed(&rng, 1, 2, 3);
    for (long e = 0; e < E; e++) memset(kept + (size_t)e * T, rng_uniform(&rng) < 0.5, (size_t)T);
    double half = seconds_per(w, pr->clean, T, corrupt, kept, &spec, reps);

    printf("bench_circuits: GPT-2-small shape, T = %d, %ld edges, 1 thread; one evaluation, in forward passes\n", T, E);
    printf("  forward pass                   %8.3f s   1.0 F\n", forward);
    printf("  full circuit                   %8.3f s   %.1f F  (the forward pass and the node outputs)\n", full, full / forward);
    printf("  empty circuit, pair            %8.3f s   %.1f F  (rows from the first corrupted token on)\n", empty, empty / forward);
    printf("  half the edges, pair           %8.3f s   %.1f F\n", half, half / forward);
    printf("  empty circuit, zero            %8.3f s   %.1f F  (every row of every input: the worst case)\n", worst, worst / forward);
    circuit_scratch_free(w);
    free(kept), free(edges), free(corrupt), free(zero), free(logprobs);
    run_cache_free(&run);
    metric_work_free(&work);
    job_free(&job);
    model_free(&m);
    return 0;
}
