/* patchsweep circuit JOB.json [--quiet]: after a job has run, evaluate the circuits of its
 * "circuits" key under every choice on every prompt, and write /circuits into its results file
 * (docs/circuits.md).
 *
 * Units are (circuit row, choice, prompt), prompt-major: the prompts go to the ranks in rounds of
 * one each (prompt first + r to rank r), each rank computes its prompt's units that are not done
 * (one clean run, the ablated node outputs of each choice, then one evaluator pass per unit and
 * resample seed), and rank 0 writes them in prompt order, values before done flags. A unit's
 * values do not depend on the rank that computed it, so any number of ranks, and a rerun after a
 * kill, give the same bits. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "patchsweep/circuits.h"
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/store.h"
#include "patchsweep/sweep.h"

enum { TAG_VALUES = 11, TAG_FLAGS };

/* What every rank needs to evaluate a prompt. */
typedef struct {
    const Job *job;
    const Model *m;
    const Plan *plan;
    const Circuits *cs;
    CircuitScratch *eval;
    RunCache run;        /* a source run */
    double **means;      /* per mean source (the job's prompts, then each mean set): [U, T, d], or NULL */
    double *abl;         /* [U, T, d] */
    uint8_t *kept;       /* [n_graph, T] */
    double *clean_logprobs;
    MetricWork work;
    int T;
} Work;

static size_t node_floats(const Work *w) { return (size_t)circuit_n_upstream(&w->m->cfg) * w->T * w->m->cfg.d_model; }

/* out = the mean over prompts of their clean runs' node outputs (in prompt order). */
static void mean_outputs(Work *w, const Prompt *prompts, int n, double *out) {
    size_t count = node_floats(w);
    double *one = alloc_doubles(count);
    memset(out, 0, sizeof(double) * count);
    for (int p = 0; p < n; p++) {
        run_forward(w->m, prompts[p].clean, w->T, NULL, &w->run, NULL, NULL);
        node_outputs(w->m, &w->run, w->T, one);
        for (size_t i = 0; i < count; i++) out[i] += one[i];
    }
    for (size_t i = 0; i < count; i++) out[i] /= n;
    free(one);
}

/* w->abl: the ablated node outputs of choice ch, seed s, for prompt p. */
static void ablated(Work *w, const CircuitChoice *ch, int s, int p) {
    const Job *job = w->job;
    size_t count = node_floats(w);
    if (ch->ablation == ABLATE_ZERO) {
        memset(w->abl, 0, sizeof(double) * count);
    } else if (ch->ablation == ABLATE_MEAN) {
        memcpy(w->abl, w->means[ch->mean_set + 1], sizeof(double) * count);
    } else {
        const int *tokens = job->prompts[p].corrupt;
        if (ch->ablation == ABLATE_RESAMPLE) {
            int *perm = job_derangement(job->n_prompts, ch->seed + (uint64_t)s);
            tokens = job->prompts[perm[p]].clean;
            free(perm);
        }
        run_forward(w->m, tokens, w->T, NULL, &w->run, NULL, NULL);
        node_outputs(w->m, &w->run, w->T, w->abl);
    }
}

/* Prompt p's values: full [M], empty [A, M], metric [C, A, M] of the units not done. */
static void evaluate_prompt(Work *w, int p, const uint8_t *done, double *full, double *empty, double *metric,
                            uint8_t *computed) {
    const Job *job = w->job;
    const CircuitsSpec *spec = job->circuits;
    const Prompt *pr = &job->prompts[p];
    int C = w->cs->C, A = spec->n_choices, M = job->n_metrics, T = pr->T, d = w->m->cfg.d_model;
    size_t graph = (size_t)w->cs->n_graph * T;
    if (T > w->T) { /* pair ablation allows prompts of several lengths */
        run_cache_free(&w->run);
        run_cache_init(&w->run, &w->m->cfg, T, 0);
        free(w->abl), free(w->kept);
        w->T = T;
        w->abl = alloc_doubles(node_floats(w));
        w->kept = xmalloc((size_t)w->cs->n_graph * T + 1);
    }
    w->T = T;
    run_forward(w->m, pr->clean, T, NULL, &w->run, NULL, NULL); /* the clean log-probabilities, for kl */
    final_logprobs(w->m, w->run.layer[w->m->cfg.n_layer - 1].resid_post + (size_t)(T - 1) * d, w->clean_logprobs, &w->work);
    MetricSpec ms = {job->metrics, M, pr->answer, pr->wrong, w->clean_logprobs};
    memset(w->kept, 1, graph); /* the full circuit: every edge, the clean run itself */
    circuit_metrics(w->eval, pr->clean, T, w->abl, w->kept, &ms, full);
    double *one = alloc_doubles((size_t)M);
    for (int a = 0; a < A; a++) {
        const CircuitChoice *ch = &spec->choices[a];
        double *e = empty + (size_t)a * M;
        memset(e, 0, sizeof(double) * M);
        for (int c = 0; c < C; c++) {
            computed[(size_t)c * A + a] = !done[((size_t)c * A + a) * job->n_prompts + p];
            memset(metric + ((size_t)c * A + a) * M, 0, sizeof(double) * M);
        }
        for (int s = 0; s < ch->seeds; s++) { /* the stored values are the means over seeds */
            ablated(w, ch, s, p);
            memset(w->kept, 0, graph);
            circuit_metrics(w->eval, pr->clean, T, w->abl, w->kept, &ms, one);
            for (int i = 0; i < M; i++) e[i] += one[i];
            for (int c = 0; c < C; c++) {
                if (!computed[(size_t)c * A + a]) continue;
                circuits_kept(w->cs, c, ch->nodes, &w->m->cfg, w->plan, p, T, w->kept);
                circuit_metrics(w->eval, pr->clean, T, w->abl, w->kept, &ms, one);
                for (int i = 0; i < M; i++) metric[((size_t)c * A + a) * M + i] += one[i];
            }
        }
        for (int i = 0; i < M; i++) e[i] /= ch->seeds;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < M; i++) metric[((size_t)c * A + a) * M + i] /= ch->seeds;
    }
    free(one);
}

/* Rank 0: the job's results file exists and holds this job's results. */
static int check_file(const Job *job, const Model *m) {
    if (!file_exists(job->output))
        return ps_fail(PS_EUSER, "circuit: %s does not exist; run the job first (patchsweep run %s)", job->output, job->path);
    if (!is_regular_file(job->output) || H5Fis_hdf5(job->output) <= 0)
        return ps_fail(PS_EUSER, "circuit: %s is not a patchsweep results file", job->output);
    hid_t f = H5Fopen(job->output, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return ps_fail(PS_EUSER, "circuit: %s cannot be opened (is it in use?)", job->output);
    char *stored = h5_string_attr(f, "job_fingerprint"), want[32];
    H5Fclose(f);
    snprintf(want, sizeof want, "%016llx", (unsigned long long)job_fingerprint(job, m->fingerprint));
    int rc = stored && strcmp(stored, want) == 0
                 ? PS_OK
                 : ps_fail(PS_EUSER, "circuit: %s holds the results of a different job or model (fingerprint %s, this job %s)",
                           job->output, stored ? stored : "none", want);
    free(stored);
    return rc;
}

/* The rounds: every rank evaluates its prompt, rank 0 writes each in prompt order. */
static int run_rounds(Work *w, CircuitFile *cf, const uint8_t *done, int quiet, MPI_Comm comm) {
    const Job *job = w->job;
    int rank, size, P = job->n_prompts, C = w->cs->C, A = job->circuits->n_choices, M = job->n_metrics, rc = PS_OK;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t n_values = (size_t)M + (size_t)A * M + (size_t)C * A * M, n_flags = (size_t)C * A;
    double *values = alloc_doubles(n_values);
    uint8_t *flags = xmalloc(n_flags + 1);
    for (int first = 0; first < P; first += size) {
        int mine = first + rank;
        if (mine < P) {
            int pending = 0;
            for (size_t u = 0; u < n_flags; u++) pending |= !done[u * P + mine];
            if (pending) evaluate_prompt(w, mine, done, values, values + M, values + M + (size_t)A * M, flags);
            else memset(flags, 0, n_flags);
        }
        for (int q = first; q < first + size && q < P; q++) {
            if (rank == 0 && q > first) {
                mpi_recv_long(values, n_values, MPI_DOUBLE, q - first, TAG_VALUES, comm, PS_MPI_PIECE);
                mpi_recv_long(flags, n_flags, MPI_UINT8_T, q - first, TAG_FLAGS, comm, PS_MPI_PIECE);
            } else if (rank != 0 && q == mine) {
                mpi_send_long(values, n_values, MPI_DOUBLE, 0, TAG_VALUES, comm, PS_MPI_PIECE);
                mpi_send_long(flags, n_flags, MPI_UINT8_T, 0, TAG_FLAGS, comm, PS_MPI_PIECE);
            }
            if (rank != 0) continue;
            int any = 0;
            for (size_t u = 0; u < n_flags; u++) any += flags[u];
            if (any && !rc) rc = circuit_file_write_prompt(cf, q, values, values + M, values + M + (size_t)A * M, flags);
        }
        if (rank == 0 && !quiet && isatty(2))
            fprintf(stderr, "\rpatchsweep circuit: %d of %d prompts", first + size < P ? first + size : P, P);
    }
    if (rank == 0 && !quiet && isatty(2)) fprintf(stderr, "\n");
    free(values), free(flags);
    return rc;
}

static void print_summary(const Job *job, const Circuits *cs, hid_t group) {
    hsize_t dims[3];
    double *rom = h5_read_all(group, "ratio_of_means", H5T_NATIVE_DOUBLE, 8, 3, dims);
    double *mor = h5_read_all(group, "mean_of_ratios", H5T_NATIVE_DOUBLE, 8, 3, dims);
    const CircuitsSpec *spec = job->circuits;
    int A = spec->n_choices, M = job->n_metrics;
    printf("%-12s %6s %6s  %-28s %14s %14s   (%s)\n", "set", "k", "size", "choice", "ratio of means", "mean of ratios",
           metric_name(job->metrics[0]));
    for (int c = 0; rom && mor && c < cs->C; c++)
        for (int a = 0; a < A; a++) {
            size_t at = ((size_t)c * A + a) * M;
            printf("%-12s %6d %6d  %-28s %14.4f %14.4f\n", spec->sets[cs->rows[c].set].name, cs->rows[c].k, cs->rows[c].size,
                   spec->choices[a].name, rom[at], mor[at]);
        }
    free(rom), free(mor);
}

static int run_circuits(const Job *job, const Model *m, const Plan *plan, int quiet, MPI_Comm comm) {
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double t0 = now_seconds();
    int rc = mpi_agree(rank == 0 ? check_file(job, m) : PS_OK, comm);
    Circuits cs;
    memset(&cs, 0, sizeof cs);
    if (!rc) rc = mpi_agree(circuits_build(&cs, job, plan, &m->cfg, job->output), comm); /* read-only, every rank */
    hid_t file = -1;
    CircuitFile cf = {.group = -1};
    uint8_t *done = NULL;
    char fingerprint[64];
    snprintf(fingerprint, sizeof fingerprint, "%016llx",
             (unsigned long long)hash_bytes(job_fingerprint(job, m->fingerprint), job->circuits->canonical,
                                            strlen(job->circuits->canonical)));
    if (!rc) {
        int status = PS_OK;
        if (rank == 0) {
            file = H5Fopen(job->output, H5F_ACC_RDWR, H5P_DEFAULT);
            status = file < 0 ? ps_fail(PS_EUSER, "circuit: %s cannot be opened for writing (read-only?)", job->output)
                              : circuit_file_open(&cf, file, job->output, job, &cs, fingerprint, &done);
        }
        rc = mpi_agree(status, comm);
    }
    size_t units = (size_t)cs.C * job->circuits->n_choices * job->n_prompts;
    if (!rc) {
        if (!done) done = xcalloc(units + 1, 1);
        MPI_Bcast(done, (int)units, MPI_UINT8_T, 0, comm); /* C x A x P flags: small */
        int already = 0;
        for (size_t u = 0; u < units; u++) already += done[u];
        if (rank == 0 && !quiet)
            fprintf(stderr, "patchsweep circuit: %s: %d circuits x %d choices x %d prompts = %zu units%s, %d ranks\n", job->path,
                    cs.C, job->circuits->n_choices, job->n_prompts, units,
                    already == (int)units ? " (all done already)" : already ? " (resuming)" : "", size);
        Work w = {job, m, plan, &cs, NULL, {0}, NULL, NULL, NULL, NULL, {0}, job->prompts[0].T};
        int longest = plan->max_T;
        w.T = longest;
        w.eval = circuit_scratch_new(m, cs.graph, cs.n_graph, longest);
        run_cache_init(&w.run, &m->cfg, longest, 0);
        w.abl = alloc_doubles(node_floats(&w));
        w.kept = xmalloc((size_t)cs.n_graph * longest + 1);
        w.clean_logprobs = alloc_doubles((size_t)m->cfg.vocab);
        const CircuitsSpec *spec = job->circuits;
        w.means = xcalloc((size_t)spec->n_mean_sets + 1, sizeof(double *));
        for (int a = 0; a < spec->n_choices; a++) { /* each mean once (prompts of one length: job_check) */
            const CircuitChoice *ch = &spec->choices[a];
            if (ch->ablation != ABLATE_MEAN || w.means[ch->mean_set + 1]) continue;
            w.T = job->prompts[0].T;
            w.means[ch->mean_set + 1] = alloc_doubles(node_floats(&w));
            if (ch->mean_set < 0) mean_outputs(&w, job->prompts, job->n_prompts, w.means[0]);
            else mean_outputs(&w, spec->mean_sets[ch->mean_set].prompts, spec->mean_sets[ch->mean_set].n, w.means[ch->mean_set + 1]);
        }
        w.T = longest;
        rc = mpi_agree(run_rounds(&w, &cf, done, quiet, comm), comm);
        if (!rc && rank == 0) rc = circuit_file_summarise(&cf, job, &cs, now_seconds() - t0);
        rc = mpi_agree(rc, comm);
        if (!rc && rank == 0 && !quiet) {
            print_summary(job, &cs, cf.group);
            fprintf(stderr, "patchsweep circuit: wrote %s:/circuits (%.1f s)\n", job->output, now_seconds() - t0);
        }
        for (int i = 0; i <= spec->n_mean_sets; i++) free(w.means[i]);
        free(w.means), free(w.abl), free(w.kept), free(w.clean_logprobs);
        run_cache_free(&w.run);
        metric_work_free(&w.work);
        circuit_scratch_free(w.eval);
    }
    if (rank == 0) circuit_file_close(&cf);
    int closing = PS_OK; /* every earlier status is agreed already: only this one is new */
    if (file >= 0) {
        int flushed = H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0;
        H5Fclose(file);
        if (!flushed) closing = ps_fail(PS_EUSER, "circuit: writing %s failed (disk full?)", job->output);
    }
    if (!rc) rc = mpi_agree(closing, comm);
    free(done);
    circuits_free_rows(&cs);
    return rc;
}

int cmd_circuit(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *path = NULL;
    int quiet = 0, rc = PS_OK;
    for (int i = 1; i < argc && !rc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) quiet = 1;
        else if (argv[i][0] != '-' && !path) path = argv[i];
        else rc = ps_fail(PS_EUSER, "circuit: unexpected argument \"%s\"; %s", argv[i], command_usage("circuit"));
    }
    if (!rc && !path) rc = ps_fail(PS_EUSER, "circuit: %s", command_usage("circuit"));
    rc = mpi_agree(rc, comm);
    Job job;
    Model m;
    memset(&job, 0, sizeof job);
    memset(&m, 0, sizeof m);
    SharedWeights shared = {MPI_COMM_NULL, MPI_WIN_NULL};
    int parsed = 0, loaded = 0;
    if (!rc) rc = mpi_agree(job_parse_file(&job, path), comm), parsed = 1;
    if (!rc && !job.circuits)
        rc = mpi_agree(ps_fail(PS_EUSER, "circuit: %s has no \"circuits\" key (docs/circuits.md)", job.path), comm);
    if (!rc) rc = model_load_shared(&m, &job, comm, &shared), loaded = 1;
    if (!rc) rc = mpi_agree(job_check(&job, &m), comm);
    if (!rc) {
        Plan plan;
        plan_build(&plan, &job, &m.cfg);
        rc = run_circuits(&job, &m, &plan, quiet, comm);
        plan_free(&plan);
    }
    if (parsed) job_free(&job);
    if (loaded) model_free_shared(&m, &shared);
    MPI_Finalize();
    return rc;
}
