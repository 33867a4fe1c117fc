/* patchsweep bound JOB.json [options]: after a job has run, bound what its gradient ranking
 * missed (docs/methods.md, "Bounding what the ranking missed"). For each prompt, the cells of one
 * site (node x position) are ranked by an estimator; the top --verified are taken as verified;
 * the rest are patched jointly in --subsets random subsets (each cell in with probability
 * --inclusion), and the subset effects give, for every unverified cell, an upper confidence
 * bound on its |exact effect|. Written to the job's results file under /bound (docs/results.md).
 *
 * One process, one full forward pass per subset and noise sample: this is a diagnostic on top
 * of a finished sweep, far cheaper than the sweep. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/store.h"

static const char usage[] =
    "usage: patchsweep bound JOB.json [--site SITE] [--by atp_star|atp_qk|atp] [--verified K] [--subsets N] "
    "[--inclusion P] [--confidence C] [--seed S] [--quiet]";

typedef struct {
    const char *job, *site, *by;
    long verified, subsets, seed;
    double inclusion, confidence;
    int quiet;
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
    static const char *const flags[] = {"--site", "--by", "--verified", "--subsets", "--seed", "--inclusion", "--confidence"};
    int seen[7] = {0}, rc = PS_OK;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (a[0] != '-') {
            if (o->job) return ps_fail(PS_EUSER, "bound: unexpected argument \"%s\"; %s", a, usage);
            o->job = a;
            continue;
        }
        int f = 0;
        while (f < 7 && strcmp(a, flags[f]) != 0) f++;
        if (f == 7) return ps_fail(PS_EUSER, "bound: unknown option \"%s\"; %s", a, usage);
        if (seen[f]++) return ps_fail(PS_EUSER, "bound: %s is given twice", a);
        if (i + 1 >= argc) return ps_fail(PS_EUSER, "bound: %s needs a value; %s", a, usage);
        const char *value = argv[++i];
        switch (f) {
        case 0: o->site = value; break;
        case 1: o->by = value; break;
        case 2: rc = parse_long(a, value, 0, &o->verified); break;
        case 3: rc = parse_long(a, value, 4, &o->subsets); break;
        case 4: rc = parse_long(a, value, 0, &o->seed); break;
        case 5: rc = parse_fraction(a, value, &o->inclusion); break;
        default: rc = parse_fraction(a, value, &o->confidence); break;
        }
    }
    if (!rc && !o->job) rc = ps_fail(PS_EUSER, "bound: %s", usage);
    return rc;
}

/* The site and the ranking estimator, from the options or the job's only choice. */
static int choose(const Job *job, const BoundOptions *o, Site *site, Estimate *by) {
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
    if (o->by) {
        for (int e = 0; e < N_ESTIMATES; e++)
            if (strcmp(o->by, estimate_name(e)) == 0) {
                *by = e;
                if (!job->estimates[e])
                    return ps_fail(PS_EUSER, "bound: --by %s: the job %s does not compute that estimate", o->by, job->path);
                return PS_OK;
            }
        return ps_fail(PS_EUSER, "bound: --by \"%s\" is not an estimator (atp, atp_qk, atp_star)", o->by);
    }
    for (int e = N_ESTIMATES - 1; e >= 0; e--) /* the best one the job computed */
        if (job->estimates[e]) {
            *by = e;
            return PS_OK;
        }
    return ps_fail(PS_EUSER, "bound: the job %s computes no estimates to rank by (add \"estimates\" and run it)", job->path);
}

/* Opens the job's results file for writing after checking it holds this job. */
static int open_results(const Job *job, const Model *m, hid_t *out) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!file_exists(job->output))
        return ps_fail(PS_EUSER, "bound: %s does not exist; run the job first (patchsweep run %s)", job->output, job->path);
    hid_t f = H5Fis_hdf5(job->output) > 0 ? H5Fopen(job->output, H5F_ACC_RDWR, H5P_DEFAULT) : -1;
    char *format = f >= 0 ? h5_string_attr(f, "format") : NULL, *stored = f >= 0 ? h5_string_attr(f, "job_fingerprint") : NULL;
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)job_fingerprint(job, m->fingerprint));
    int rc = PS_OK;
    if (!format || strcmp(format, "patchsweep") != 0)
        rc = ps_fail(PS_EUSER, "bound: %s is not a patchsweep results file", job->output);
    else if (!stored || strcmp(stored, want) != 0)
        rc = ps_fail(PS_EUSER, "bound: %s holds the results of a different job or model (fingerprint %s, this job %s)",
                     job->output, stored ? stored : "none", want);
    free(format), free(stored);
    if (rc && f >= 0) H5Fclose(f);
    *out = f;
    return rc;
}

static const float *sort_estimate; /* one prompt's [N, S] */
/* By |estimate|, largest first; ties in cell order, so the ranking is reproducible. */
static int by_estimate(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    float ex = fabsf(sort_estimate[x]), ey = fabsf(sort_estimate[y]);
    return ex > ey ? -1 : ex < ey ? 1 : (x > y) - (x < y);
}

static hid_t create_bound_dataset(hid_t group, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++) chunk[i] = i == 0 ? 1 : dims[i]; /* one prompt per chunk */
    if (dims[0] > 0) {
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_deflate(dcpl, 4); /* subset masks are mostly zeros */
    }
    hid_t d = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl), H5Sclose(space);
    return d;
}

/* Writes one prompt's row (the slab [p, ...]) of a dataset. */
static void write_prompt_row(hid_t d, hid_t type, int p, const void *data) {
    hid_t space = H5Dget_space(d);
    hsize_t dims[4], start[4] = {0, 0, 0, 0};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    start[0] = (hsize_t)p, dims[0] = 1;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t mem = H5Screate_simple(rank, dims, NULL);
    H5Dwrite(d, type, mem, space, H5P_DEFAULT, data);
    H5Sclose(mem), H5Sclose(space);
}

typedef struct {
    hid_t group, subset_effect, in_subset, verified, estimate, se, ucb, theta;
} BoundFile;

static void bound_file_create(BoundFile *bf, hid_t f, int P, int K, int N, int S) {
    if (H5Lexists(f, "/bound", H5P_DEFAULT) > 0) H5Ldelete(f, "/bound", H5P_DEFAULT); /* a rerun replaces it */
    bf->group = H5Gcreate2(f, "/bound", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t pk[2] = {(hsize_t)P, (hsize_t)K}, pkns[4] = {(hsize_t)P, (hsize_t)K, (hsize_t)N, (hsize_t)S};
    hsize_t pns[3] = {(hsize_t)P, (hsize_t)N, (hsize_t)S}, p1[1] = {(hsize_t)P};
    bf->subset_effect = create_bound_dataset(bf->group, "subset_effect", H5T_NATIVE_DOUBLE, 2, pk);
    bf->in_subset = create_bound_dataset(bf->group, "in_subset", H5T_NATIVE_UINT8, 4, pkns);
    bf->verified = create_bound_dataset(bf->group, "verified", H5T_NATIVE_UINT8, 3, pns);
    bf->estimate = create_bound_dataset(bf->group, "estimate", H5T_NATIVE_DOUBLE, 3, pns);
    bf->se = create_bound_dataset(bf->group, "se", H5T_NATIVE_DOUBLE, 3, pns);
    bf->ucb = create_bound_dataset(bf->group, "ucb", H5T_NATIVE_DOUBLE, 3, pns);
    bf->theta = create_bound_dataset(bf->group, "theta", H5T_NATIVE_DOUBLE, 1, p1);
}

static void bound_file_close(BoundFile *bf) {
    hid_t ids[] = {bf->subset_effect, bf->in_subset, bf->verified, bf->estimate, bf->se, bf->ucb, bf->theta, bf->group};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) H5Oclose(ids[i]);
}

int cmd_bound(int argc, char **argv) {
    BoundOptions o;
    Job job;
    Model m;
    Site site = SITE_Z;
    Estimate by = EST_ATP_STAR;
    int rc = parse_options(argc, argv, &o);
    if (rc) return report_error(rc);
    if ((rc = job_parse_file(&job, o.job))) return report_error(rc);
    if ((rc = model_load(&m, job.model_dir))) {
        job_free(&job);
        return report_error(rc);
    }
    hid_t f = -1;
    if (!rc) rc = job_check(&job, &m);
    if (!rc) rc = choose(&job, &o, &site, &by);
    if (!rc) rc = open_results(&job, &m, &f);
    if (rc) {
        job_free(&job), model_free(&m);
        return report_error(rc);
    }

    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    int P = job.n_prompts, N = plan.n_nodes, S = plan.n_positions, K = (int)o.subsets;
    size_t cells = (size_t)N * S;
    char dset[64];
    snprintf(dset, sizeof dset, "/effects/%s", estimate_name(by));
    hsize_t dims[3];
    int rank;
    float *estimates = h5_read_all(f, dset, H5T_NATIVE_FLOAT, sizeof(float), dims, &rank);
    float *exact = job.exact ? h5_read_all(f, "/effects/exact", H5T_NATIVE_FLOAT, sizeof(float), dims, &rank) : NULL;
    /* Every cell of the site must have its estimate: the ranking is over all of them. */
    for (int p = 0; p < P && !rc && estimates; p++)
        for (size_t c = 0; c < cells && !rc; c++) {
            const Node *node = &plan.nodes[c / S];
            int pos = plan.positions[c % S];
            if (node->site != site || pos >= job.prompts[p].T || !isnan(estimates[(size_t)p * cells + c])) continue;
            char name[64];
            node_name(node, name, sizeof name);
            rc = ps_fail(PS_EUSER, "bound: %s: prompt %d has no %s estimate for %s at position %d yet; finish the job first (patchsweep run %s)",
                         job.output, p, estimate_name(by), name, pos, job.path);
        }
    if (!estimates) rc = ps_fail(PS_EUSER, "bound: %s has no %s dataset", job.output, dset);
    if (rc) {
        free(estimates), free(exact), plan_free(&plan), H5Fclose(f), job_free(&job), model_free(&m);
        return report_error(rc);
    }

    double t0 = now_seconds();
    JobRuns jr;
    job_runs_init(&jr, &m, &job);
    Engine *engine = engine_new(&m, plan.max_T, 1);
    BoundFile bf;
    bound_file_create(&bf, f, P, K, N, S);
    int *order = xmalloc(sizeof(int) * cells);
    Patch *patches = xmalloc(sizeof(Patch) * cells);
    uint8_t *mask_u = xmalloc(cells * (size_t)K + 1), *mask = xmalloc(cells * (size_t)K + 1), *verified = xmalloc(cells);
    double *subset_effect = xmalloc(sizeof(double) * (size_t)K), *row[3];
    for (int i = 0; i < 3; i++) row[i] = xmalloc(sizeof(double) * cells);
    CellBound *cb = xmalloc(sizeof(CellBound) * cells);
    double theta_max = 0.0, missed_max = 0.0, z = 0.0;
    long long passes = 0;
    int covered = 0, checked = 0;
    if (!o.quiet)
        printf("%s: site %s ranked by %s; %d prompts; top %ld verified, %d subsets each (inclusion %g), confidence %g\n",
               job.output, site_name(site), estimate_name(by), P, o.verified, K, o.inclusion, o.confidence);
    for (int p = 0; p < P; p++) {
        int T = job.prompts[p].T, n_cells = 0;
        sort_estimate = estimates + (size_t)p * cells;
        for (size_t c = 0; c < cells; c++)
            if (plan.nodes[c / S].site == site && plan.positions[c % S] < T) order[n_cells++] = (int)c;
        qsort(order, (size_t)n_cells, sizeof(int), by_estimate);
        int n_verified = n_cells < o.verified ? n_cells : (int)o.verified, U = n_cells - n_verified;
        const int *unverified = order + n_verified;
        memset(verified, 0, cells);
        for (int i = 0; i < n_verified; i++) verified[order[i]] = 1;

        /* K random subsets of the unverified cells, each patched jointly */
        PromptRuns runs;
        prompt_runs_build(&runs, &m, &job, &jr, p);
        for (int k = 0; k < K; k++) {
            Rng rng;
            rng_seed(&rng, (uint64_t)o.seed, (uint64_t)p, (uint64_t)k);
            int n = 0;
            for (int u = 0; u < U; u++) {
                int c = unverified[u];
                mask_u[(size_t)k * U + u] = rng_uniform(&rng) < o.inclusion;
                if (!mask_u[(size_t)k * U + u]) continue;
                const Node *node = &plan.nodes[c / S];
                int last = node->layer + job.window - 1 < m.cfg.n_layer - 1 ? node->layer + job.window - 1 : m.cfg.n_layer - 1;
                patches[n++] = (Patch){node->site, node->layer, last, node->index, plan.positions[c % S], NULL};
            }
            subset_effect[k] = U ? engine_joint_effect(engine, &runs, patches, n) : 0.0;
            passes += U ? runs.n_samples : 0;
        }
        prompt_runs_free(&runs);

        z = normal_upper_quantile((1.0 - o.confidence) / (2.0 * (U > 0 ? U : 1)));
        bound_cells(subset_effect, mask_u, K, U, z, cb);
        double theta = 0.0, missed = 0.0;
        int unbounded = 0;
        memset(mask, 0, cells * (size_t)K);
        for (size_t c = 0; c < cells; c++) row[0][c] = row[1][c] = row[2][c] = NAN;
        for (int u = 0; u < U; u++) {
            int c = unverified[u];
            for (int k = 0; k < K; k++) mask[(size_t)k * cells + c] = mask_u[(size_t)k * U + u];
            row[0][c] = cb[u].estimate, row[1][c] = cb[u].se, row[2][c] = cb[u].ucb;
            theta = cb[u].ucb > theta ? cb[u].ucb : theta;
            unbounded += isinf(cb[u].ucb);
            if (exact) missed = fmax(missed, fabs(exact[(size_t)p * cells + c]));
        }
        write_prompt_row(bf.subset_effect, H5T_NATIVE_DOUBLE, p, subset_effect);
        write_prompt_row(bf.in_subset, H5T_NATIVE_UINT8, p, mask);
        write_prompt_row(bf.verified, H5T_NATIVE_UINT8, p, verified);
        write_prompt_row(bf.estimate, H5T_NATIVE_DOUBLE, p, row[0]);
        write_prompt_row(bf.se, H5T_NATIVE_DOUBLE, p, row[1]);
        write_prompt_row(bf.ucb, H5T_NATIVE_DOUBLE, p, row[2]);
        write_prompt_row(bf.theta, H5T_NATIVE_DOUBLE, p, &theta);
        theta_max = fmax(theta_max, theta);
        if (exact && !isnan(missed)) checked++, covered += missed <= theta, missed_max = fmax(missed_max, missed);
        if (!o.quiet) {
            printf("prompt %d: %d cells, %d verified; %d unverified: every |effect| <= %.4g", p, n_cells, n_verified, U, theta);
            if (exact) printf(" (largest exact |effect| among them: %.4g)", missed);
            printf("\n");
            if (unbounded)
                printf("  %d cells were in, or out of, fewer than two subsets, so nothing bounds them: raise --subsets or --inclusion\n",
                       unbounded);
        }
    }
    double seconds = now_seconds() - t0, confidence = o.confidence, inclusion = o.inclusion;
    long verified_k = o.verified, seed = o.seed;
    h5_set_string_attr(bf.group, "site", site_name(site));
    h5_set_string_attr(bf.group, "ranked_by", estimate_name(by));
    h5_set_number_attr(bf.group, "n_verified", H5T_NATIVE_LONG, &verified_k);
    h5_set_number_attr(bf.group, "subsets", H5T_NATIVE_INT, &K);
    h5_set_number_attr(bf.group, "inclusion", H5T_NATIVE_DOUBLE, &inclusion);
    h5_set_number_attr(bf.group, "confidence", H5T_NATIVE_DOUBLE, &confidence);
    h5_set_number_attr(bf.group, "seed", H5T_NATIVE_LONG, &seed);
    h5_set_number_attr(bf.group, "forward_passes", H5T_NATIVE_LLONG, &passes);
    h5_set_number_attr(bf.group, "seconds", H5T_NATIVE_DOUBLE, &seconds);
    bound_file_close(&bf);
    if (H5Fclose(f) < 0) rc = ps_fail(PS_EINTERNAL, "bound: writing %s failed", job.output);
    if (!o.quiet && !rc) {
        printf("largest bound over prompts: %.4g; %lld forward passes, %.1f s; written to %s:/bound\n", theta_max, passes,
               seconds, job.output);
        if (checked)
            printf("check against the exact sweep: the bound held on %d of %d prompts (largest missed |effect| %.4g)\n",
                   covered, checked, missed_max);
    }
    free(order), free(patches), free(mask_u), free(mask), free(verified), free(subset_effect), free(cb);
    for (int i = 0; i < 3; i++) free(row[i]);
    free(estimates), free(exact);
    engine_free(engine);
    job_runs_free(&jr);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    return rc ? report_error(rc) : 0;
}
