/* Exact edge patching (docs/edges.md): for an edge u -> v, a position column and a noise sample,
 * the base run is recomputed from v's layer with a hook that, at v's read point, rebuilds v's
 * input rows from x_v^B[t] - u^B[t] + u^S[t] and replaces v's projection only: one query head,
 * one key/value head's keys or values, or the MLP's output. Everything after follows as usual.
 * The logits need no pass: the metric reads the patched final row itself.
 *
 * Fast path (the default): the edges into one input at one column go through one batched suffix,
 * as the node engine's patches do: it starts at v's layer and at the column's row (rows before it,
 * and the keys and values there, are the base run's), and the last layer computes the last row
 * alone. Naive path (--naive, the reference): one full-length pass per patch from v's layer.
 * Layers below v's are the base run's in both: the kernels give a row the same bits whatever else
 * is computed beside it, which is also why the two paths agree bit for bit (tests/cli/test_edges.py). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"

struct EdgeScratch {
    const Model *m;
    int max_T, max_batch;
    LayerActs layer;     /* naive path: the patched run, one layer at a time (every row) */
    float *layer_block;
    LayerActs acts;      /* fast path: one layer of max_batch sequences, with gathers */
    float *acts_block;
    const float **k_prefix, **v_prefix;
    const RunCache **base_of; /* [max_batch]: each sequence's base run */
    const double **delta_of;  /* [max_batch]: each sequence's u^S - u^B rows */
    double *deltas;      /* [max_batch, max_T, d] */
    int *item;           /* [max_batch]: edge * samples + sample */
    double *metric;      /* [max_batch, N_METRICS] */
    float *x;            /* one row: v's input */
    InputScratch in;     /* v's own computation of that row */
    MetricWork work;
    /* The unit's runs as it reads them: the lean runs with the upstream outputs (z, mlp_out) of
     * its edges' layers recomputed (views.c). */
    ViewSet views;
    unsigned *want;                  /* [n_layer] */
    int cap_samples;
    const RunCache **runs, **views_of; /* [2 * samples]: base runs, source runs; their views */
    const unsigned **wants;
};

static void scratch_alloc(EdgeScratch *w, int max_T) {
    const ModelConfig *c = &w->m->cfg;
    w->max_T = max_T;
    layer_scratch_init(&w->layer, &w->layer_block, c, max_T, 0);
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(c, w->max_batch, max_T, max_T, 0, 1, sizes); /* no pattern: nothing reads it */
    w->acts_block = alloc_floats(layer_acts_floats(sizes));
    layer_acts_point(&w->acts, w->acts_block, sizes);
    w->deltas = alloc_doubles((size_t)w->max_batch * max_T * c->d_model);
}

static void scratch_release(EdgeScratch *w) {
    free(w->layer_block);
    free(w->acts_block), free(w->deltas);
    w->acts_block = NULL, w->deltas = NULL;
}

EdgeScratch *edge_scratch_new(const Model *m, int max_T, int max_batch) {
    const ModelConfig *c = &m->cfg;
    EdgeScratch *w = xcalloc(1, sizeof *w);
    w->m = m;
    w->max_batch = max_batch < 1 ? 1 : max_batch;
    scratch_alloc(w, max_T);
    w->k_prefix = xcalloc((size_t)w->max_batch, sizeof(float *));
    w->v_prefix = xcalloc((size_t)w->max_batch, sizeof(float *));
    w->base_of = xcalloc((size_t)w->max_batch, sizeof(RunCache *));
    w->delta_of = xcalloc((size_t)w->max_batch, sizeof(double *));
    w->item = xcalloc((size_t)w->max_batch, sizeof(int));
    w->metric = alloc_doubles((size_t)w->max_batch * N_METRICS);
    w->x = alloc_floats((size_t)c->d_model);
    input_scratch_init(&w->in, c);
    w->want = xcalloc((size_t)c->n_layer, sizeof(unsigned));
    return w;
}

void edge_scratch_free(EdgeScratch *w) {
    if (!w) return;
    scratch_release(w);
    free(w->k_prefix), free(w->v_prefix), free(w->base_of), free(w->delta_of), free(w->item), free(w->metric);
    free(w->x);
    input_scratch_free(&w->in);
    metric_work_free(&w->work);
    view_set_free(&w->views);
    free(w->want), free(w->runs), free(w->views_of), free(w->wants);
    free(w);
}

void edge_upstream_row(const Model *m, const EdgeEnd *u, const RunCache *run, int t, double *out) {
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, qd = cfg_q_dim(c), dh = c->d_head;
    if (!run) {
        for (int i = 0; i < d; i++) out[i] = 0.0;
        return;
    }
    if (u->kind == UP_EMBED) {
        const float *x = run->layer[0].resid_pre + (size_t)t * d;
        for (int i = 0; i < d; i++) out[i] = x[i];
    } else if (u->kind == UP_MLP) {
        const float *x = run->layer[u->layer].mlp_out + (size_t)t * d;
        for (int i = 0; i < d; i++) out[i] = x[i];
    } else { /* the head's columns of W_O ([d, q_dim]) times its slice of z; no output bias */
        const float *z = run->layer[u->layer].z + (size_t)t * qd + (size_t)u->index * dh;
        MatrixView wo = model_view(m, PARAM_WO, u->layer);
        for (int i = 0; i < d; i++) {
            double s = 0.0;
            for (int j = 0; j < dh; j++) s += (double)view_value(wo, i, u->index * dh + j) * z[j];
            out[i] = s;
        }
    }
}

int edge_upstream_delta(const Model *m, const EdgeEnd *u, const RunCache *base, const RunCache *source, int lo, int hi,
                        double *delta) {
    int d = m->cfg.d_model, changed = 0;
    double *b = alloc_doubles((size_t)d);
    for (int t = lo; t <= hi; t++) {
        double *row = delta + (size_t)t * d;
        edge_upstream_row(m, u, source, t, row);
        edge_upstream_row(m, u, base, t, b);
        for (int i = 0; i < d; i++) {
            row[i] -= b[i];
            changed |= row[i] != 0.0;
        }
    }
    free(b);
    return changed;
}

void input_scratch_init(InputScratch *s, const ModelConfig *c) {
    int proj = cfg_q_dim(c) > c->d_model ? cfg_q_dim(c) : c->d_model;
    s->normed = alloc_floats((size_t)c->d_model);
    s->mean = alloc_floats(1);
    s->rstd = alloc_floats(1);
    s->proj = alloc_floats((size_t)proj);
    s->pre = alloc_floats((size_t)c->d_mlp);
    s->up = alloc_floats((size_t)c->d_mlp);
    s->hidden = alloc_floats((size_t)c->d_mlp);
}

void input_scratch_free(InputScratch *s) {
    free(s->normed), free(s->mean), free(s->rstd), free(s->proj), free(s->pre), free(s->up), free(s->hidden);
    memset(s, 0, sizeof *s);
}

void input_row_forward(const Model *m, const EdgeEnd *v, const float *x, float *out, InputScratch *s) {
    const ModelConfig *c = &m->cfg;
    int d = c->d_model;
    size_t L = (size_t)v->layer;
    if (v->kind != DOWN_MLP_IN) { /* ln1, then the full projection, of which v keeps its head's slice */
        int qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dh = c->d_head;
        int is_q = v->kind == DOWN_Q, width = is_q ? qd : kvd;
        WeightRef packed = model_packed(m, is_q ? PACKED_WQ : v->kind == DOWN_K ? PACKED_WK : PACKED_WV, v->layer);
        const float *bias = is_q ? m->w.bq : v->kind == DOWN_K ? m->w.bk : m->w.bv;
        norm_forward(c->norm, s->normed, c->norm == NORM_LAYER ? s->mean : NULL, s->rstd, x, m->w.ln1_w + L * d,
                     m->w.ln1_b ? m->w.ln1_b + L * d : NULL, 1, d, c->norm_eps);
        size_t col0 = (size_t)v->index * dh;
        if (dh % PANEL == 0) { /* the head's columns are whole panels: its slice alone, the same fma chains */
            matmul_forward_ref(out + col0, s->normed, weight_at(packed, col0 * d), bias ? bias + L * width + col0 : NULL, 1, d, dh);
            return;
        }
        matmul_forward_ref(s->proj, s->normed, packed, bias ? bias + L * width : NULL, 1, d, width);
        memcpy(out + col0, s->proj + col0, sizeof(float) * dh);
        return;
    }
    int dm = c->d_mlp;
    norm_forward(c->norm, s->normed, c->norm == NORM_LAYER ? s->mean : NULL, s->rstd, x, m->w.ln2_w + L * d,
                 m->w.ln2_b ? m->w.ln2_b + L * d : NULL, 1, d, c->norm_eps);
    const float *b_in = m->w.b_in ? m->w.b_in + L * dm : NULL;
    if (c->gated_mlp) { /* as block_forward: silu(gate) * up */
        matmul_forward_ref(s->pre, s->normed, model_packed(m, PACKED_W_GATE, v->layer), NULL, 1, d, dm);
        matmul_forward_ref(s->up, s->normed, model_packed(m, PACKED_W_IN, v->layer), b_in, 1, d, dm);
        swiglu_forward(s->hidden, s->pre, s->up, dm);
    } else {
        matmul_forward_ref(s->pre, s->normed, model_packed(m, PACKED_W_IN, v->layer), b_in, 1, d, dm);
        act_forward(c->act, s->hidden, s->pre, dm);
    }
    matmul_forward_ref(out, s->hidden, model_packed(m, PACKED_W_OUT, v->layer), m->w.b_out ? m->w.b_out + L * d : NULL, 1,
                   dm, d);
}

/* The hook of a batch of patches of one input v on rows lo..hi: sequence b adds delta_of[b]. */
typedef struct {
    EdgeScratch *w;
    const EdgeEnd *v;
    int lo, hi;
    const double *const *delta_of;
} EdgeHook;

/* w->x = the stream row plus delta row t, in float as the model computes. */
static void patched_row(EdgeScratch *w, const float *stream, const double *delta, int t) {
    int d = w->m->cfg.d_model;
    const double *dl = delta + (size_t)t * d;
    for (int i = 0; i < d; i++) w->x[i] = (float)((double)stream[i] + dl[i]);
}

/* Absolute row t of sequence b in a block's buffers: kv rows [B, R] from r0, q rows [B, Rq] from
 * block_q_pos0 (-1 when the q side does not compute that row: it cannot reach the metric). */
static long kv_row(const BlockRun *run, int b, int t) { return (long)b * run->R + (t - run->r0); }
static long q_row(const BlockRun *run, int b, int t) {
    int q0 = block_q_pos0(run);
    return t < q0 ? -1 : (long)b * block_q_rows(run) + (t - q0);
}

static void edge_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const EdgeHook *h = ctx;
    EdgeScratch *w = h->w;
    const Model *m = w->m;
    const ModelConfig *c = &m->cfg;
    if (layer != h->v->layer) return;
    int d = c->d_model;
    if (stage == ST_QKV && h->v->kind != DOWN_MLP_IN) {
        int is_q = h->v->kind == DOWN_Q, width = is_q ? cfg_q_dim(c) : cfg_kv_dim(c);
        float *dst = is_q ? a->q : h->v->kind == DOWN_K ? a->k : a->v;
        for (int b = 0; b < run->B; b++)
            for (int t = h->lo; t <= h->hi; t++) {
                long at = is_q ? q_row(run, b, t) : kv_row(run, b, t);
                if (at < 0) continue;
                patched_row(w, a->resid_pre + kv_row(run, b, t) * d, h->delta_of[b], t);
                input_row_forward(m, h->v, w->x, dst + at * width, &w->in);
            }
    } else if (stage == ST_MLP_OUT && h->v->kind == DOWN_MLP_IN) {
        for (int b = 0; b < run->B; b++)
            for (int t = h->lo; t <= h->hi; t++) {
                long at = q_row(run, b, t);
                if (at < 0) continue;
                /* sequential blocks: the MLP reads resid_mid; the parallel residual: the block input */
                const float *stream = c->parallel_residual ? a->resid_pre + kv_row(run, b, t) * d : a->resid_mid + at * d;
                patched_row(w, stream, h->delta_of[b], t);
                input_row_forward(m, h->v, w->x, a->mlp_out + at * d, &w->in);
            }
    }
}

/* Naive: the base run of sample s from v's layer on, every row, one patch (w->delta_of[0]). */
static void naive_metrics(EdgeScratch *w, const PromptRuns *r, int s, EdgeHook *hook, double *out) {
    const Model *m = w->m;
    int T = r->T, d = m->cfg.d_model, L = m->cfg.n_layer, from = hook->v->layer;
    BlockRun run = {.B = 1, .R = T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    memcpy(w->layer.resid_pre, r->base[s]->layer[from].resid_pre, sizeof(float) * (size_t)T * d);
    for (int l = from; l < L; l++) {
        if (l > from) memcpy(w->layer.resid_pre, w->layer.resid_post, sizeof(float) * (size_t)T * d);
        block_forward(m, l, &w->layer, &run, edge_hook, hook);
    }
    metric_rows(m, &r->spec, w->layer.resid_post + (size_t)(T - 1) * d, 1, out, &w->work);
}

/* Fast: B patches of one input through one suffix from v's layer and row hook->lo, bases in
 * w->base_of; metrics into w->metric [B, M]. */
static void fast_metrics(EdgeScratch *w, const PromptRuns *r, int B, EdgeHook *hook) {
    const Model *m = w->m;
    int T = r->T, d = m->cfg.d_model, L = m->cfg.n_layer, from = hook->v->layer, r0 = hook->lo, R = T - r0;
    BlockRun run = {.B = B, .R = R, .r0 = r0, .from_stage = ST_RESID_PRE, .k_prefix = w->k_prefix, .v_prefix = w->v_prefix};
    for (int b = 0; b < B; b++)
        memcpy(w->acts.resid_pre + (size_t)b * R * d, w->base_of[b]->layer[from].resid_pre + (size_t)r0 * d,
               sizeof(float) * (size_t)R * d);
    for (int l = from; l < L; l++) {
        if (l > from) memcpy(w->acts.resid_pre, w->acts.resid_post, sizeof(float) * (size_t)B * R * d);
        run.last_only = l == L - 1;
        for (int b = 0; b < B; b++) { /* keys and values of the rows before r0: the base run's */
            w->k_prefix[b] = w->base_of[b]->layer[l].k_rot;
            w->v_prefix[b] = w->base_of[b]->layer[l].v;
        }
        block_forward(m, l, &w->acts, &run, edge_hook, hook);
    }
    /* The last layer ran on the last row alone: resid_post is [B, 1, d]. */
    metric_rows(m, &r->spec, w->acts.resid_post, B, w->metric, &w->work);
}

/* The logits read the final residual row alone: patched, it is the metric's input directly. */
static void logits_metrics(EdgeScratch *w, const PromptRuns *r, int s, const double *delta, double *out) {
    const Model *m = w->m;
    int T = r->T, d = m->cfg.d_model, L = m->cfg.n_layer;
    patched_row(w, r->base[s]->layer[L - 1].resid_post + (size_t)(T - 1) * d, delta, T - 1);
    metric_rows(m, &r->spec, w->x, 1, out, &w->work);
}

/* The views of r's base and source runs with the upstream outputs edges[0..n) read:
 * base_view[s] = views_of[s], source_view[s] = views_of[S + s]. */
static void set_views(EdgeScratch *w, const PromptRuns *r, const Edge *edges, int n) {
    int S = r->n_samples, L = w->m->cfg.n_layer;
    if (S > w->cap_samples) {
        w->runs = xrealloc(w->runs, sizeof(RunCache *) * 2 * (size_t)S);
        w->views_of = xrealloc(w->views_of, sizeof(RunCache *) * 2 * (size_t)S);
        w->wants = xrealloc(w->wants, sizeof(unsigned *) * 2 * (size_t)S);
        w->cap_samples = S;
    }
    memset(w->want, 0, sizeof(unsigned) * (size_t)L);
    for (int k = 0; k < n; k++) {
        const EdgeEnd *u = &edges[k].up;
        if (u->kind == UP_MLP) w->want[u->layer] |= SITE_BIT(SITE_MLP_OUT);
        else if (u->kind != UP_EMBED) w->want[u->layer] |= SITE_BIT(SITE_Z);
    }
    for (int s = 0; s < S; s++) {
        w->runs[s] = r->base[s], w->runs[S + s] = r->source[s];
        w->wants[s] = w->wants[S + s] = w->want;
    }
    view_set_update(&w->views, w->m, w->runs, w->wants, 2 * S, w->views_of, w->layer_block);
}

void edge_effects(EdgeScratch *w, const PromptRuns *r, const Edge *edges, int n, const int *positions, int n_positions,
                  float *out, int naive) {
    const Model *m = w->m;
    int S = r->n_samples, M = r->n_metrics, T = r->T, d = m->cfg.d_model, total = n * S;
    if (w->max_T < T) { /* sized for the plan's longest prompt; a shorter one uses each buffer's first rows */
        scratch_release(w);
        scratch_alloc(w, T);
    }
    size_t stride = (size_t)w->max_T * d; /* one delta per batch element */
    set_views(w, r, edges, n);
    const RunCache **base = w->views_of, **source = w->views_of + S;
    double *sum = alloc_doubles((size_t)n * M);
    for (int j = 0; j < n_positions; j++) {
        int pos = positions[j];
        if (pos >= T) {
            column_not_computed(out, n, n_positions, j, M);
            continue;
        }
        memset(sum, 0, sizeof(double) * (size_t)n * M);
        /* Item i is edge i / S with noise sample i % S. An edge that carries the same values in
         * both runs on the column's rows, or a logits edge at a row the metric never reads,
         * patches nothing: its effect is exactly 0 and it is left out. The rest go max_batch at a
         * time through the fast path, or one by one through the naive one. */
        for (int i = 0; i < total;) {
            int B = 0;
            const EdgeEnd *v = &edges[i / S].down; /* the block's edges share it (plan.c) */
            int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? T - 1 : pos;
            if (v->kind == DOWN_LOGITS) lo = hi = T - 1;
            for (; i < total && B < w->max_batch; i++) {
                int k = i / S, s = i % S;
                const Edge *e = &edges[k];
                int reaches = e->down.kind != DOWN_LOGITS || pos < 0 || pos == T - 1;
                double *delta = w->deltas + (size_t)B * stride;
                if (!reaches || !edge_upstream_delta(m, &e->up, base[s], source[s], lo, hi, delta)) continue;
                w->base_of[B] = base[s];
                w->delta_of[B] = delta;
                w->item[B++] = i;
            }
            if (B == 0) break;
            EdgeHook hook = {w, v, lo, hi, w->delta_of};
            if (v->kind != DOWN_LOGITS && !naive) {
                fast_metrics(w, r, B, &hook);
            } else {
                for (int b = 0; b < B; b++) { /* one at a time, each its own sequence 0 */
                    EdgeHook one = {w, v, lo, hi, &w->delta_of[b]};
                    int s = w->item[b] % S;
                    if (v->kind == DOWN_LOGITS) logits_metrics(w, r, s, w->delta_of[b], w->metric + (size_t)b * M);
                    else naive_metrics(w, r, s, &one, w->metric + (size_t)b * M);
                }
            }
            for (int b = 0; b < B; b++)
                for (int mi = 0; mi < M; mi++)
                    sum[(size_t)(w->item[b] / S) * M + mi] += w->metric[(size_t)b * M + mi] - r->base_metric[(size_t)(w->item[b] % S) * M + mi];
        }
        for (int k = 0; k < n; k++)
            for (int mi = 0; mi < M; mi++) out[((size_t)k * n_positions + j) * M + mi] = (float)(sum[(size_t)k * M + mi] / S);
    }
    free(sum);
}
