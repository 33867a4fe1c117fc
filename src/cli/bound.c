/* patchsweep bound JOB.json [options]: after a job has run, bound what its gradient ranking
 * missed (docs/methods.md, "Bounding what the ranking missed"). For each prompt, the cells of one
 * site (node x position), or with --edges the edge cells (edge x position, docs/edges.md), are
 * ranked by an estimator; the top --verified are taken as verified;
 * the rest are patched jointly in --subsets random subsets (each cell in with probability
 * --inclusion), and the subset effects give, for every unverified cell, an upper confidence
 * bound on its |exact effect|, for one of the job's metrics (--metric, default its first).
 * Written to the job's results file under /bound (docs/results.md).
 *
 * One full forward pass per subset and noise sample, however many cells the site has: a
 * diagnostic on top of a finished sweep (or of an estimates-only job). Under mpirun the prompts
 * are spread over the ranks and rank 0 writes; the file is the same whatever the number of ranks. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/bound.h"
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/results.h"
#include "patchsweep/store.h"
#include "patchsweep/sweep.h"


typedef struct {
    const char *job, *site, *by, *ties, *metric;
    long verified, subsets, seed;
    double inclusion, confidence;
    int quiet, edges;
} BoundOptions;

static int parse_long(const char *flag, const char *text, long lo, long *out) {
    char *end;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < lo) return ps_fail(PS_EUSER, "bound: %s must be an integer >= %ld, got \"%s\"", flag, lo, text);
    *out = v;
    return PS_OK;
}

static int parse_fraction(const char *flag, const char *text, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (!*text || *end || !(v > 0.0 && v < 1.0))
        return ps_fail(PS_EUSER, "bound: %s must be a number strictly between 0 and 1, got \"%s\"", flag, text);
    *out = v;
    return PS_OK;
}

static int parse_options(int argc, char **argv, BoundOptions *o) {
    *o = (BoundOptions){.verified = 10, .subsets = 200, .inclusion = 0.1, .confidence = 0.95};
    static const char *const flags[] = {"--site",      "--by",         "--verified",   "--subsets", "--seed",
                                        "--inclusion", "--confidence", "--ties",       "--metric"};
    enum { N_FLAGS = sizeof flags / sizeof flags[0] };
    int seen[N_FLAGS] = {0}, rc = PS_OK;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "--edges") == 0) {
            *(a[2] == 'q' ? &o->quiet : &o->edges) = 1;
            continue;
        }
        if (a[0] != '-') {
            if (o->job) return ps_fail(PS_EUSER, "bound: unexpected argument \"%s\"; %s", a, command_usage("bound"));
            o->job = a;
            continue;
        }
        int f = 0;
        while (f < N_FLAGS && strcmp(a, flags[f]) != 0) f++;
        if (f == N_FLAGS) return ps_fail(PS_EUSER, "bound: unknown option \"%s\"; %s", a, command_usage("bound"));
        if (seen[f]++) return ps_fail(PS_EUSER, "bound: %s is given twice", a);
        if (i + 1 >= argc) return ps_fail(PS_EUSER, "bound: %s needs a value; %s", a, command_usage("bound"));
        const char *value = argv[++i];
        switch (f) {
        case 0: o->site = value; break;
        case 1: o->by = value; break;
        case 2: rc = parse_long(a, value, 0, &o->verified); break;
        case 3: rc = parse_long(a, value, 4, &o->subsets); break;
        case 4: rc = parse_long(a, value, 0, &o->seed); break;
        case 5: rc = parse_fraction(a, value, &o->inclusion); break;
        case 6: rc = parse_fraction(a, value, &o->confidence); break;
        case 8: o->metric = value; break;
        default:
            o->ties = value;
            if (strcmp(value, "bound") != 0 && strcmp(value, "verify") != 0)
                rc = ps_fail(PS_EUSER, "bound: --ties must be \"bound\" or \"verify\", got \"%s\"", value);
            break;
        }
    }
    if (!rc && !o->job) rc = ps_fail(PS_EUSER, "bound: %s", command_usage("bound"));
    return rc;
}

/* The ranking estimator --by names (*given = -1 without --by: bound_choose_ranker picks one
 * from the file). */
static int choose_by(const Job *job, const BoundOptions *o, int edges, int *given) {
    const char *kind = edges ? "edge estimator (eap, eap_ig, eap_ig_act)" : "estimator (atp, atp_qk, atp_star)";
    *given = -1;
    if (o->by) {
        for (int e = 0; e < BOUND_RANKERS; e++)
            if (strcmp(o->by, bound_ranker_name(edges, e)) == 0) {
                *given = e;
                if (!bound_ranker_computed(job, edges, e))
                    return ps_fail(PS_EUSER, "bound: --by %s: the job %s does not compute that estimate", o->by, job->path);
                return PS_OK;
            }
        return ps_fail(PS_EUSER, "bound: --by \"%s\" is not an %s", o->by, kind);
    }
    for (int e = 0; e < BOUND_RANKERS; e++)
        if (bound_ranker_computed(job, edges, e)) return PS_OK;
    return ps_fail(PS_EUSER, "bound: the job %s computes no %ss to rank by (add \"estimates\" and run it)", job->path,
                   edges ? "edge estimate" : "estimate");
}

/* Edges or a node site (from the options, or the job's only choice), then the ranker. An edge
 * job without "nodes" bounds its edges; a job with both bounds nodes unless --edges says edges. */
static int choose(const Job *job, const BoundOptions *o, int *edges, Site *site, int *given) {
    *edges = o->edges || job->n_sites == 0;
    if (*edges && !job->edges.on)
        return ps_fail(PS_EUSER, "bound: --edges: the job %s patches no edges (docs/edges.md)", job->path);
    if (*edges && o->site)
        return ps_fail(PS_EUSER, "bound: --site %s: with edges the cells are the job's edges at its positions; leave --site out",
                       o->site);
    if (*edges) return choose_by(job, o, 1, given);
    if (o->site) {
        int listed = 0;
        if (site_from_name(o->site, site)) return ps_fail(PS_EUSER, "bound: --site \"%s\" is not a site", o->site);
        for (int i = 0; i < job->n_sites; i++) listed |= job->sites[i] == *site;
        if (!listed) return ps_fail(PS_EUSER, "bound: --site %s: the job %s does not patch that site", o->site, job->path);
    } else if (job->n_sites == 1) {
        *site = job->sites[0];
    } else {
        char names[256] = "";
        for (int i = 0; i < job->n_sites; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", site_name(job->sites[i]));
        return ps_fail(PS_EUSER, "bound: the job patches several sites (%s); choose one with --site", names);
    }
    return choose_by(job, o, 0, given);
}

/* The metric to bound: --metric, or the job's first (every rank finds it in the job). */
static int choose_metric(const Job *job, const char *name, int *metric) {
    char have[128] = "";
    for (int k = 0; k < job->n_metrics; k++) {
        if (!name || strcmp(name, metric_name(job->metrics[k])) == 0) {
            *metric = k;
            return PS_OK;
        }
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", k ? ", " : "", metric_name(job->metrics[k]));
    }
    return ps_fail(PS_EUSER, "bound: --metric %s: the job %s does not compute that metric (it has: %s)", name, job->path,
                   have);
}

/* Opens the job's results file for writing after checking it holds this job, then (its metrics
 * being the job's) to read the given metric. */
static int open_results(const Job *job, const Model *m, int edges, int metric, Results *r) {
    if (!file_exists(job->output))
        return ps_fail(PS_EUSER, "bound: %s does not exist; run the job first (patchsweep run %s)", job->output, job->path);
    int rc = edges ? results_open_edges(r, job->output, 1, NULL) : results_open(r, job->output, 1, NULL);
    if (rc) return rc;
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)job_fingerprint(job, m->fingerprint));
    if (strcmp(r->job_fingerprint, want) != 0)
        return ps_fail(PS_EUSER, "bound: %s holds the results of a different job or model (fingerprint %s, this job %s)",
                       job->output, r->job_fingerprint, want);
    if (metric == 0) return PS_OK;
    results_close(r);
    const char *name = metric_name(job->metrics[metric]);
    return edges ? results_open_edges(r, job->output, 1, name) : results_open(r, job->output, 1, name);
}

/* Rank 0 checks, before anything is written: the file's shape against the plan and the exact
 * effects' dataset ... */
static int check_shape(const Results *r, const Job *job, const Plan *plan, int edges) {
    int present, N = edges ? plan->n_edges : plan->n_nodes;
    if (r->P != job->n_prompts || r->N != N || r->S != plan->n_positions)
        return ps_fail(PS_EUSER, "bound: %s holds %d prompts x %d %s x %d positions, the job %d x %d x %d", r->path, r->P, r->N,
                       edges ? "edges" : "nodes", r->S, job->n_prompts, N, plan->n_positions);
    return job->exact ? results_check_cells(r, "exact", &present) : PS_OK; /* read prompt by prompt, later */
}

/* ... and that every cell of the site has its ranking estimate. */
static int check_estimates(const Results *r, const Job *job, const Plan *plan, const BoundSpec *spec, int by, float *row) {
    int P = job->n_prompts, S = plan->n_positions, present, rc;
    size_t C = bound_cell_count(plan, spec->edges);
    const char *by_name = bound_ranker_name(spec->edges, by);
    for (int p = 0; p < P; p++) {
        rc = results_read_prompt(r, by_name, p, row, &present);
        if (rc) return rc;
        if (!present) return ps_fail(PS_EUSER, "bound: %s has no %s/%s dataset", r->path, r->group, by_name);
        for (size_t c = 0; c < C; c++) {
            if (!bound_has_cell(plan, job, spec->edges, spec->site, p, c) || !isnan(row[c])) continue;
            char name[96];
            if (spec->edges) edge_name(&plan->edges[c / S], name, sizeof name);
            else node_name(&plan->nodes[c / S], name, sizeof name);
            return ps_fail(PS_EUSER, "bound: %s: prompt %d has no %s estimate for %s at position %d yet; finish the job first (patchsweep run %s)",
                           r->path, p, by_name, name, plan_prompt_positions(plan, p)[c % S], job->path);
        }
    }
    return PS_OK;
}

/* "1st", "2nd", "3rd", "11th", "22nd", ... */
typedef struct {
    char text[32];
} Ordinal;

static Ordinal ordinal(int n) {
    Ordinal o;
    int teen = n % 100 >= 11 && n % 100 <= 13, last = n % 10;
    snprintf(o.text, sizeof o.text, "%d%s", n, teen ? "th" : last == 1 ? "st" : last == 2 ? "nd" : last == 3 ? "rd" : "th");
    return o;
}

/* Rank 0's side: writes each prompt's bound as it arrives, in prompt order, and says what it
 * found. */
typedef struct {
    BoundFile file;
    const Results *results;
    int has_exact;
    float *exact;        /* [C] the exact effects of the prompt being reported */
    const char *by;      /* the ranking estimator */
    int budget;          /* --verified */
    int verify_ties;     /* --ties verify */
    double theta_max, missed_max;
    long long passes, tied_cells;
    int covered, covered_sign, checked, tied_prompts, quiet;
} BoundReport;

/* The largest exact |effect| among the prompt's unverified cells (NaN: none, or no exact
 * effects in the file). */
static int largest_missed(BoundReport *rep, size_t C, int p, const PromptBound *b, double *missed) {
    *missed = NAN;
    if (!rep->has_exact) return PS_OK;
    int present, rc = results_read_prompt(rep->results, "exact", p, rep->exact, &present);
    for (size_t c = 0; c < C && !rc && present; c++)
        if (!isnan(b->ucb[c])) *missed = fmax(isnan(*missed) ? 0.0 : *missed, fabs(rep->exact[c]));
    return rc;
}

/* Whether a bound covers a largest missed |effect|. The exact effects are float32 in the file, so
 * the comparison is at that precision: a bound equal to a cell's own effect (a subset of that
 * cell alone, computed in double) must not miss it by the effect's rounding. */
static int covers(double bound, double missed) { return (float)missed <= (float)bound; }

static int report_prompt(BoundReport *rep, int K, int p, const PromptBound *b) {
    int rc = bound_file_write(&rep->file, p, b);
    const double *sum = b->summary;
    double missed;
    if (!rc) rc = largest_missed(rep, (size_t)b->n_bytes, p, b, &missed);
    if (rc) return rc;
    rep->theta_max = fmax(rep->theta_max, sum[BOUND_THETA]);
    rep->passes += (long long)K * (long long)sum[BOUND_SAMPLES];
    rep->tied_prompts += sum[BOUND_BOUNDARY_TIES] > 0, rep->tied_cells += (long long)sum[BOUND_BOUNDARY_TIES];
    if (!isnan(missed)) {
        rep->checked++, rep->missed_max = fmax(rep->missed_max, missed);
        rep->covered += covers(sum[BOUND_THETA], missed), rep->covered_sign += covers(sum[BOUND_THETA_SIGN], missed);
    }
    if (rep->quiet) return PS_OK;
    printf("prompt %d: %.0f cells, %.0f verified; %.0f unverified: every |effect| <= %.4g", p, sum[BOUND_CELLS],
           sum[BOUND_VERIFIED], sum[BOUND_UNVERIFIED], sum[BOUND_THETA]);
    if (!isnan(missed)) printf(" (largest exact |effect| among them: %.4g)", missed);
    printf("\n");
    if (sum[BOUND_BOUNDARY_TIES] > 0)
        printf("  %.0f cells tie at |%s| = %.4g across the %s place, and the ranking cannot choose among them: %s\n",
               sum[BOUND_BOUNDARY_TIES], rep->by, sum[BOUND_BOUNDARY_KEY], ordinal(rep->budget).text,
               rep->verify_ties ? "all verified (--ties verify)" : "all left to the bound (--ties verify verifies them)");
    if (sum[BOUND_UNBOUNDED] > 0)
        printf("  %.0f cell%s in, or out of, fewer than two subsets, so nothing bounds %s: raise --subsets or --inclusion\n",
               sum[BOUND_UNBOUNDED], sum[BOUND_UNBOUNDED] == 1 ? " was" : "s were", sum[BOUND_UNBOUNDED] == 1 ? "it" : "them");
    return PS_OK;
}

/* Message tags: MPI keeps the order of messages with one tag between two ranks, so constant
 * tags suffice (a tag per prompt would pass MPI_TAG_UB, as low as 32767, on long jobs). */
enum { TAG_ESTIMATES = 1, TAG_DOUBLES, TAG_BYTES };

/* Rank 0, at the start of a round: sends every other rank its prompt's ranking estimates (read
 * from the file one prompt at a time), then reads its own. After a failed read it still sends,
 * so that nobody waits forever; the failure is returned and nothing more is written. */
static int hand_out(const Results *r, const char *by, int first, int P, int size, size_t C, float *row, MPI_Comm comm) {
    int rc = PS_OK, present;
    for (int q = first + 1; q < first + size && q < P; q++) {
        int failed = results_read_prompt(r, by, q, row, &present);
        rc = rc ? rc : failed;
        mpi_send_long(row, C, MPI_FLOAT, q - first, TAG_ESTIMATES, comm, PS_MPI_PIECE);
    }
    int failed = results_read_prompt(r, by, first, row, &present);
    return rc ? rc : failed;
}

/* Rank 0, at the end of a round: each prompt's bound in prompt order (its own, then the others'
 * as they arrive), written and reported. After a failure it keeps receiving: the others are
 * sending. */
static int gather(BoundReport *rep, int K, int first, int P, int size, PromptBound *b, int rc,
                  MPI_Comm comm) {
    for (int q = first; q < first + size && q < P; q++) {
        if (q > first) {
            mpi_recv_long(b->doubles, b->n_doubles, MPI_DOUBLE, q - first, TAG_DOUBLES, comm, PS_MPI_PIECE);
            mpi_recv_long(b->bytes, b->n_bytes, MPI_UINT8_T, q - first, TAG_BYTES, comm, PS_MPI_PIECE);
        }
        if (!rc) rc = report_prompt(rep, K, q, b);
    }
    return rc;
}

/* The summary lines and the attributes of /bound, once every prompt is written. */
static void finish_report(BoundReport *rep, const Job *job, const BoundSpec *spec, const BoundRanker *ranker,
                          double seconds) {
    double confidence = spec->confidence, inclusion = spec->inclusion;
    int K = spec->n_subsets;
    double delta_sign = det_pow(1.0 - inclusion / 2.0, K); /* the sign-symmetric test's error bound */
    long n_verified = spec->n_verified_max, seed = (long)spec->seed;
    hid_t g = rep->file.group;
    h5_set_string_attr(g, "cells", spec->edges ? "edges" : "nodes"); /* the axis of [P, N, S]: /nodes or /edges */
    h5_set_string_attr(g, "site", spec->edges ? "edges" : site_name(spec->site));
    h5_set_string_attr(g, "ranked_by", bound_ranker_name(spec->edges, ranker->by));
    h5_set_string_attr(g, "ranked_by_reason", ranker->reason);
    for (int e = 0; e < BOUND_RANKERS; e++) { /* recall_atp, ... or recall_eap, ...: where measured */
        char name[32];
        snprintf(name, sizeof name, "recall_%s", bound_ranker_name(spec->edges, e));
        if (!isnan(ranker->recall[e])) h5_set_number_attr(g, name, H5T_NATIVE_DOUBLE, &ranker->recall[e]);
    }
    h5_set_string_attr(g, "ties", spec->verify_ties ? "verify" : "bound");
    h5_set_string_attr(g, "metric", metric_name(job->metrics[spec->metric]));
    h5_set_number_attr(g, "n_verified", H5T_NATIVE_LONG, &n_verified);
    h5_set_number_attr(g, "subsets", H5T_NATIVE_INT, &K);
    h5_set_number_attr(g, "inclusion", H5T_NATIVE_DOUBLE, &inclusion);
    h5_set_number_attr(g, "confidence", H5T_NATIVE_DOUBLE, &confidence);
    h5_set_number_attr(g, "seed", H5T_NATIVE_LONG, &seed);
    h5_set_number_attr(g, "forward_passes", H5T_NATIVE_LLONG, &rep->passes);
    h5_set_number_attr(g, "seconds", H5T_NATIVE_DOUBLE, &seconds);
    h5_set_number_attr(g, "delta_sign", H5T_NATIVE_DOUBLE, &delta_sign);
    if (rep->quiet) return;
    printf("largest bound over prompts: %.4g; %lld forward passes, %.1f s; written to %s:/bound\n", rep->theta_max,
           rep->passes, seconds, job->output);
    if (rep->checked)
        printf("check against the exact sweep: the bound held on %d of %d prompts (largest missed |effect| %.4g)\n",
               rep->covered, rep->checked, rep->missed_max);
    printf("sign-symmetric test: no unverified |effect| above its prompt's largest |subset effect| (theta_sign), "
           "error probability <= %.2g", delta_sign);
    if (rep->checked) printf("; held on %d of %d prompts", rep->covered_sign, rep->checked);
    printf("\n");
    if (rep->tied_prompts)
        printf("ties across the %s place: on %d prompt%s, %lld cells in all (/bound/boundary_ties), %s\n",
               ordinal(rep->budget).text, rep->tied_prompts, rep->tied_prompts == 1 ? "" : "s", rep->tied_cells,
               rep->verify_ties ? "all verified (--ties verify)" : "all left to the bound (--ties bound)");
}

/* The prompts go to the ranks in rounds of one each (prompt first + r to rank r). Rank 0 reads
 * a round's ranking estimates from the file and sends each rank its own prompt's alone; every
 * rank computes its prompt (drawing its subsets from the seed: they are never sent); rank 0
 * gathers the bounds and writes them in prompt order. A rank holds one prompt's values at a
 * time, and a prompt's bound does not depend on which rank computed it. */
static int run_bound(const Job *job, const Model *m, const Plan *plan, const BoundSpec *spec, const BoundOptions *o,
                     const BoundRanker *ranker, const Results *r, MPI_Comm comm) {
    const char *by = bound_ranker_name(spec->edges, ranker->by);
    int rank, size, P = job->n_prompts, K = spec->n_subsets;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    size_t C = bound_cell_count(plan, spec->edges);
    double t0 = now_seconds();
    BoundReport rep = {.results = r, .has_exact = job->exact, .by = by, .budget = spec->n_verified_max,
                       .verify_ties = spec->verify_ties, .quiet = o->quiet};
    int N = spec->edges ? plan->n_edges : plan->n_nodes;
    int rc = rank == 0 ? bound_file_create(&rep.file, r->file, job->output, P, K, N, plan->n_positions) : PS_OK;
    rc = mpi_agree(rc, comm); /* reported once, by mpi_agree */
    if (rc) {
        if (rank == 0) bound_file_close(&rep.file);
        return rc;
    }
    if (rank == 0 && !o->quiet)
        printf("%s: %s%s, metric %s, ranked by %s; %d prompts; top %d verified (ties across the boundary: %s), "
               "%d subsets each (inclusion %g), confidence %g; %d ranks\n",
               job->output, spec->edges ? "edges" : "site ", spec->edges ? "" : site_name(spec->site),
               metric_name(job->metrics[spec->metric]), by, P,
               spec->n_verified_max,
               spec->verify_ties ? "verify" : "bound", K, spec->inclusion,
               spec->confidence, size);
    if (rank == 0 && !o->quiet) printf("ranked by %s: %s\n", by, ranker->reason);
    BoundWork *work = bound_work_new(m, job, plan, spec);
    PromptBound b;
    prompt_bound_init(&b, C, K);
    float *estimates = alloc_floats(C);
    if (rank == 0) rep.exact = alloc_floats(C);
    for (int first = 0; first < P; first += size) {
        int mine = first + rank;
        if (rank == 0) {
            int failed = hand_out(r, by, first, P, size, C, estimates, comm);
            rc = rc ? rc : failed;
        } else if (mine < P) {
            mpi_recv_long(estimates, C, MPI_FLOAT, 0, TAG_ESTIMATES, comm, PS_MPI_PIECE);
        }
        if (mine < P) bound_prompt(work, mine, estimates, &b);
        if (rank == 0) {
            rc = gather(&rep, K, first, P, size, &b, rc, comm);
        } else if (mine < P) {
            mpi_send_long(b.doubles, b.n_doubles, MPI_DOUBLE, 0, TAG_DOUBLES, comm, PS_MPI_PIECE);
            mpi_send_long(b.bytes, b.n_bytes, MPI_UINT8_T, 0, TAG_BYTES, comm, PS_MPI_PIECE);
        }
    }
    if (rank == 0 && !rc) finish_report(&rep, job, spec, ranker, now_seconds() - t0);
    if (rank == 0) bound_file_close(&rep.file);
    free(estimates), free(rep.exact);
    prompt_bound_free(&b);
    bound_work_free(work);
    return mpi_agree(rc, comm);
}

int cmd_bound(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank;
    MPI_Comm_rank(comm, &rank);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    BoundOptions o;
    Job job;
    Model m;
    Results results;
    memset(&job, 0, sizeof job);
    memset(&results, 0, sizeof results);
    results.file = -1;
    SharedWeights shared = {MPI_COMM_NULL, MPI_WIN_NULL};
    Site site = SITE_Z;
    BoundRanker ranker;
    memset(&ranker, 0, sizeof ranker);
    int given = -1, metric = 0, edges = 0, parsed = 0, loaded = 0, rc = mpi_agree(parse_options(argc, argv, &o), comm);
    if (!rc) rc = mpi_agree(job_parse_file(&job, o.job), comm), parsed = 1; /* job_free is safe after a failure */
    if (!rc) rc = model_load_shared(&m, &job, comm, &shared), loaded = 1;
    if (!rc) rc = mpi_agree(job_check(&job, &m), comm);
    if (!rc) rc = mpi_agree(choose(&job, &o, &edges, &site, &given), comm);
    if (!rc) rc = mpi_agree(choose_metric(&job, o.metric, &metric), comm);
    Plan plan;
    memset(&plan, 0, sizeof plan);
    if (!rc) plan_build(&plan, &job, &m.cfg);
    int budget = (int)(o.verified < 1 << 30 ? o.verified : 1 << 30);
    BoundSpec spec = {edges, site, metric, budget, (int)o.subsets,
                      o.ties && strcmp(o.ties, "verify") == 0, o.inclusion, o.confidence, (uint64_t)o.seed};
    if (!rc) { /* only rank 0 touches the file; the others get each prompt's estimates from it */
        int status = rank == 0 ? open_results(&job, &m, edges, metric, &results) : PS_OK;
        if (!status && rank == 0) status = check_shape(&results, &job, &plan, edges);
        if (!status && rank == 0) status = bound_choose_ranker(&results, &job, &plan, edges, site, budget, given, &ranker);
        if (!status && rank == 0) {
            float *row = alloc_floats(bound_cell_count(&plan, edges));
            status = check_estimates(&results, &job, &plan, &spec, ranker.by, row);
            free(row);
        }
        rc = mpi_agree(status, comm);
        int by = ranker.by; /* for the record: the ranks other than 0 rank what they are sent */
        if (!rc) MPI_Bcast(&by, 1, MPI_INT, 0, comm);
        ranker.by = by;
    }
    if (!rc) rc = run_bound(&job, &m, &plan, &spec, &o, &ranker, &results, comm);
    int closed = results.file < 0 || H5Fflush(results.file, H5F_SCOPE_GLOBAL) >= 0;
    results_close(&results);
    if (!rc) rc = mpi_agree(closed ? PS_OK : ps_fail(PS_EUSER, "bound: writing %s failed (disk full?)", job.output), comm);
    if (plan.nodes) plan_free(&plan);
    if (parsed) job_free(&job);
    if (loaded) model_free_shared(&m, &shared);
    MPI_Finalize();
    return rc;
}
