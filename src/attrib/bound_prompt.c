/* The bound command's work on one prompt (bound.h): rank the site's cells (or the edges' cells),
 * patch random subsets of the unverified ones jointly, and turn the subset effects into bounds
 * (attrib.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/bound.h"
#include "patchsweep/core.h"

void prompt_bound_init(PromptBound *b, size_t n_cells, int n_subsets) {
    size_t C = n_cells, K = (size_t)n_subsets;
    b->n_doubles = N_BOUND_SUMMARY + K + 3 * C;
    b->n_bytes = C;
    b->doubles = alloc_doubles(b->n_doubles);
    b->bytes = xcalloc(b->n_bytes + 1, 1);
    b->summary = b->doubles;
    b->subset_effect = b->summary + N_BOUND_SUMMARY;
    b->estimate = b->subset_effect + K;
    b->se = b->estimate + C;
    b->ucb = b->se + C;
    b->verified = b->bytes;
}

void prompt_bound_free(PromptBound *b) {
    free(b->doubles);
    free(b->bytes);
}

size_t bound_cell_count(const Plan *plan, int edges) {
    return (size_t)(edges ? plan->n_edges : plan->n_nodes) * plan->n_positions;
}

int bound_has_cell(const Plan *plan, const Job *job, int edges, Site site, int p, size_t c) {
    int S = plan->n_positions;
    if (!edges && plan->nodes[c / S].site != site) return 0;
    return plan_prompt_positions(plan, p)[c % S] < job->prompts[p].T; /* JOB_NO_POSITION too */
}

struct BoundWork {
    const Model *m;
    const Job *job;
    const Plan *plan;
    BoundSpec spec;
    JobRuns jr;
    Engine *engine;    /* nodes */
    EdgeJoint *joint;  /* edges */
    EdgeCell *edge_cells; /* [C]: one subset's edge cells */
    int *order;        /* [C] the site's cells, ranked */
    int *cell_of, *rank_to_index; /* [C] the site's cells in cell order; the ranking as indices into it */
    double *key;       /* [C] |estimate| of each of the site's cells */
    uint8_t *in;       /* [C] one subset's membership over the unverified cells, in rank order */
    Patch *patches;    /* one subset's patches (grown to the largest subset) */
    int patch_cap;
    CellBound *cells;  /* [C] */
};

BoundWork *bound_work_new(const Model *m, const Job *job, const Plan *plan, const BoundSpec *spec) {
    BoundWork *w = xcalloc(1, sizeof *w);
    size_t C = bound_cell_count(plan, spec->edges);
    w->m = m, w->job = job, w->plan = plan, w->spec = *spec;
    job_runs_init(&w->jr, m, job);
    if (spec->edges) {
        w->joint = edge_joint_new(m, plan->max_T);
        w->edge_cells = xmalloc(sizeof(EdgeCell) * C + 1);
    } else {
        w->engine = engine_new(m, plan->max_T, 1);
    }
    w->order = xmalloc(sizeof(int) * C);
    w->cell_of = xmalloc(sizeof(int) * C);
    w->rank_to_index = xmalloc(sizeof(int) * C);
    w->key = xmalloc(sizeof(double) * C);
    w->in = xmalloc(C + 1);
    w->cells = xmalloc(sizeof(CellBound) * C);
    return w;
}

void bound_work_free(BoundWork *w) {
    if (!w) return;
    job_runs_free(&w->jr);
    engine_free(w->engine);
    edge_joint_free(w->joint);
    free(w->edge_cells);
    free(w->order), free(w->cell_of), free(w->rank_to_index), free(w->key);
    free(w->in), free(w->patches), free(w->cells);
    free(w);
}

/* The subsets of one prompt, as bound_cells asks for them. */
typedef struct {
    const BoundSpec *spec;
    int prompt;
} PromptSubsets;

static void draw_prompt_subset(void *ctx, int k, int U, uint8_t *in) {
    const PromptSubsets *s = ctx;
    bound_draw_subset(s->spec->seed, s->prompt, k, s->spec->inclusion, U, in);
}

/* The patches of the unverified cells that in[] marks (each node over its window). */
static int subset_patches(BoundWork *w, int p, const int *unverified, int U, const uint8_t *in) {
    const Plan *plan = w->plan;
    const int *positions = plan_prompt_positions(plan, p);
    int S = plan->n_positions, n = 0;
    for (int u = 0; u < U; u++) {
        if (!in[u]) continue;
        if (n == w->patch_cap) {
            w->patch_cap = w->patch_cap ? 2 * w->patch_cap : 64;
            w->patches = xrealloc(w->patches, sizeof(Patch) * (size_t)w->patch_cap);
        }
        int c = unverified[u];
        const Node *node = &plan->nodes[c / S];
        int first, last;
        job_window(w->job, node->layer, w->m->cfg.n_layer, &first, &last);
        w->patches[n++] = (Patch){node->site, first, last, node->index, positions[c % S], NULL};
    }
    return n;
}

/* The joint effect of the unverified edge cells that in[] marks. */
static double edge_subset_effect(BoundWork *w, const PromptRuns *runs, int p, const int *unverified, int U,
                                 const uint8_t *in) {
    const int *positions = plan_prompt_positions(w->plan, p);
    int S = w->plan->n_positions, n = 0;
    for (int u = 0; u < U; u++)
        if (in[u]) w->edge_cells[n++] = (EdgeCell){unverified[u] / S, positions[unverified[u] % S]};
    return edge_joint_effect(w->joint, runs, w->plan->edges, w->edge_cells, n, w->spec.metric);
}

void bound_prompt(BoundWork *w, int p, const float *estimates, PromptBound *out) {
    const Plan *plan = w->plan;
    const BoundSpec *spec = &w->spec;
    int K = spec->n_subsets, n_cells = 0;
    size_t C = bound_cell_count(plan, spec->edges);
    /* the site's cells by |estimate|, largest first, ties in cell order (the verified set takes a
     * tie block whole or not at all, so the order inside one matters only to the subsets' draw) */
    for (size_t c = 0; c < C; c++)
        if (bound_has_cell(plan, w->job, spec->edges, spec->site, p, c)) w->cell_of[n_cells++] = (int)c;
    for (int i = 0; i < n_cells; i++) w->key[i] = fabs(estimates[w->cell_of[i]]);
    order_by_key(w->key, n_cells, w->rank_to_index);
    for (int i = 0; i < n_cells; i++) w->order[i] = w->cell_of[w->rank_to_index[i]];
    /* the top --verified, a tie block straddling the boundary taken whole or left whole (docs/methods.md) */
    int block, n_verified = bound_verified_count(w->key, w->rank_to_index, n_cells, spec->n_verified_max,
                                                 spec->verify_ties, &block);
    int U = n_cells - n_verified;
    const int *unverified = w->order + n_verified;

    /* K random subsets of the unverified cells, each patched jointly */
    PromptSubsets subsets = {spec, p};
    PromptRuns runs;
    prompt_runs_build(&runs, w->m, w->job, &w->jr, p);
    for (int k = 0; k < K; k++) {
        draw_prompt_subset(&subsets, k, U, w->in);
        if (!U) out->subset_effect[k] = 0.0;
        else if (spec->edges) out->subset_effect[k] = edge_subset_effect(w, &runs, p, unverified, U, w->in);
        else out->subset_effect[k] = engine_joint_effect(w->engine, &runs, w->patches, subset_patches(w, p, unverified, U, w->in),
                                                         spec->metric);
    }
    int samples = runs.n_samples;
    prompt_runs_free(&runs);

    double z = normal_upper_quantile((1.0 - spec->confidence) / (2.0 * (U > 0 ? U : 1))), theta = 0.0;
    bound_cells(out->subset_effect, K, U, z, draw_prompt_subset, &subsets, w->cells);
    memset(out->bytes, 0, out->n_bytes);
    for (size_t c = 0; c < C; c++) out->estimate[c] = out->se[c] = out->ucb[c] = NAN;
    for (int i = 0; i < n_verified; i++) out->verified[w->order[i]] = 1;
    int unbounded = 0;
    for (int u = 0; u < U; u++) {
        int c = unverified[u];
        out->estimate[c] = w->cells[u].estimate, out->se[c] = w->cells[u].se, out->ucb[c] = w->cells[u].ucb;
        theta = fmax(theta, w->cells[u].ucb);
        unbounded += isinf(w->cells[u].ucb);
    }
    double theta_sign = 0.0;
    for (int k = 0; k < K && U; k++) theta_sign = fmax(theta_sign, fabs(out->subset_effect[k]));
    double *sum = out->summary;
    sum[BOUND_THETA] = theta, sum[BOUND_THETA_SIGN] = theta_sign, sum[BOUND_CELLS] = n_cells, sum[BOUND_VERIFIED] = n_verified;
    sum[BOUND_UNVERIFIED] = U, sum[BOUND_UNBOUNDED] = unbounded, sum[BOUND_SAMPLES] = U ? samples : 0;
    sum[BOUND_BOUNDARY_TIES] = block;
    sum[BOUND_BOUNDARY_KEY] = block ? w->key[w->rank_to_index[spec->n_verified_max - 1]] : NAN;
}
