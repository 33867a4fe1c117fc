/* Exact edge patching (docs/edges.md), the straightforward way: for each edge u -> v, position
 * column and noise sample, the base run is recomputed from v's layer with a hook that, at v's
 * read point, rebuilds v's input from x_v^B[t] - u^B[t] + u^S[t] and replaces v's projection
 * only: one query head, one key/value head's keys or values, the MLP's output, or the final row
 * the metric reads. Everything after follows as usual. Layers below v's are the base run's (the
 * kernels give a row the same bits whatever else is computed, so starting there changes no bit
 * against a full forward). Slow but plainly correct; a batched suffix can come later. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"

struct EdgeScratch {
    const Model *m;
    RunCache run;      /* the patched run (layers from v's on) */
    double *delta;     /* [max_T, d]: u^S - u^B */
    float *x, *normed, *mean, *rstd; /* one row: v's input, its norm, the norm's statistics */
    float *proj, *pre, *up, *hidden; /* one row: a full q/k/v projection, the MLP's layers */
    MetricWork work;
};

EdgeScratch *edge_scratch_new(const Model *m, int max_T) {
    const ModelConfig *c = &m->cfg;
    EdgeScratch *w = xcalloc(1, sizeof *w);
    w->m = m;
    run_cache_init(&w->run, c, max_T, 0);
    w->delta = alloc_doubles((size_t)max_T * c->d_model);
    w->x = alloc_floats((size_t)c->d_model);
    w->normed = alloc_floats((size_t)c->d_model);
    w->mean = alloc_floats(1);
    w->rstd = alloc_floats(1);
    int proj = cfg_q_dim(c) > c->d_model ? cfg_q_dim(c) : c->d_model;
    w->proj = alloc_floats((size_t)proj);
    w->pre = alloc_floats((size_t)c->d_mlp);
    w->up = alloc_floats((size_t)c->d_mlp);
    w->hidden = alloc_floats((size_t)c->d_mlp);
    return w;
}

void edge_scratch_free(EdgeScratch *w) {
    if (!w) return;
    run_cache_free(&w->run);
    free(w->delta), free(w->x), free(w->normed), free(w->mean), free(w->rstd);
    free(w->proj), free(w->pre), free(w->up), free(w->hidden);
    metric_work_free(&w->work);
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
        const float *wo = m->w.wo + (size_t)u->layer * d * qd + (size_t)u->index * dh;
        for (int i = 0; i < d; i++) {
            double s = 0.0;
            for (int j = 0; j < dh; j++) s += (double)wo[(size_t)i * qd + j] * z[j];
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

/* The hook of one edge patch: which input, which rows, and u^S - u^B on them. */
typedef struct {
    EdgeScratch *w;
    const EdgeEnd *v;
    int lo, hi;
} EdgeHook;

/* w->x = the stream row plus delta row t, in float as the model computes. */
static void patched_row(EdgeScratch *w, const float *stream, int t) {
    int d = w->m->cfg.d_model;
    const double *dl = w->delta + (size_t)t * d;
    for (int i = 0; i < d; i++) w->x[i] = (float)((double)stream[i] + dl[i]);
}

static void edge_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const EdgeHook *h = ctx;
    EdgeScratch *w = h->w;
    const Model *m = w->m;
    const ModelConfig *c = &m->cfg;
    (void)run;
    if (layer != h->v->layer) return;
    int d = c->d_model;
    size_t L = (size_t)layer;
    if (stage == ST_QKV && h->v->kind != DOWN_MLP_IN) {
        int qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dh = c->d_head;
        int is_q = h->v->kind == DOWN_Q, width = is_q ? qd : kvd;
        const float *packed = is_q ? m->packed.wq + L * packed_floats(qd, d)
                              : h->v->kind == DOWN_K ? m->packed.wk + L * packed_floats(kvd, d)
                                                     : m->packed.wv + L * packed_floats(kvd, d);
        const float *bias = is_q ? m->w.bq : h->v->kind == DOWN_K ? m->w.bk : m->w.bv;
        float *dst = is_q ? a->q : h->v->kind == DOWN_K ? a->k : a->v;
        for (int t = h->lo; t <= h->hi; t++) {
            patched_row(w, a->resid_pre + (size_t)t * d, t);
            norm_forward(c->norm, w->normed, c->norm == NORM_LAYER ? w->mean : NULL, w->rstd, w->x,
                         m->w.ln1_w + L * d, m->w.ln1_b ? m->w.ln1_b + L * d : NULL, 1, d, c->norm_eps);
            matmul_forward(w->proj, w->normed, packed, bias ? bias + L * width : NULL, 1, d, width);
            memcpy(dst + (size_t)t * width + (size_t)h->v->index * dh, w->proj + (size_t)h->v->index * dh, sizeof(float) * dh);
        }
    } else if (stage == ST_MLP_OUT && h->v->kind == DOWN_MLP_IN) {
        int dm = c->d_mlp;
        /* sequential blocks: the MLP reads resid_mid; the parallel residual: the block input */
        const float *stream = c->parallel_residual ? a->resid_pre : a->resid_mid;
        for (int t = h->lo; t <= h->hi; t++) {
            patched_row(w, stream + (size_t)t * d, t);
            norm_forward(c->norm, w->normed, c->norm == NORM_LAYER ? w->mean : NULL, w->rstd, w->x,
                         m->w.ln2_w + L * d, m->w.ln2_b ? m->w.ln2_b + L * d : NULL, 1, d, c->norm_eps);
            const float *b_in = m->w.b_in ? m->w.b_in + L * dm : NULL;
            if (c->gated_mlp) { /* as block_forward: silu(gate) * up */
                matmul_forward(w->pre, w->normed, m->packed.w_gate + L * packed_floats(dm, d), NULL, 1, d, dm);
                matmul_forward(w->up, w->normed, m->packed.w_in + L * packed_floats(dm, d), b_in, 1, d, dm);
                swiglu_forward(w->hidden, w->pre, w->up, dm);
            } else {
                matmul_forward(w->pre, w->normed, m->packed.w_in + L * packed_floats(dm, d), b_in, 1, d, dm);
                act_forward(c->act, w->hidden, w->pre, dm);
            }
            matmul_forward(a->mlp_out + (size_t)t * d, w->hidden, m->packed.w_out + L * packed_floats(d, dm),
                           m->w.b_out ? m->w.b_out + L * d : NULL, 1, dm, d);
        }
    }
}

/* The base run of sample s from layer `from` on, with the hook, into w->run; metrics into out[M]. */
static void patched_metrics(EdgeScratch *w, const PromptRuns *r, int s, int from, EdgeHook *hook, double *out) {
    const Model *m = w->m;
    int T = r->T, d = m->cfg.d_model, L = m->cfg.n_layer;
    BlockRun run = {.B = 1, .R = T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    memcpy(w->run.layer[from].resid_pre, r->base[s]->layer[from].resid_pre, sizeof(float) * (size_t)T * d);
    for (int l = from; l < L; l++) {
        if (l > from) memcpy(w->run.layer[l].resid_pre, w->run.layer[l - 1].resid_post, sizeof(float) * (size_t)T * d);
        block_forward(m, l, &w->run.layer[l], &run, edge_hook, hook);
    }
    metric_rows(m, &r->spec, w->run.layer[L - 1].resid_post + (size_t)(T - 1) * d, 1, out, &w->work);
}

/* The logits read the final residual row alone: patched, it is the metric's input directly. */
static void logits_metrics(EdgeScratch *w, const PromptRuns *r, int s, double *out) {
    const Model *m = w->m;
    int T = r->T, d = m->cfg.d_model, L = m->cfg.n_layer;
    patched_row(w, r->base[s]->layer[L - 1].resid_post + (size_t)(T - 1) * d, T - 1);
    metric_rows(m, &r->spec, w->x, 1, out, &w->work);
}

void edge_effects(EdgeScratch *w, const PromptRuns *r, const Edge *edges, int n, const int *positions, int n_positions,
                  float *out) {
    int S = r->n_samples, M = r->n_metrics, T = r->T;
    double sum[N_METRICS], values[N_METRICS];
    if (w->run.T < T) { /* sized for the plan's longest prompt; a shorter one uses each buffer's first rows */
        run_cache_free(&w->run);
        run_cache_init(&w->run, &w->m->cfg, T, 0);
        free(w->delta);
        w->delta = alloc_doubles((size_t)T * w->m->cfg.d_model);
    }
    for (int k = 0; k < n; k++) {
        const Edge *e = &edges[k];
        for (int j = 0; j < n_positions; j++) {
            float *cell = out + ((size_t)k * n_positions + j) * M;
            int pos = positions[j];
            if (pos >= T) {
                for (int i = 0; i < M; i++) cell[i] = NAN;
                continue;
            }
            int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? T - 1 : pos;
            if (e->down.kind == DOWN_LOGITS) lo = hi = T - 1; /* the metric reads the last row only */
            for (int i = 0; i < M; i++) sum[i] = 0.0;
            for (int s = 0; s < S; s++) {
                int reaches = e->down.kind != DOWN_LOGITS || pos < 0 || pos == T - 1;
                /* an edge that carries the same values in both runs, or a row the metric never
                 * reads, patches nothing: its effect is exactly 0 */
                if (!reaches || !edge_upstream_delta(w->m, &e->up, r->base[s], r->source[s], lo, hi, w->delta)) continue;
                EdgeHook hook = {w, &e->down, lo, hi};
                if (e->down.kind == DOWN_LOGITS) logits_metrics(w, r, s, values);
                else patched_metrics(w, r, s, e->down.layer, &hook, values);
                for (int i = 0; i < M; i++) sum[i] += values[i] - r->base_metric[(size_t)s * M + i];
            }
            for (int i = 0; i < M; i++) cell[i] = (float)(sum[i] / S);
        }
    }
}
