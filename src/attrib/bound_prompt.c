/* The bound command's work on one prompt (bound.h): rank the site's cells, patch random subsets
 * of the unverified ones jointly, and turn the subset effects into bounds (attrib.h). */
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
    int *cell_of, *rank_to_index; /* [C] the site's cells in cell order; the ranking as indices into it */
    double *key;       /* [C] |estimate| of each of the site's cells */
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
    w->cell_of = xmalloc(sizeof(int) * C);
    w->rank_to_index = xmalloc(sizeof(int) * C);
    w->key = xmalloc(sizeof(double) * C);
    w->patches = xmalloc(sizeof(Patch) * C);
    w->in_u = xmalloc(C * (size_t)spec->n_subsets + 1);
    w->cells = xmalloc(sizeof(CellBound) * C);
    return w;
}

void bound_work_free(BoundWork *w) {
    if (!w) return;
    job_runs_free(&w->jr);
    engine_free(w->engine);
    free(w->order), free(w->cell_of), free(w->rank_to_index), free(w->key);
    free(w->patches), free(w->in_u), free(w->cells);
    free(w);
}

void bound_prompt(BoundWork *w, int p, const float *estimates, PromptBound *out) {
    const Plan *plan = w->plan;
    const BoundSpec *spec = &w->spec;
    int S = plan->n_positions, C = plan->n_nodes * S, K = spec->n_subsets, T = w->job->prompts[p].T, n_cells = 0;
    const int *positions = plan_prompt_positions(plan, p);
    /* the site's cells by |estimate|, largest first, ties in cell order */
    for (int c = 0; c < C; c++)
        if (plan->nodes[c / S].site == spec->site && positions[c % S] < T) w->cell_of[n_cells++] = c;
    for (int i = 0; i < n_cells; i++) w->key[i] = fabs(estimates[w->cell_of[i]]);
    order_by_key(w->key, n_cells, w->rank_to_index);
    for (int i = 0; i < n_cells; i++) w->order[i] = w->cell_of[w->rank_to_index[i]];
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
            w->patches[n++] = (Patch){node->site, first, last, node->index, positions[c % S], NULL};
        }
        out->subset_effect[k] = U ? engine_joint_effect(w->engine, &runs, w->patches, n, 0) : 0.0;
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

