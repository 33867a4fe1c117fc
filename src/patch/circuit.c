/* The circuit evaluator (docs/circuits.md): a forward pass of the clean prompt in which every
 * downstream input reads its own copy of the residual stream, where each edge outside the circuit
 * carries its upstream node's ablated output instead of the current one.
 *
 * The pass is the model's own (run_forward) with a hook at each layer's read points. Every
 * upstream node's current output is kept as the layers compute it ([U, T, d], in double, as
 * edge_upstream_row gives it); an input v whose edges are not all kept at a row reads
 *     x_v[t] = x[t] + sum over the edges u -> v not kept at t of (abl_u[t] - u[t])
 * and recomputes its own projection from it (input_row_forward, as exact edge patching does):
 * one query head, one key/value head's keys or values, or the MLP; the logits read the final row
 * the same way. Rows where that sum is exactly 0 are left as the model computed them, so the
 * circuit of every edge is the clean run bit for bit (faithfulness exactly 1), and the
 * per-row kernels give the same bits as the block's, whatever the threads. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"

struct CircuitScratch {
    const Model *m;
    const Edge *edges;
    long E;
    int max_T;
    RunCache run;
    double *cur;      /* [U, max_T, d]: this run's node outputs, filled layer by layer */
    uint8_t *needed;  /* [U, max_T]: some edge out of u is not kept at row t (only there is u's output read) */
    double *delta;    /* [max_T, d]: the sums of the input last computed, row by row */
    uint8_t *changed; /* [max_T]: whether that row's sum has a term not exactly 0 */
    long delta_first, delta_n; /* its edges */
    float *x;         /* [d] */
    InputScratch in;
    MetricWork work;
    /* the evaluation in progress */
    const double *abl;
    const uint8_t *kept;
    int T;
};

int circuit_n_upstream(const ModelConfig *c) { return 1 + c->n_layer * (c->n_head + 1); }

int circuit_upstream_index(const ModelConfig *c, const EdgeEnd *u) {
    if (u->kind == UP_EMBED) return 0;
    return 1 + u->layer * (c->n_head + 1) + (u->kind == UP_HEAD ? u->index : c->n_head);
}

/* Node u's output at the rows of the run that rows[] marks (NULL: every row) into out [T, d]. */
static void node_output(const Model *m, const RunCache *run, const EdgeEnd *u, int T, const uint8_t *rows, double *out) {
    int d = m->cfg.d_model;
    for (int t = 0; t < T; t++)
        if (!rows || rows[t]) edge_upstream_row(m, u, run, t, out + (size_t)t * d);
}

void node_outputs(const Model *m, const RunCache *run, int T, double *out) {
    const ModelConfig *c = &m->cfg;
    size_t stride = (size_t)T * c->d_model;
    EdgeEnd u = {UP_EMBED, -1, -1};
    node_output(m, run, &u, T, NULL, out);
    for (int l = 0; l < c->n_layer; l++)
        for (int h = 0; h <= c->n_head; h++) {
            u = h < c->n_head ? (EdgeEnd){UP_HEAD, l, h} : (EdgeEnd){UP_MLP, l, -1};
            node_output(m, run, &u, T, NULL, out + (size_t)circuit_upstream_index(c, &u) * stride);
        }
}

/* The buffers that grow with the prompt's length. */
static void size_for(CircuitScratch *w, int T) {
    const ModelConfig *c = &w->m->cfg;
    free(w->cur), free(w->needed), free(w->delta), free(w->changed);
    w->max_T = T;
    w->cur = alloc_doubles((size_t)circuit_n_upstream(c) * T * c->d_model);
    w->needed = xmalloc((size_t)circuit_n_upstream(c) * T);
    w->delta = alloc_doubles((size_t)T * c->d_model);
    w->changed = xmalloc((size_t)T);
}

CircuitScratch *circuit_scratch_new(const Model *m, const Edge *edges, long n_edges, int max_T) {
    const ModelConfig *c = &m->cfg;
    CircuitScratch *w = xcalloc(1, sizeof *w);
    w->m = m, w->edges = edges, w->E = n_edges;
    run_cache_init(&w->run, c, max_T, 0);
    w->x = alloc_floats((size_t)c->d_model);
    size_for(w, max_T);
    input_scratch_init(&w->in, c);
    return w;
}

void circuit_scratch_free(CircuitScratch *w) {
    if (!w) return;
    run_cache_free(&w->run);
    free(w->cur), free(w->needed), free(w->delta), free(w->changed), free(w->x);
    input_scratch_free(&w->in);
    metric_work_free(&w->work);
    free(w);
}

/* Row t of w->delta = the sum, over the edges [first, last) of one input not kept at row t, of
 * abl_u - u; w->changed[t] = whether any term is not exactly 0. The inputs of one layer's
 * attention read the same upstream nodes in the same order, so an input whose edges are kept
 * where the previous one's were (an empty circuit: every input) takes its sum as it is: the same
 * terms in the same order, the same bits. */
static void input_delta(CircuitScratch *w, long first, long last, int t) {
    const ModelConfig *c = &w->m->cfg;
    int d = c->d_model;
    double *delta = w->delta + (size_t)t * d;
    long n = last - first;
    int same = n == w->delta_n && first != w->delta_first;
    for (long j = 0; same && j < n; j++)
        same = w->kept[(size_t)(first + j) * w->T + t] == w->kept[(size_t)(w->delta_first + j) * w->T + t];
    if (same) return;
    size_t stride = (size_t)w->T * d;
    int any = 0;
    memset(delta, 0, sizeof(double) * (size_t)d);
    for (long e = first; e < last; e++) {
        if (w->kept[(size_t)e * w->T + t]) continue;
        size_t at = (size_t)circuit_upstream_index(c, &w->edges[e].up) * stride + (size_t)t * d;
        const double *abl = w->abl + at, *cur = w->cur + at;
        for (int i = 0; i < d; i++) {
            double diff = abl[i] - cur[i];
            any |= diff != 0.0;
            delta[i] += diff;
        }
    }
    w->changed[t] = (uint8_t)any;
}

/* w->x = stream row + row t of w->delta, in float as the model computes. */
static void shifted_row(CircuitScratch *w, const float *stream, int t) {
    int d = w->m->cfg.d_model;
    const double *delta = w->delta + (size_t)t * d;
    for (int i = 0; i < d; i++) w->x[i] = (float)((double)stream[i] + delta[i]);
}

/* The current output of node u, at the rows where an edge out of it is not kept (nothing else
 * reads it), as soon as the run has computed it: embed and the heads at their layer's MLP (the
 * first read point after them), an MLP at the next layer's attention (the logits, for the last). */
static void record_output(CircuitScratch *w, const EdgeEnd *u) {
    const ModelConfig *c = &w->m->cfg;
    int index = circuit_upstream_index(c, u);
    node_output(w->m, &w->run, u, w->T, w->needed + (size_t)index * w->T,
                w->cur + (size_t)index * w->T * c->d_model);
}

/* The edges into each input are contiguous in contract order: [first, last) of the one at e. */
static long input_end(const CircuitScratch *w, long e) {
    const EdgeEnd *v = &w->edges[e].down;
    long last = e;
    while (last < w->E && w->edges[last].down.kind == v->kind && w->edges[last].down.layer == v->layer &&
           w->edges[last].down.index == v->index)
        last++;
    return last;
}

static void circuit_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    (void)run; /* a full-length pass of one sequence: row t is row t */
    CircuitScratch *w = ctx;
    const Model *m = w->m;
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, T = w->T, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c);
    if (stage == ST_QKV) {
        EdgeEnd u = layer == 0 ? (EdgeEnd){UP_EMBED, -1, -1} : (EdgeEnd){UP_MLP, layer - 1, -1};
        record_output(w, &u);
    } else if (stage == ST_MLP_OUT) {
        for (int h = 0; h < c->n_head; h++) record_output(w, &(EdgeEnd){UP_HEAD, layer, h});
    } else {
        return;
    }
    w->delta_first = w->delta_n = -1; /* no sum to reuse across read points */
    for (long e = 0; e < w->E;) {
        const EdgeEnd *v = &w->edges[e].down;
        long last = input_end(w, e);
        int here = v->layer == layer && (stage == ST_MLP_OUT) == (v->kind == DOWN_MLP_IN) && v->kind != DOWN_LOGITS;
        for (int t = 0; here && t < T; t++) {
            input_delta(w, e, last, t);
            if (!w->changed[t]) continue;
            if (v->kind == DOWN_MLP_IN) { /* sequential blocks read resid_mid; the parallel residual the block input */
                shifted_row(w, (c->parallel_residual ? a->resid_pre : a->resid_mid) + (size_t)t * d, t);
                input_row_forward(m, v, w->x, a->mlp_out + (size_t)t * d, &w->in);
            } else {
                shifted_row(w, a->resid_pre + (size_t)t * d, t);
                float *dst = v->kind == DOWN_Q ? a->q + (size_t)t * qd : (v->kind == DOWN_K ? a->k : a->v) + (size_t)t * kvd;
                input_row_forward(m, v, w->x, dst, &w->in);
            }
        }
        if (here) w->delta_first = e, w->delta_n = last - e;
        e = last;
    }
}

void circuit_metrics(CircuitScratch *w, const int *tokens, int T, const double *abl, const uint8_t *kept,
                     const MetricSpec *spec, double *out) {
    const Model *m = w->m;
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, L = c->n_layer, U = circuit_n_upstream(c);
    if (T > w->max_T) { /* sized for the longest prompt; grows if asked for more */
        run_cache_free(&w->run);
        run_cache_init(&w->run, c, T, 0);
        size_for(w, T);
    }
    w->abl = abl, w->kept = kept, w->T = T;
    memset(w->needed, 0, (size_t)U * T);
    for (long e = 0; e < w->E; e++) {
        uint8_t *rows = w->needed + (size_t)circuit_upstream_index(c, &w->edges[e].up) * T;
        for (int t = 0; t < T; t++) rows[t] |= !kept[(size_t)e * T + t];
    }
    run_forward(m, tokens, T, NULL, &w->run, circuit_hook, w);
    record_output(w, &(EdgeEnd){UP_MLP, L - 1, -1}); /* read by the logits alone */
    const float *final = w->run.layer[L - 1].resid_post + (size_t)(T - 1) * d;
    long first = w->E;
    while (first > 0 && w->edges[first - 1].down.kind == DOWN_LOGITS) first--;
    w->delta_first = w->delta_n = -1;
    input_delta(w, first, w->E, T - 1);
    if (w->changed[T - 1]) {
        shifted_row(w, final, T - 1);
        final = w->x;
    }
    metric_rows(m, spec, final, 1, out, &w->work);
}
