/* Planning: nodes, position columns, work units and their costs. Everything here is a pure
 * function of the job and the model configuration, so every rank builds the same plan. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/plan.h"

void node_name(const Node *n, char *out, size_t cap) {
    switch (n->site) {
    case SITE_Q:
    case SITE_Z: snprintf(out, cap, "L%d.H%d.%s", n->layer, n->index, site_name(n->site)); break;
    case SITE_K:
    case SITE_V: snprintf(out, cap, "L%d.KV%d.%s", n->layer, n->index, site_name(n->site)); break;
    case SITE_MLP_POST: snprintf(out, cap, "L%d.N%d", n->layer, n->index); break;
    default: snprintf(out, cap, "L%d.%s", n->layer, site_name(n->site)); break;
    }
}

/* FLOPs of one row through one layer: kv side (norm, k and v projections) and q side (q and
 * output projections, MLP), plus attention over n_keys keys. */
static double row_kv_flops(const ModelConfig *c) { return 4.0 * c->d_model * cfg_kv_dim(c) + 8.0 * c->d_model; }
static double row_q_flops(const ModelConfig *c, int n_keys) {
    double mlp = 2.0 * c->d_model * c->d_mlp * (c->gated_mlp ? 3 : 2);
    return 4.0 * c->d_model * cfg_q_dim(c) + mlp + 4.0 * cfg_q_dim(c) * n_keys + 8.0 * c->d_model;
}

double forward_flops(const ModelConfig *c, int T) {
    double per_layer = T * row_kv_flops(c);
    for (int t = 0; t < T; t++) per_layer += row_q_flops(c, t + 1);
    return c->n_layer * per_layer;
}

double patch_flops(const ModelConfig *c, int T, int layer, Site site, int pos) {
    int L = c->n_layer, r0 = pos < 0 ? 0 : pos;
    int one_row = !site_is_kv_side(site) && pos >= 0;
    if (one_row && layer == L - 1 && pos < T - 1) return 0.0; /* provably no effect */
    double total = 0.0;
    for (int l = layer; l < L; l++) {
        int rows = (l == layer && one_row) ? 1 : T - r0;
        if (l > layer || !one_row) total += rows * row_kv_flops(c);
        if (l == L - 1) total += row_q_flops(c, T);
        else
            for (int t = r0; t < r0 + rows; t++) total += row_q_flops(c, t + 1);
    }
    return total + 2.0 * c->d_model * c->vocab;
}

/* Floats of one engine sequence: one layer's activations without the attention pattern (the
 * engine never keeps it), with the gathers of the last layer, and a logits row. */
static double engine_sequence_floats(const ModelConfig *c, int T) {
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(c, 1, T, T, 0, 1, sizes);
    return (double)layer_acts_floats(sizes) + c->vocab;
}

/* How many sequences an engine batch may hold within a memory budget in bytes. A pure function
 * of the model and T, so every rank batches identically. */
static int batch_limit(const ModelConfig *c, int T, double budget_bytes) {
    double per_sequence = engine_sequence_floats(c, T) * sizeof(float);
    double limit = budget_bytes / per_sequence;
    return limit < 1 ? 1 : limit > 4096 ? 4096 : (int)limit;
}

static int same_input(const EdgeEnd *a, const EdgeEnd *b) {
    return a->kind == b->kind && a->layer == b->layer && a->index == b->index;
}

/* Prompt p's edge units: blocks of edges sharing a downstream input (the patched run starts at
 * that input's layer), then one estimate unit if the job asks for edge estimates. */
static void add_edge_units(Plan *pl, const Job *job, const ModelConfig *c, int p, int *cap) {
    int T = job->prompts[p].T, est = 0;
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) est |= job->edge_estimates[e];
    for (int k = 0; job->exact && k < pl->n_edges;) {
        const EdgeEnd *v = &pl->edges[k].down;
        int len = 0;
        while (k + len < pl->n_edges && len < EDGE_BLOCK && same_input(&pl->edges[k + len].down, v)) len++;
        /* a patched run recomputes the rows from the column's on, from v's layer on, as a patch of
         * that layer's block input does (the logits: the final norm alone) */
        double cost = 0.0;
        for (int j = 0; j < pl->n_positions; j++) {
            int pos = plan_prompt_positions(pl, p)[j];
            if (pos < T) cost += v->kind == DOWN_LOGITS ? 2.0 * c->d_model * c->vocab : patch_flops(c, T, v->layer, SITE_RESID_PRE, pos);
        }
        if (pl->n_units == *cap) pl->units = xrealloc(pl->units, sizeof(Unit) * (size_t)(*cap *= 2));
        pl->units[pl->n_units++] = (Unit){UNIT_EDGE_EXACT, p, k, len, cost * len * job_samples(job)};
        k += len;
    }
    if (est && pl->n_edges) {
        if (pl->n_units == *cap) pl->units = xrealloc(pl->units, sizeof(Unit) * (size_t)(*cap *= 2));
        /* per metric one backward (~ two forwards) at B for eap; per step a forward and a backward
         * per metric at each interpolated run: the embeddings' (eap_ig) or every component's
         * (eap_ig_act: embed, each attention layer, each MLP) */
        double per_run = 1.0 + 2.0 * job->n_metrics, m = job->ig_steps, passes = 0.0;
        if (job->edge_estimates[EST_EAP]) passes += 2.0 * job->n_metrics;
        if (job->edge_estimates[EST_EAP_IG_ACT]) passes += (1 + 2 * c->n_layer) * m * per_run;
        else if (job->edge_estimates[EST_EAP_IG]) passes += m * per_run;
        pl->units[pl->n_units++] = (Unit){UNIT_EDGE_ESTIMATE, p, 0, pl->n_edges, passes * forward_flops(c, T) * job_samples(job)};
    }
}

void plan_build(Plan *pl, const Job *job, const ModelConfig *c) {
    memset(pl, 0, sizeof *pl);
    for (int p = 0; p < job->n_prompts; p++)
        if (job->prompts[p].T > pl->max_T) pl->max_T = job->prompts[p].T;

    for (int s = 0; s < job->n_sites; s++) pl->n_nodes += c->n_layer * site_nodes_per_layer(c, job->sites[s]);
    pl->nodes = xmalloc(sizeof(Node) * (size_t)pl->n_nodes);
    int n = 0;
    for (int s = 0; s < job->n_sites; s++) {
        Site site = job->sites[s];
        int per_layer = site_nodes_per_layer(c, site);
        for (int l = 0; l < c->n_layer; l++)
            for (int i = 0; i < per_layer; i++) pl->nodes[n++] = (Node){site, l, site_has_index(site) ? i : -1};
    }

    if (job->positions == POS_ALL) {
        pl->n_positions = 1;
        pl->positions = xmalloc(sizeof(int));
        pl->positions[0] = -1;
    } else if (job->positions == POS_LIST) {
        pl->n_positions = job->n_position_list;
        pl->positions = xmalloc(sizeof(int) * (size_t)pl->n_positions);
        for (int k = 0; k < pl->n_positions; k++)
            pl->positions[k] = job->position_names[k] || job->position_list[k] < 0 ? PLAN_VARIES : job->position_list[k];
    } else {
        pl->n_positions = pl->max_T;
        pl->positions = xmalloc(sizeof(int) * (size_t)pl->n_positions);
        for (int j = 0; j < pl->max_T; j++) pl->positions[j] = j;
    }

    int S = pl->n_positions;
    pl->prompt_positions = xmalloc(sizeof(int) * (size_t)job->n_prompts * (size_t)S);
    for (int p = 0; p < job->n_prompts; p++)
        for (int j = 0; j < S; j++) {
            int fixed = pl->positions[j], T = job->prompts[p].T;
            pl->prompt_positions[(size_t)p * S + j] = fixed == PLAN_VARIES ? job_list_position(job, p, j)
                                                      : fixed >= T ? JOB_NO_POSITION : fixed;
        }

    if (job->edges.on) {
        pl->n_edges = (int)edge_graph(c, &job->edges, NULL);
        pl->edges = xmalloc(sizeof(Edge) * (size_t)(pl->n_edges ? pl->n_edges : 1));
        edge_graph(c, &job->edges, pl->edges);
    }

    /* Units: per prompt, the exact blocks in node order, then one estimate unit, then the edges'
     * exact blocks and their estimate unit. */
    int est = job->estimates[EST_ATP] || job->estimates[EST_ATP_QK] || job->estimates[EST_ATP_STAR];
    int cap = 16;
    pl->units = xmalloc(sizeof(Unit) * (size_t)cap);
    for (int p = 0; p < job->n_prompts; p++) {
        int T = job->prompts[p].T;
        for (int k = 0; job->exact && k < pl->n_nodes;) {
            const Node *first = &pl->nodes[k];
            int block = first->site == SITE_MLP_POST ? NEURON_BLOCK : site_nodes_per_layer(c, first->site);
            int len = 0;
            while (k + len < pl->n_nodes && len < block && pl->nodes[k + len].layer == first->layer &&
                   pl->nodes[k + len].site == first->site)
                len++;
            double cost = 0.0;
            int from, to; /* the forward pass resumes at the window's first layer */
            job_window(job, first->layer, c->n_layer, &from, &to);
            for (int j = 0; j < pl->n_positions; j++)
                if (plan_prompt_positions(pl, p)[j] < T) cost += patch_flops(c, T, from, first->site, plan_prompt_positions(pl, p)[j]);
            if (pl->n_units == cap) pl->units = xrealloc(pl->units, sizeof(Unit) * (size_t)(cap *= 2));
            pl->units[pl->n_units++] = (Unit){UNIT_EXACT, p, k, len, cost * len * job_samples(job)};
            k += len;
        }
        if (est) {
            if (pl->n_units == cap) pl->units = xrealloc(pl->units, sizeof(Unit) * (size_t)(cap *= 2));
            /* over full runs: one forward (the expansion), then per metric one backward (~ two
             * forwards) and GradDrop's about L/2 more; one layer at a time over lean runs, each
             * backward pass also recomputes the base run's layers (~ one forward) and the source
             * run's where nodes read them */
            int star = job->estimates[EST_ATP_STAR], L = c->n_layer;
            double passes = plan_nodes_one_layer(pl, job, L)
                                ? job->n_metrics * (4.0 + (star ? 2.0 * L : 0))
                                : 1.0 + job->n_metrics * (2.0 + (star ? L : 0));
            pl->units[pl->n_units++] = (Unit){UNIT_ESTIMATE, p, 0, pl->n_nodes, passes * forward_flops(c, T) * job_samples(job)};
        }
        add_edge_units(pl, job, c, p, &cap);
    }
    /* A batch never holds more than one unit's nodes times the noise samples; beyond that the
     * memory budget caps it. Both depend only on the job and the model, as they must (every
     * rank batches alike). */
    int widest = 1;
    for (int u = 0; u < pl->n_units; u++)
        if ((pl->units[u].kind == UNIT_EXACT || pl->units[u].kind == UNIT_EDGE_EXACT) && pl->units[u].n_nodes > widest)
            widest = pl->units[u].n_nodes;
    int needed = widest * job_samples(job), budget = batch_limit(c, pl->max_T, ENGINE_BUDGET_BYTES);
    pl->batch_limit = needed < budget ? needed : budget;
    /* PATCHSWEEP_BATCH caps it further (checked by the command line before anything runs).
     * Batching changes no bit of the results: the kernels are batch-invariant. */
    long cap_env;
    if (env_int("PATCHSWEEP_BATCH", 1, 1 << 20, &cap_env) == PS_OK && cap_env > 0 && cap_env < pl->batch_limit)
        pl->batch_limit = (int)cap_env;
}

void plan_free(Plan *pl) {
    free(pl->nodes);
    free(pl->edges);
    free(pl->positions), free(pl->prompt_positions);
    free(pl->units);
    memset(pl, 0, sizeof *pl);
}

/* What a unit's views of the base and source runs hold (engine.c, effects: the patched site in
 * the window's layers, the base run's sites up to the patched stage in the first, a severed
 * site in every layer), in floats, for the plan's most demanding node. */
static void node_view_floats(const Plan *pl, const Job *job, const ModelConfig *c, int T, double *base, double *source) {
    int L = c->n_layer;
    unsigned *want_base = xcalloc((size_t)L, sizeof(unsigned)), *want_source = xcalloc((size_t)L, sizeof(unsigned));
    *base = *source = 0.0;
    for (int n = 0; n < pl->n_nodes; n++) {
        const Node *node = &pl->nodes[n];
        if (n > 0 && node->site == pl->nodes[n - 1].site && node->layer == pl->nodes[n - 1].layer) continue;
        int first, last;
        job_window(job, node->layer, L, &first, &last);
        for (int l = 0; l < L; l++) {
            unsigned in_window = l >= first && l <= last ? SITE_BIT(node->site) : 0;
            want_source[l] = in_window;
            want_base[l] = in_window | (l == first ? sites_up_to(site_stage(node->site)) : 0) |
                           (job->sever != N_SITES ? SITE_BIT(job->sever) : 0);
        }
        double b = (double)run_view_floats(c, T, want_base), s = (double)run_view_floats(c, T, want_source);
        if (b + s > *base + *source) *base = b, *source = s;
    }
    free(want_base), free(want_source);
}

int plan_nodes_one_layer(const Plan *pl, const Job *job, int n_layer) {
    for (int n = 0; n < pl->n_nodes; n++) {
        int first, last;
        job_window(job, pl->nodes[n].layer, n_layer, &first, &last);
        if (first != last) return 0;
    }
    return 1;
}

/* Memory per rank in floats (docs/sizing.md says it in words). T is the longest prompt. */
static double rank_floats(const Plan *pl, const Job *job, const ModelConfig *c) {
    int T = pl->max_T, S = job_samples(job), L = c->n_layer, d = c->d_model;
    int gaussian = job->corruption == CORR_GAUSSIAN, denoise = job->direction == DIR_DENOISE;
    /* a prompt's lean runs: the clean run, the corrupt (or resampled) one, one per noise sample */
    int runs = 1 + (job->corruption == CORR_PAIR || job->corruption == CORR_RESAMPLE) + (gaussian ? S : 0);
    double lean = (double)run_cache_lean_floats(c, T), full = (double)layer_floats(c, T, 1) * L + (double)T * (d + 2);
    /* + the chunk of a layer a run is computed in */
    double total = runs * lean + (double)layer_floats(c, T < LEAN_CHUNK_ROWS ? T : LEAN_CHUNK_ROWS, 0);
    /* mean corruption: the mean of every activation (a full run) and, while it is summed, a
     * clean run */
    if (job->corruption == CORR_MEAN) total += 2 * full;
    /* the engine: a batch of sequences (where views are built too: at least one full layer), and
     * a thread's attention scratch (the packed keys and values of one head, one head's scores) */
    double batch = pl->batch_limit * engine_sequence_floats(c, T), one_layer = (double)layer_floats(c, T, 0);
    total += batch > one_layer ? batch : one_layer;
    total += (double)packed_floats(T, c->d_head) + (double)packed_floats(c->d_head, T) + (double)T * T;
    /* the views of the current unit (docs/design.md, "Memory-lean runs") */
    double base_view, source_view;
    node_view_floats(pl, job, c, T, &base_view, &source_view);
    int base_views = gaussian && denoise ? S : 1;
    int source_views = job->corruption == CORR_MEAN || job->corruption == CORR_ZERO ? 0 : gaussian && !denoise ? S : 1;
    if (job->exact) total += base_views * base_view + source_views * source_view;
    int node_estimates = 0, edge_estimates = 0;
    for (int e = 0; e < N_ESTIMATES; e++) node_estimates |= job->estimates[e];
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) edge_estimates |= job->edge_estimates[e];
    if (pl->n_edges) {
        /* the edge sweep's batch, its upstream deltas (double) and one full layer (the naive
         * path), and views with every layer's z and mlp_out */
        unsigned *want = xcalloc((size_t)L, sizeof(unsigned));
        for (int l = 0; l < L; l++) want[l] = SITE_BIT(SITE_Z) | SITE_BIT(SITE_MLP_OUT);
        total += pl->batch_limit * (engine_sequence_floats(c, T) + 2.0 * T * d) + (double)layer_floats(c, T, 0);
        if (job->exact) total += (base_views + (source_views ? source_views : 0)) * (double)run_view_floats(c, T, want);
        free(want);
    }
    /* node estimates with a window of one layer go one layer at a time over the lean runs: a
     * layer of the base run, of the gradient (both with patterns) and of the source run, and the
     * gradient at every layer's output; wider windows expand the prompt's runs into full ones and
     * keep two full gradient caches. The edge estimators expand the runs and hold an interpolated
     * run and its gradients while they run. */
    int node_expand = node_estimates && !plan_nodes_one_layer(pl, job, L);
    if (node_estimates && !node_expand)
        total += 2.0 * layer_floats(c, T, 1) + (double)layer_floats(c, T, 0) + (double)L * T * d;
    if (node_expand) total += 2 * full;
    if (node_expand || edge_estimates) total += (runs + (edge_estimates ? 2 : 0)) * full;
    return total;
}

void plan_stats(const Plan *pl, const Job *job, const ModelConfig *c, PlanStats *st) {
    memset(st, 0, sizeof *st);
    for (int u = 0; u < pl->n_units; u++) {
        const Unit *unit = &pl->units[u];
        if (unit->kind != UNIT_EXACT && unit->kind != UNIT_EDGE_EXACT) continue;
        int T = job->prompts[unit->prompt].T;
        for (int j = 0; j < pl->n_positions; j++)
            if (plan_prompt_positions(pl, unit->prompt)[j] < T) st->patches += (long long)unit->n_nodes * job_samples(job);
        st->flops += unit->cost;
    }
    for (int p = 0; p < job->n_prompts; p++) {
        int T = job->prompts[p].T;
        double full = forward_flops(c, T);
        long long patches = 0;
        for (int j = 0; j < pl->n_positions; j++) patches += plan_prompt_positions(pl, p)[j] < T;
        st->naive_flops += full * patches * (job->exact ? pl->n_nodes + pl->n_edges : 0) * job_samples(job);
    }
    st->bytes_per_rank = 4.0 * rank_floats(pl, job, c);
    st->bytes_weights = (double)model_weight_bytes(c); /* the parameters and their packed copies, as held */
}
