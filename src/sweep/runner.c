/* The per-rank driver: parse and check the job, open (or resume) the results file, then take
 * units from the coordinator until there are none, computing each prompt's runs once while
 * its units keep coming. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/store.h"
#include "patchsweep/sweep.h"

static void poll_scheduler(void *ctx) { sched_poll(ctx); }

/* out[k] = the mean over noise samples of x[s * M + k]. */
static void sample_means(const double *x, int n_samples, int M, double *out) {
    for (int k = 0; k < M; k++) {
        double s = 0.0;
        for (int i = 0; i < n_samples; i++) s += x[(size_t)i * M + k];
        out[k] = s / n_samples;
    }
}

typedef struct {
    const Job *job;
    const Model *m;
    const Plan *plan;
    Engine *engine;
    Attributor *attrib;
    int naive;
    float *values[1 + N_ESTIMATES]; /* exact, then each estimator, [N, S, M] */
    EdgeScratch *edges;
    float *edge_values[1 + N_EDGE_ESTIMATES]; /* the same for edges, [E, S, M] */
} UnitWork;

/* Computes one exact unit into w->values; returns the number of patched runs. */
static double compute_exact(UnitWork *w, const PromptRuns *r, const Unit *u) {
    const Node *first = &w->plan->nodes[u->node0];
    int index0 = first->index < 0 ? 0 : first->index, S = w->plan->n_positions;
    const int *positions = plan_prompt_positions(w->plan, u->prompt);
    if (w->naive)
        engine_effects_naive(w->engine, w->job, r, first->site, first->layer, index0, u->n_nodes, positions, S, w->values[0]);
    else
        engine_effects(w->engine, w->job, r, first->site, first->layer, index0, u->n_nodes, positions, S, w->values[0]);
    int valid = 0;
    for (int j = 0; j < S; j++) valid += positions[j] < r->T;
    return (double)u->n_nodes * valid * r->n_samples;
}

/* Computes one exact edge unit into w->edge_values[0]; returns the number of patched runs. */
static double compute_edges(UnitWork *w, const PromptRuns *r, const Unit *u) {
    int S = w->plan->n_positions;
    const int *positions = plan_prompt_positions(w->plan, u->prompt);
    edge_effects(w->edges, r, w->plan->edges + u->node0, u->n_nodes, positions, S, w->edge_values[0], w->naive);
    int valid = 0;
    for (int j = 0; j < S; j++) valid += positions[j] < r->T;
    return (double)u->n_nodes * valid * r->n_samples;
}

/* Takes units until there are none, writes each, then marks the file complete. */
static int compute_units(const Job *job, const Model *m, const Plan *plan, const JobRuns *jr, Store *store,
                         const uint8_t *done, MPI_Comm comm, const RunOptions *opt) {
    int rank, size, rc = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    Progress progress;
    progress_init(&progress, plan, done, opt->quiet);
    Scheduler *sched = sched_new(plan, done, comm, rank == 0 ? &progress : NULL);
    int node_estimates = 0; /* the estimators' gradient caches are full runs: only when asked for */
    for (int e = 0; e < N_ESTIMATES; e++) node_estimates |= job->estimates[e];
    UnitWork w = {job, m, plan, engine_new(m, plan->max_T, plan->batch_limit),
                  node_estimates ? attrib_new(m, plan->max_T) : NULL, opt->naive, {NULL}, NULL, {NULL}};
    for (int i = 0; i < 1 + N_ESTIMATES; i++)
        if (i == 0 ? job->exact : job->estimates[i - 1])
            w.values[i] = alloc_floats((size_t)plan->n_nodes * plan->n_positions * job->n_metrics + 1);
    if (plan->n_edges) {
        w.edges = edge_scratch_new(m, plan->max_T, plan->batch_limit);
        for (int i = 0; i < 1 + N_EDGE_ESTIMATES; i++)
            if (i == 0 ? job->exact : job->edge_estimates[i - 1])
                w.edge_values[i] = alloc_floats((size_t)plan->n_edges * plan->n_positions * job->n_metrics);
    }
    engine_set_poll(w.engine, poll_scheduler, sched);

    double seconds_runs = 0.0, start = now_seconds(), writes[3] = {0.0, 0.0, 0.0}; /* count, seconds, slowest */
    PromptRuns runs;
    int current = -1;
    for (int u; (u = sched_next(sched, current)) >= 0;) {
        const Unit *unit = &plan->units[u];
        if (unit->prompt != current) {
            if (current >= 0) prompt_runs_free(&runs);
            double t0 = now_seconds();
            prompt_runs_build(&runs, m, job, jr, unit->prompt);
            seconds_runs += now_seconds() - t0;
            current = unit->prompt;
        }
        double t0 = now_seconds(), patches = 0.0, est_seconds[N_ESTIMATES] = {NAN, NAN, NAN};
        const float *values[1 + N_ESTIMATES] = {NULL, NULL, NULL, NULL};
        if (unit->kind == UNIT_EXACT) {
            patches = compute_exact(&w, &runs, unit);
            values[0] = w.values[0];
        } else if (unit->kind == UNIT_EDGE_EXACT) {
            patches = compute_edges(&w, &runs, unit);
            values[0] = w.edge_values[0];
        } else if (unit->kind == UNIT_EDGE_ESTIMATE) {
            edge_estimates(m, job, plan, &runs, w.edge_values + 1);
            for (int e = 0; e < N_EDGE_ESTIMATES; e++) values[1 + e] = w.edge_values[1 + e];
        } else {
            float *est[N_ESTIMATES] = {w.values[1], w.values[2], w.values[3]};
            attrib_estimates(w.attrib, job, plan, &runs, est, est_seconds);
            for (int e = 0; e < N_ESTIMATES; e++) values[1 + e] = est[e];
        }
        double spent = now_seconds() - t0, base[N_METRICS], source[N_METRICS];
        sample_means(runs.base_metric, runs.n_samples, job->n_metrics, base);
        sample_means(runs.source_metric, runs.n_samples, job->n_metrics, source);
        double w0 = now_seconds();
        rc = store_write_unit(store, plan, u, values, base, source, spent, unit->kind == UNIT_ESTIMATE ? est_seconds : NULL,
                              rank);
        writes[0] += 1.0, writes[1] += now_seconds() - w0, writes[2] = fmax(writes[2], now_seconds() - w0);
        if (rc) { /* the file cannot take more here: stop every rank, keeping what is written */
            sched_fail(sched);
            break;
        }
        sched_done(sched, u, patches);
    }
    if (current >= 0) prompt_runs_free(&runs);
    sched_finish(sched);

    double runs_total, sums[3] = {writes[0], writes[1], now_seconds() - start}, totals[3], slowest;
    MPI_Allreduce(&seconds_runs, &runs_total, 1, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Reduce(sums, totals, 3, MPI_DOUBLE, MPI_SUM, 0, comm);
    MPI_Reduce(&writes[2], &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
    if (rank == 0 && size > 1) /* the write pattern, for docs/sizing.md's many-rank measurements */
        progress.writes = (long)totals[0], progress.write_seconds = totals[1], progress.rank_seconds = totals[2],
        progress.write_max = slowest;
    rc = mpi_agree(rc, comm); /* one line, from the rank that failed */
    if (!rc) rc = mpi_agree(store_finish(store, 1, size, runs_total), comm);
    if (rank == 0 && !opt->quiet) progress_end(&progress);
    for (int i = 0; i < 1 + N_ESTIMATES; i++) free(w.values[i]);
    for (int i = 0; i < 1 + N_EDGE_ESTIMATES; i++) free(w.edge_values[i]);
    edge_scratch_free(w.edges);
    engine_free(w.engine);
    attrib_free(w.attrib);
    return rc;
}

int sweep_run(const char *job_path, MPI_Comm comm, const RunOptions *opt) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    Job job;
    Model m;
    memset(&m, 0, sizeof m);
    SharedWeights shared = {MPI_COMM_NULL, MPI_WIN_NULL};
    int rc = mpi_agree(job_parse_file(&job, job_path), comm);
    if (!rc) rc = model_load_shared(&m, &job, comm, &shared);
    if (!rc) rc = mpi_agree(job_check(&job, &m), comm);
    if (rc) {
        job_free(&job);
        model_free_shared(&m, &shared);
        return rc;
    }
    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    Store store;
    int resumed = 0;
    uint8_t *done = xcalloc((size_t)plan.n_units + 1, 1);
    rc = mpi_agree(store_open(&store, &job, &plan, &m, job_fingerprint(&job, m.fingerprint), comm, &resumed),
               comm);
    if (!rc) rc = mpi_agree(store_read_done(&store, done), comm);
    if (!rc) {
        int already = 0;
        for (int u = 0; u < plan.n_units; u++) already += done[u];
        char edges_note[48] = "";
        if (plan.n_edges) snprintf(edges_note, sizeof edges_note, " + %d edges", plan.n_edges);
        for (int i = 0; rank == 0 && !opt->quiet && i < job.n_warnings; i++)
            fprintf(stderr, "patchsweep: warning: %s\n", job.warnings[i]);
        if (rank == 0 && !opt->quiet)
            fprintf(stderr, "patchsweep: %s: %d prompts x %d nodes%s x %d positions, %d units%s, %d ranks -> %s\n",
                    job.path, job.n_prompts, plan.n_nodes, edges_note, plan.n_positions, plan.n_units,
                    resumed ? (already == plan.n_units ? " (all done already)" : " (resuming)") : "", size, job.output);
        rc = compute_units(&job, &m, &plan, &jr, &store, done, comm, opt);
        if (rank == 0 && !opt->quiet && !rc) fprintf(stderr, "patchsweep: wrote %s\n", job.output);
    }
    store_close(&store);
    free(done);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free_shared(&m, &shared);
    return rc;
}
