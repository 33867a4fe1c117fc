/* The bound command's work on one prompt, and its /bound group (bound.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/bound.h"
#include "patchsweep/core.h"

void prompt_bound_init(PromptBound *b, int n_cells, int n_subsets) {
    size_t C = (size_t)n_cells, K = (size_t)n_subsets;
    b->n_doubles = N_BOUND_SUMMARY + K + 3 * C;
    b->n_bytes = C + K * C;
    b->doubles = alloc_doubles(b->n_doubles);
    b->bytes = xcalloc(b->n_bytes + 1, 1);
    b->summary = b->doubles;
    b->subset_effect = b->summary + N_BOUND_SUMMARY;
    b->estimate = b->subset_effect + K;
    b->se = b->estimate + C;
    b->ucb = b->se + C;
    b->verified = b->bytes;
    b->in_subset = b->verified + C;
}

void prompt_bound_free(PromptBound *b) {
    free(b->doubles);
    free(b->bytes);
}

struct BoundWork {
    const Model *m;
    const Job *job;
    const Plan *plan;
    BoundSpec spec;
    JobRuns jr;
    Engine *engine;
    int *order;        /* [C] the site's cells, ranked */
    Patch *patches;    /* [C] one subset's patches */
    uint8_t *in_u;     /* [K, |U|] subset masks over the unverified cells in rank order */
    CellBound *cells;  /* [C] */
};

BoundWork *bound_work_new(const Model *m, const Job *job, const Plan *plan, const BoundSpec *spec) {
    BoundWork *w = xcalloc(1, sizeof *w);
    size_t C = (size_t)plan->n_nodes * plan->n_positions;
    w->m = m, w->job = job, w->plan = plan, w->spec = *spec;
    job_runs_init(&w->jr, m, job);
    w->engine = engine_new(m, plan->max_T, 1);
    w->order = xmalloc(sizeof(int) * C);
    w->patches = xmalloc(sizeof(Patch) * C);
    w->in_u = xmalloc(C * (size_t)spec->n_subsets + 1);
    w->cells = xmalloc(sizeof(CellBound) * C);
    return w;
}

void bound_work_free(BoundWork *w) {
    if (!w) return;
    job_runs_free(&w->jr);
    engine_free(w->engine);
    free(w->order), free(w->patches), free(w->in_u), free(w->cells);
    free(w);
}

static const float *sort_estimate; /* one prompt's [N, S], for the comparison below */
/* By |estimate|, largest first; ties in cell order, so the ranking is reproducible. */
static int by_estimate(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    float ex = fabsf(sort_estimate[x]), ey = fabsf(sort_estimate[y]);
    return ex > ey ? -1 : ex < ey ? 1 : (x > y) - (x < y);
}

void bound_prompt(BoundWork *w, int p, const float *estimates, PromptBound *out) {
    const Plan *plan = w->plan;
    const BoundSpec *spec = &w->spec;
    int S = plan->n_positions, C = plan->n_nodes * S, K = spec->n_subsets, T = w->job->prompts[p].T, n_cells = 0;
    for (int c = 0; c < C; c++)
        if (plan->nodes[c / S].site == spec->site && plan->positions[c % S] < T) w->order[n_cells++] = c;
    sort_estimate = estimates;
    qsort(w->order, (size_t)n_cells, sizeof(int), by_estimate);
    int n_verified = n_cells < spec->n_verified_max ? n_cells : spec->n_verified_max, U = n_cells - n_verified;
    const int *unverified = w->order + n_verified;

    /* K random subsets of the unverified cells (docs/methods.md: one uniform per cell in rank
     * order from the stream (seed, p, k)), each patched jointly */
    PromptRuns runs;
    prompt_runs_build(&runs, w->m, w->job, &w->jr, p);
    for (int k = 0; k < K; k++) {
        Rng rng;
        rng_seed(&rng, spec->seed, (uint64_t)p, (uint64_t)k);
        int n = 0;
        for (int u = 0; u < U; u++) {
            uint8_t in = rng_uniform(&rng) < spec->inclusion;
            w->in_u[(size_t)k * U + u] = in;
            if (!in) continue;
            int c = unverified[u];
            const Node *node = &plan->nodes[c / S];
            int first, last;
            job_window(w->job, node->layer, w->m->cfg.n_layer, &first, &last);
            w->patches[n++] = (Patch){node->site, first, last, node->index, plan->positions[c % S], NULL};
        }
        out->subset_effect[k] = U ? engine_joint_effect(w->engine, &runs, w->patches, n) : 0.0;
    }
    int samples = runs.n_samples;
    prompt_runs_free(&runs);

    double z = normal_upper_quantile((1.0 - spec->confidence) / (2.0 * (U > 0 ? U : 1))), theta = 0.0;
    bound_cells(out->subset_effect, w->in_u, K, U, z, w->cells);
    memset(out->bytes, 0, out->n_bytes);
    for (int c = 0; c < C; c++) out->estimate[c] = out->se[c] = out->ucb[c] = NAN;
    for (int i = 0; i < n_verified; i++) out->verified[w->order[i]] = 1;
    int unbounded = 0;
    for (int u = 0; u < U; u++) {
        int c = unverified[u];
        for (int k = 0; k < K; k++) out->in_subset[(size_t)k * C + c] = w->in_u[(size_t)k * U + u];
        out->estimate[c] = w->cells[u].estimate, out->se[c] = w->cells[u].se, out->ucb[c] = w->cells[u].ucb;
        theta = fmax(theta, w->cells[u].ucb);
        unbounded += isinf(w->cells[u].ucb);
    }
    double theta_sign = 0.0;
    for (int k = 0; k < K && U; k++) theta_sign = fmax(theta_sign, fabs(out->subset_effect[k]));
    double *sum = out->summary;
    sum[BOUND_THETA] = theta, sum[BOUND_THETA_SIGN] = theta_sign, sum[BOUND_CELLS] = n_cells, sum[BOUND_VERIFIED] = n_verified;
    sum[BOUND_UNVERIFIED] = U, sum[BOUND_UNBOUNDED] = unbounded, sum[BOUND_SAMPLES] = U ? samples : 0;
}

/* ---- the /bound group ------------------------------------------------------------------------- */
static hid_t create_dataset(hid_t group, const char *name, hid_t type, int rank, const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[4];
    for (int i = 0; i < rank; i++) chunk[i] = i == 0 ? 1 : dims[i]; /* one prompt per chunk */
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_deflate(dcpl, 4); /* subset masks are mostly zeros */
    hid_t d = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl), H5Sclose(space);
    return d;
}

void bound_file_create(BoundFile *bf, hid_t f, int P, int K, int N, int S) {
    if (H5Lexists(f, "/bound", H5P_DEFAULT) > 0) H5Ldelete(f, "/bound", H5P_DEFAULT); /* a rerun replaces it */
    bf->group = H5Gcreate2(f, "/bound", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t pk[2] = {(hsize_t)P, (hsize_t)K}, pkns[4] = {(hsize_t)P, (hsize_t)K, (hsize_t)N, (hsize_t)S};
    hsize_t pns[3] = {(hsize_t)P, (hsize_t)N, (hsize_t)S}, p1[1] = {(hsize_t)P};
    bf->subset_effect = create_dataset(bf->group, "subset_effect", H5T_NATIVE_DOUBLE, 2, pk);
    bf->in_subset = create_dataset(bf->group, "in_subset", H5T_NATIVE_UINT8, 4, pkns);
    bf->verified = create_dataset(bf->group, "verified", H5T_NATIVE_UINT8, 3, pns);
    bf->estimate = create_dataset(bf->group, "estimate", H5T_NATIVE_DOUBLE, 3, pns);
    bf->se = create_dataset(bf->group, "se", H5T_NATIVE_DOUBLE, 3, pns);
    bf->ucb = create_dataset(bf->group, "ucb", H5T_NATIVE_DOUBLE, 3, pns);
    bf->theta = create_dataset(bf->group, "theta", H5T_NATIVE_DOUBLE, 1, p1);
    bf->theta_sign = create_dataset(bf->group, "theta_sign", H5T_NATIVE_DOUBLE, 1, p1);
}

/* Writes one prompt's row (the slab [p, ...]) of a dataset. */
static void write_row(hid_t d, hid_t type, int p, const void *data) {
    hid_t space = H5Dget_space(d);
    hsize_t dims[4], start[4] = {0, 0, 0, 0};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    start[0] = (hsize_t)p, dims[0] = 1;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t mem = H5Screate_simple(rank, dims, NULL);
    H5Dwrite(d, type, mem, space, H5P_DEFAULT, data);
    H5Sclose(mem), H5Sclose(space);
}

void bound_file_write(BoundFile *bf, int p, const PromptBound *b) {
    write_row(bf->subset_effect, H5T_NATIVE_DOUBLE, p, b->subset_effect);
    write_row(bf->in_subset, H5T_NATIVE_UINT8, p, b->in_subset);
    write_row(bf->verified, H5T_NATIVE_UINT8, p, b->verified);
    write_row(bf->estimate, H5T_NATIVE_DOUBLE, p, b->estimate);
    write_row(bf->se, H5T_NATIVE_DOUBLE, p, b->se);
    write_row(bf->ucb, H5T_NATIVE_DOUBLE, p, b->ucb);
    write_row(bf->theta, H5T_NATIVE_DOUBLE, p, &b->summary[BOUND_THETA]);
    write_row(bf->theta_sign, H5T_NATIVE_DOUBLE, p, &b->summary[BOUND_THETA_SIGN]);
}

void bound_file_close(BoundFile *bf) {
    hid_t ids[] = {bf->subset_effect, bf->in_subset, bf->verified, bf->estimate, bf->se, bf->ucb, bf->theta, bf->theta_sign,
                   bf->group};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) H5Oclose(ids[i]);
}
