/* The circuits of a job's "circuits" key as rows (docs/circuits.md, "Sets"): explicit edges or
 * nodes, the top k (or those above a threshold) of a ranking read from the results file, or a
 * seeded random ranking; and what a row keeps in one prompt, edge by edge and row by row. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/circuits.h"
#include "patchsweep/core.h"
#include "patchsweep/patch.h"
#include "patchsweep/results.h"

static void row_init(CircuitRow *row, int set, int k, int E, int S, int U, int by_nodes, int all_positions) {
    memset(row, 0, sizeof *row);
    row->set = set, row->k = k, row->all_positions = all_positions;
    row->members = xcalloc((size_t)E * S + 1, 1);
    row->everywhere = xcalloc((size_t)E + 1, 1);
    if (by_nodes) {
        row->node_cols = xcalloc((size_t)U * S + 1, 1);
        row->node_everywhere = xcalloc((size_t)U + 1, 1);
    }
}

/* Members of a row defined by nodes: the job's edges out of them, where they are in. */
static void members_from_nodes(const Circuits *cs, const ModelConfig *cfg, CircuitRow *row) {
    for (int e = 0; e < cs->E; e++) {
        int u = circuit_upstream_index(cfg, &cs->edges[e].up), any = 0;
        row->everywhere[e] = row->node_everywhere[u];
        for (int s = 0; s < cs->S; s++) {
            row->members[(size_t)e * cs->S + s] = row->node_everywhere[u] || row->node_cols[(size_t)u * cs->S + s];
            any |= row->members[(size_t)e * cs->S + s];
            row->size += !row->all_positions && row->members[(size_t)e * cs->S + s];
        }
        row->size += row->all_positions && any;
    }
}

static int upstream_by_name(const ModelConfig *cfg, const char *name) {
    int U = circuit_n_upstream(cfg);
    for (int u = 0; u < U; u++) {
        char have[32];
        EdgeEnd end = u == 0 ? (EdgeEnd){UP_EMBED, -1, -1}
                             : (u - 1) % (cfg->n_head + 1) == cfg->n_head ? (EdgeEnd){UP_MLP, (u - 1) / (cfg->n_head + 1), -1}
                                                                          : (EdgeEnd){UP_HEAD, (u - 1) / (cfg->n_head + 1), (u - 1) % (cfg->n_head + 1)};
        edge_up_name(&end, have, sizeof have);
        if (strcmp(have, name) == 0) return u;
    }
    return -1;
}

/* An explicit set (names checked by job_check). */
static void explicit_row(Circuits *cs, const Job *job, const ModelConfig *cfg, const CircuitSet *set, CircuitRow *row) {
    if (set->kind == CSET_NODES) {
        for (int i = 0; i < set->n_names; i++) row->node_everywhere[upstream_by_name(cfg, set->names[i])] = 1;
        members_from_nodes(cs, cfg, row);
        return;
    }
    for (int i = 0; i < set->n_names; i++) {
        char name[128], have[128], col[64];
        snprintf(name, sizeof name, "%s", set->names[i]);
        char *at = strchr(name, '@');
        if (at) *at++ = 0;
        for (int e = 0; e < cs->E; e++) {
            edge_name(&cs->edges[e], have, sizeof have);
            if (strcmp(have, name) != 0) continue;
            for (int s = 0; s < cs->S; s++) {
                if (at) job_column_name(job, s, col, sizeof col);
                if (!at || strcmp(col, at) == 0) row->members[(size_t)e * cs->S + s] = 1;
            }
            row->everywhere[e] |= !at;
        }
    }
    for (int e = 0; e < cs->E; e++) {
        int any = 0;
        for (int s = 0; s < cs->S; s++) {
            any |= row->members[(size_t)e * cs->S + s];
            row->size += !row->all_positions && row->members[(size_t)e * cs->S + s];
        }
        row->size += row->all_positions && any;
    }
}

/* A ranking's items and their scores: edges (or upstream nodes, for effects/) x columns, the mean
 * over prompts of |value| or value, NaN cells left out; a position-independent ranking sums its
 * cells' scores over the columns. Items are cells [n, S] when specific. */
static int read_scores(const Job *job, const Plan *plan, const ModelConfig *cfg, const CircuitSet *set, const char *path,
                       int n_items, double *score) {
    Results r;
    const char *metric = metric_name(job->metrics[set->metric]);
    int edges = set->by == RANK_EDGES;
    int rc = edges ? results_open_edges(&r, path, 0, metric) : results_open(&r, path, 0, metric);
    float *cells = NULL;
    if (!rc) rc = results_read_cells(&r, set->array, &cells);
    if (!rc && !cells)
        rc = ps_fail(PS_EUSER, "circuit: set \"%s\": %s has no /%s/%s; run the job first (patchsweep run %s)", set->name, path,
                     edges ? "edges" : "effects", set->array, job->path);
    if (!rc && (r.P != job->n_prompts || r.S != plan->n_positions || r.N != (edges ? plan->n_edges : plan->n_nodes)))
        rc = ps_fail(PS_EUSER, "circuit: %s holds %d prompts x %d %s x %d positions, the job %d x %d x %d", path, r.P, r.N,
                     edges ? "edges" : "nodes", r.S, job->n_prompts, edges ? plan->n_edges : plan->n_nodes, plan->n_positions);
    int P = job->n_prompts, S = plan->n_positions, N = r.N;
    for (int p = 0; !rc && p < P; p++) /* complete: every cell the prompt has holds a value */
        for (int i = 0; !rc && i < N; i++)
            for (int s = 0; !rc && s < S; s++)
                if (plan_prompt_positions(plan, p)[s] < job->prompts[p].T && isnan(cells[((size_t)p * N + i) * S + s]))
                    rc = ps_fail(PS_EUSER, "circuit: set \"%s\": /%s/%s of %s is not complete (prompt %d, %s %d, column %d has no "
                                           "value); finish the job first (patchsweep run %s)", set->name, edges ? "edges" : "effects",
                                 set->array, path, p, edges ? "edge" : "node", i, s, job->path);
    for (int i = 0; i < n_items * (set->specific ? S : 1); i++) score[i] = NAN; /* items the file has no cells of */
    for (int i = 0; !rc && i < N; i++) {
        int item = i;
        if (!edges) { /* z heads and mlp_out nodes, as the upstream nodes L{l}.H{h} and L{l}.mlp */
            const Node *node = &plan->nodes[i];
            if (node->site != SITE_Z && node->site != SITE_MLP_OUT) continue;
            EdgeEnd u = node->site == SITE_Z ? (EdgeEnd){UP_HEAD, node->layer, node->index} : (EdgeEnd){UP_MLP, node->layer, -1};
            item = circuit_upstream_index(cfg, &u);
        }
        for (int s = 0; s < S; s++) {
            double sum = 0.0;
            int n = 0;
            for (int p = 0; p < P; p++) {
                float v = cells[((size_t)p * N + i) * S + s];
                if (isnan(v)) continue;
                sum += set->signed_score ? (double)v : fabs((double)v), n++;
            }
            if (!n) continue;
            if (set->specific) score[(size_t)item * S + s] = sum / n;
            else score[item] = isnan(score[item]) ? sum / n : score[item] + sum / n;
        }
    }
    free(cells);
    results_close(&r);
    return rc;
}

/* order[0..n): a seeded uniform shuffle (Fisher-Yates on the set's own stream). */
static void shuffled(uint64_t seed, int n, int *order) {
    Rng rng;
    rng_seed(&rng, seed, 0x63697263, 0); /* "circ": a stream apart from noise and resampling */
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_uniform(&rng) * (i + 1)), tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
}

/* Keeps item order[i] (an edge, a node, or a cell of either) in the row. */
static void keep_item(const Circuits *cs, CircuitRow *row, int by_nodes, int specific, int item) {
    int S = cs->S, i = specific ? item / S : item;
    if (by_nodes) {
        if (specific) row->node_cols[(size_t)i * S + item % S] = 1;
        else row->node_everywhere[i] = 1;
        return;
    }
    for (int s = 0; s < S; s++)
        if (!specific || s == item % S) row->members[(size_t)i * S + s] = 1;
    row->everywhere[i] |= !specific;
    row->size++;
}

static int ranked_rows(Circuits *cs, const Job *job, const Plan *plan, const ModelConfig *cfg, int set_index,
                       const char *path) {
    const CircuitSet *set = &job->circuits->sets[set_index];
    int by_nodes = set->by == RANK_EFFECTS, S = cs->S;
    int items = by_nodes ? cs->U : cs->E, n = items * (set->specific ? S : 1), rc = PS_OK;
    double *score = alloc_doubles((size_t)n + 1);
    int *order = xmalloc(sizeof(int) * ((size_t)n + 1));
    if (set->by == RANK_RANDOM) shuffled(set->seed, n, order);
    else rc = read_scores(job, plan, cfg, set, path, items, score);
    if (!rc && set->by != RANK_RANDOM) {
        if (by_nodes) /* embed is always kept; rank the heads and MLPs */
            for (int s = 0; s < (set->specific ? S : 1); s++) score[s] = NAN;
        order_by_key(score, n, order);
    }
    int rows = set->n_k ? set->n_k : 1, available = n;
    if (by_nodes) /* items with a score: the job's z and mlp_out nodes */
        for (int i = available = 0; i < n; i++) available += !isnan(score[i]);
    for (int r = 0; !rc && r < rows; r++) {
        CircuitRow *row = &cs->rows[cs->C++];
        row_init(row, set_index, set->n_k ? set->k[r] : -1, cs->E, S, cs->U, by_nodes, !set->specific);
        row->items = available;
        int take = 0;
        if (set->n_k) take = set->k[r] < available ? set->k[r] : available;
        else
            while (take < n && !isnan(score[order[take]]) &&
                   (set->signed_score ? score[order[take]] : fabs(score[order[take]])) >= set->threshold)
                take++;
        for (int i = 0; i < take; i++) keep_item(cs, row, by_nodes, set->specific, order[i]);
        if (by_nodes) {
            row->node_everywhere[0] = 1;
            members_from_nodes(cs, cfg, row);
        }
    }
    free(score), free(order);
    return rc;
}

int circuits_build(Circuits *cs, const Job *job, const Plan *plan, const ModelConfig *cfg, const char *path) {
    const CircuitsSpec *spec = job->circuits;
    memset(cs, 0, sizeof *cs);
    cs->S = plan->n_positions, cs->U = circuit_n_upstream(cfg);
    EdgeFilter all = {0};
    cs->n_graph = edge_graph(cfg, &all, NULL);
    cs->graph = xmalloc(sizeof(Edge) * (size_t)cs->n_graph);
    edge_graph(cfg, &all, cs->graph);
    if (plan->n_edges) cs->edges = plan->edges, cs->E = plan->n_edges;
    else cs->edges = cs->graph, cs->E = (int)cs->n_graph;
    cs->graph_of = xmalloc(sizeof(int) * ((size_t)cs->E + 1));
    for (int e = 0, f = 0; e < cs->E; e++) { /* both in contract order */
        const Edge *a = &cs->edges[e];
        while (memcmp(&cs->graph[f], a, sizeof *a) != 0) f++;
        cs->graph_of[e] = f;
    }
    int rows = 0;
    for (int i = 0; i < spec->n_sets; i++) rows += spec->sets[i].n_k ? spec->sets[i].n_k : 1;
    cs->rows = xcalloc((size_t)rows, sizeof(CircuitRow));
    int rc = PS_OK;
    for (int i = 0; i < spec->n_sets && !rc; i++) {
        const CircuitSet *set = &spec->sets[i];
        if (set->kind == CSET_RANK) {
            rc = ranked_rows(cs, job, plan, cfg, i, path);
            continue;
        }
        CircuitRow *row = &cs->rows[cs->C++];
        row_init(row, i, -1, cs->E, cs->S, cs->U, set->kind == CSET_NODES, set->kind == CSET_NODES || !set->specific);
        explicit_row(cs, job, cfg, set, row);
    }
    return rc;
}

void circuits_free_rows(Circuits *cs) {
    for (int c = 0; c < cs->C; c++) {
        CircuitRow *row = &cs->rows[c];
        free(row->members), free(row->everywhere), free(row->node_cols), free(row->node_everywhere);
    }
    free(cs->rows), free(cs->graph), free(cs->graph_of);
    memset(cs, 0, sizeof *cs);
}

/* Marks rows[t] = 1 for the rows column s covers in prompt p (every row for "all"). */
static void cover(const Plan *plan, int p, int s, int T, uint8_t *rows) {
    int pos = plan_prompt_positions(plan, p)[s];
    if (pos < 0) memset(rows, 1, (size_t)T);
    else if (pos < T) rows[pos] = 1;
}

/* Node u is in the node circuit at the rows marked. */
static void mark(uint8_t *nodes_in, int u, const uint8_t *rows, int T) {
    for (int t = 0; t < T; t++) nodes_in[(size_t)u * T + t] |= rows[t];
}

/* nodes_in [U, T]: the node circuit of a row: its nodes, or the upstream ends of its edges and the
 * nodes owning their downstream ends (a query head; every query head of a key/value group; the
 * MLP; none for the logits). */
static void node_circuit(const Circuits *cs, const CircuitRow *row, const ModelConfig *cfg, const Plan *plan, int p, int T,
                         uint8_t *nodes_in, uint8_t *rows) {
    int S = cs->S, group = cfg->n_head / cfg->n_kv_head;
    memset(nodes_in, 0, (size_t)cs->U * T);
    if (row->node_cols) {
        for (int u = 0; u < cs->U; u++) {
            memset(rows, row->node_everywhere[u], (size_t)T);
            for (int s = 0; s < S; s++)
                if (row->node_cols[(size_t)u * S + s]) cover(plan, p, s, T, rows);
            memcpy(nodes_in + (size_t)u * T, rows, (size_t)T);
        }
        return;
    }
    for (int e = 0; e < cs->E; e++) {
        const Edge *edge = &cs->edges[e];
        memset(rows, row->everywhere[e], (size_t)T);
        for (int s = 0; s < S; s++)
            if (row->members[(size_t)e * S + s]) cover(plan, p, s, T, rows);
        mark(nodes_in, circuit_upstream_index(cfg, &edge->up), rows, T);
        const EdgeEnd *v = &edge->down;
        if (v->kind == DOWN_Q) mark(nodes_in, circuit_upstream_index(cfg, &(EdgeEnd){UP_HEAD, v->layer, v->index}), rows, T);
        else if (v->kind == DOWN_MLP_IN) mark(nodes_in, circuit_upstream_index(cfg, &(EdgeEnd){UP_MLP, v->layer, -1}), rows, T);
        else if (v->kind != DOWN_LOGITS) /* every query head of the key/value group */
            for (int h = v->index * group; h < (v->index + 1) * group; h++)
                mark(nodes_in, circuit_upstream_index(cfg, &(EdgeEnd){UP_HEAD, v->layer, h}), rows, T);
    }
}

void circuits_kept(const Circuits *cs, int c, int nodes, const ModelConfig *cfg, const Plan *plan, int p, int T,
                   uint8_t *kept) {
    const CircuitRow *row = &cs->rows[c];
    uint8_t *rows = xmalloc((size_t)T);
    memset(kept, 0, (size_t)cs->n_graph * T);
    if (nodes || row->node_cols) { /* every edge out of a node in, where it is in */
        uint8_t *nodes_in = xmalloc((size_t)cs->U * T);
        node_circuit(cs, row, cfg, plan, p, T, nodes_in, rows);
        for (long f = 0; f < cs->n_graph; f++)
            memcpy(kept + (size_t)f * T, nodes_in + (size_t)circuit_upstream_index(cfg, &cs->graph[f].up) * T, (size_t)T);
        free(nodes_in);
    } else {
        for (int e = 0; e < cs->E; e++) {
            uint8_t *k = kept + (size_t)cs->graph_of[e] * T;
            memset(k, row->everywhere[e], (size_t)T);
            for (int s = 0; s < cs->S; s++)
                if (row->members[(size_t)e * cs->S + s]) cover(plan, p, s, T, k);
        }
    }
    free(rows);
}
