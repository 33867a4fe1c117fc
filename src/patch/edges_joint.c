/* A set of edge cells patched at once (docs/edges.md, "Joint patches"): the bound command's
 * subsets. Every edge u -> v of the set carries u's source output instead of u's output in this
 * same run, on the rows of its cells; the edges outside it carry u's current output, which may
 * itself be changed by patched edges further up (the auto-circuit convention, as circuits use).
 * So v's input row t is rebuilt from
 *
 *     x_v[t] + sum over the set's edges u -> v covering row t of (u^S[t] - u[t]),
 *
 * x_v and u of the patched run itself. One full-length pass per noise sample from the lowest
 * layer any patched input reads; below it the run is the base run. A set of one edge is the
 * exact edge patch bit for bit (tests/unit/test_edge_joint.c): u is then u^B, and every row
 * goes through the same kernels as the sweep's. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"

struct EdgeJoint {
    const Model *m;
    int max_T;
    RunCache run;     /* the patched run (layers from the lowest patched one on) */
    float *x;         /* [d]: one patched input row */
    InputScratch in;  /* its input's own computation */
    double *delta, *up; /* [d]: one input row's sum; one upstream row */
    MetricWork work;
    /* The prompt's lean runs with every layer's z and mlp_out recomputed (views.c): the upstream
     * outputs a joint pass reads; kept while the calls are for the same prompt. */
    ViewSet views;
    unsigned *want;                    /* [n_layer] */
    int cap_samples;
    const RunCache **runs, **views_of; /* [2 * samples]: base runs, source runs; their views */
    const unsigned **wants;
};

EdgeJoint *edge_joint_new(const Model *m, int max_T) {
    EdgeJoint *w = xcalloc(1, sizeof *w);
    w->m = m;
    w->max_T = max_T;
    run_cache_init(&w->run, &m->cfg, max_T, 0);
    w->x = alloc_floats((size_t)m->cfg.d_model);
    input_scratch_init(&w->in, &m->cfg);
    w->delta = alloc_doubles((size_t)m->cfg.d_model);
    w->up = alloc_doubles((size_t)m->cfg.d_model);
    w->want = xcalloc((size_t)m->cfg.n_layer, sizeof(unsigned));
    for (int l = 0; l < m->cfg.n_layer; l++) w->want[l] = SITE_BIT(SITE_Z) | SITE_BIT(SITE_MLP_OUT);
    return w;
}

void edge_joint_free(EdgeJoint *w) {
    if (!w) return;
    run_cache_free(&w->run);
    free(w->x);
    input_scratch_free(&w->in);
    free(w->delta), free(w->up);
    metric_work_free(&w->work);
    view_set_free(&w->views);
    free(w->want), free(w->runs), free(w->views_of), free(w->wants);
    free(w);
}

/* w->x = float(stream + delta) over d entries: v's input row as the model computes it. */
static const float *patched_row(EdgeJoint *w, const float *stream, int d) {
    for (int i = 0; i < d; i++) w->x[i] = (float)((double)stream[i] + w->delta[i]);
    return w->x;
}

static int by_edge_then_position(const void *a, const void *b) {
    const EdgeCell *x = a, *y = b;
    return x->edge != y->edge ? (x->edge > y->edge) - (x->edge < y->edge) : (x->pos > y->pos) - (x->pos < y->pos);
}

/* One noise sample's patched pass. cells are sorted by edge (so by downstream input, inputs in
 * layer order: the contract's order), and each input's cells are contiguous. */
typedef struct {
    EdgeJoint *w;
    const PromptRuns *r;
    int sample, from; /* the lowest layer a patched input reads: the run is B's below it */
    const Edge *edges;
    const EdgeCell *cells;
    int n;
} JointPass;

/* u's output on row t in this run: B's below the first recomputed layer (and for embed, which
 * nothing patched reaches), else the patched run's own. */
static void current_row(const JointPass *j, const EdgeEnd *u, int t, double *out) {
    int base = u->kind == UP_EMBED || u->layer < j->from;
    edge_upstream_row(j->w->m, u, base ? j->r->base[j->sample] : &j->w->run, t, out);
}

/* The sum over the input's cells [c0, c1) covering row t of (u^S[t] - u[t]) into w->delta, in
 * edge order (the first term assigned, not added to 0: a lone edge's delta is then bit for bit
 * edge_upstream_delta's). Returns 0 when no cell covers row t. */
static int input_delta(const JointPass *j, int c0, int c1, int t) {
    EdgeJoint *w = j->w;
    int d = w->m->cfg.d_model, any = 0;
    for (int c = c0; c < c1;) {
        int e = j->cells[c].edge, covers = 0;
        for (; c < c1 && j->cells[c].edge == e; c++) covers |= j->cells[c].pos < 0 || j->cells[c].pos == t;
        if (!covers) continue;
        const EdgeEnd *u = &j->edges[e].up;
        edge_upstream_row(w->m, u, j->r->source[j->sample], t, w->up);
        if (!any) memcpy(w->delta, w->up, sizeof(double) * d);
        else
            for (int i = 0; i < d; i++) w->delta[i] += w->up[i];
        current_row(j, u, t, w->up);
        for (int i = 0; i < d; i++) w->delta[i] -= w->up[i];
        any = 1;
    }
    return any;
}

/* The end of the input's cells starting at c0. */
static int input_end(const JointPass *j, int c0) {
    const EdgeEnd *v = &j->edges[j->cells[c0].edge].down;
    int c = c0;
    while (c < j->n && !memcmp(&j->edges[j->cells[c].edge].down, v, sizeof *v)) c++;
    return c;
}

static void edge_joint_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const JointPass *j = ctx;
    const Model *m = j->w->m;
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, T = run->R;
    if (stage != ST_QKV && stage != ST_MLP_OUT) return;
    for (int c0 = 0; c0 < j->n;) {
        int c1 = input_end(j, c0);
        const EdgeEnd *v = &j->edges[j->cells[c0].edge].down;
        int here = v->layer == layer && (stage == ST_QKV) == (v->kind != DOWN_MLP_IN) && v->kind != DOWN_LOGITS;
        for (int t = 0; t < T && here; t++) {
            if (!input_delta(j, c0, c1, t)) continue;
            if (v->kind == DOWN_MLP_IN) { /* sequential blocks read resid_mid; the parallel residual the block input */
                const float *stream = (c->parallel_residual ? a->resid_pre : a->resid_mid) + (size_t)t * d;
                input_row_forward(m, v, patched_row(j->w, stream, d), a->mlp_out + (size_t)t * d, &j->w->in);
            } else {
                int width = v->kind == DOWN_Q ? cfg_q_dim(c) : cfg_kv_dim(c);
                float *dst = v->kind == DOWN_Q ? a->q : v->kind == DOWN_K ? a->k : a->v;
                input_row_forward(m, v, patched_row(j->w, a->resid_pre + (size_t)t * d, d), dst + (size_t)t * width, &j->w->in);
            }
        }
        c0 = c1;
    }
}

/* metric(patched) of one sample into out[M]. */
static void joint_pass(JointPass *j, double *out) {
    EdgeJoint *w = j->w;
    const Model *m = w->m;
    int T = j->r->T, d = m->cfg.d_model, L = m->cfg.n_layer;
    BlockRun run = {.B = 1, .R = T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    if (j->from < L) {
        memcpy(w->run.layer[j->from].resid_pre, j->r->base[j->sample]->layer[j->from].resid_pre, sizeof(float) * (size_t)T * d);
        for (int l = j->from; l < L; l++) {
            if (l > j->from) memcpy(w->run.layer[l].resid_pre, w->run.layer[l - 1].resid_post, sizeof(float) * (size_t)T * d);
            block_forward(m, l, &w->run.layer[l], &run, edge_joint_hook, j);
        }
    }
    const float *last = (j->from < L ? w->run.layer[L - 1].resid_post : j->r->base[j->sample]->layer[L - 1].resid_post) +
                        (size_t)(T - 1) * d;
    /* the logits' edges (last in order) at the row the metric reads */
    int c0 = j->n;
    while (c0 > 0 && j->edges[j->cells[c0 - 1].edge].down.kind == DOWN_LOGITS) c0--;
    if (c0 < j->n && input_delta(j, c0, j->n, T - 1)) {
        last = patched_row(w, last, d);
    }
    metric_rows(m, &j->r->spec, last, 1, out, &w->work);
}

/* viewed: r with its base and source runs replaced by views holding every layer's upstream outputs. */
static void set_views(EdgeJoint *w, const PromptRuns *r, PromptRuns *viewed) {
    int S = r->n_samples;
    if (S > w->cap_samples) {
        w->runs = xrealloc(w->runs, sizeof(RunCache *) * 2 * (size_t)S);
        w->views_of = xrealloc(w->views_of, sizeof(RunCache *) * 2 * (size_t)S);
        w->wants = xrealloc(w->wants, sizeof(unsigned *) * 2 * (size_t)S);
        w->cap_samples = S;
    }
    for (int s = 0; s < S; s++) {
        w->runs[s] = r->base[s], w->runs[S + s] = r->source[s];
        w->wants[s] = w->wants[S + s] = w->want;
    }
    view_set_update(&w->views, w->m, w->runs, w->wants, 2 * S, w->views_of, NULL);
    *viewed = *r;
    viewed->base = w->views_of;
    viewed->source = w->views_of + S;
}

double edge_joint_effect(EdgeJoint *w, const PromptRuns *lean, const Edge *edges, EdgeCell *cells, int n, int metric) {
    const ModelConfig *c = &w->m->cfg;
    PromptRuns viewed;
    set_views(w, lean, &viewed);
    const PromptRuns *r = &viewed;
    if (r->T > w->max_T) { /* sized for the plan's longest prompt; never reached by the bound */
        run_cache_free(&w->run);
        w->max_T = r->T;
        run_cache_init(&w->run, c, w->max_T, 0);
    }
    qsort(cells, (size_t)n, sizeof *cells, by_edge_then_position);
    int from = c->n_layer;
    for (int i = 0; i < n; i++) {
        const EdgeEnd *v = &edges[cells[i].edge].down;
        if (v->kind != DOWN_LOGITS && v->layer < from) from = v->layer;
    }
    double sum = 0.0, values[N_METRICS];
    int M = r->n_metrics;
    for (int s = 0; s < r->n_samples; s++) {
        JointPass j = {w, r, s, from, edges, cells, n};
        joint_pass(&j, values);
        sum += values[metric] - r->base_metric[(size_t)s * M + metric];
    }
    return sum / r->n_samples;
}
