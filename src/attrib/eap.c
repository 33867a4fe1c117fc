/* Edge estimates (docs/edges.md, "Estimates"): EAP, EAP-IG ("inputs") and EAP-IG
 * ("activations"). Each is a sum over the column's rows of (u^S - u^B) . g_v, where g_v is the
 * gradient of the metric with respect to the stream as input v alone reads it, taken at the base
 * run (eap) or averaged over interpolated runs (eap_ig, eap_ig_act).
 *
 * g_v follows from one backward pass of a run: for a query input, the gradient at head h's
 * query through its rows of W_Q and ln1's backward at the block input; for keys and values the
 * same with the key/value head's rows; for an MLP input the gradient at ln2's output (which only
 * the MLP reads) through ln2's backward; for the logits the metric's gradient at the final row.
 *
 * The estimate is linear in g_v, so the mean over m runs is accumulated as the mean of the
 * m estimates: no averaged gradient is ever stored. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"
#include "patchsweep/ops.h"

typedef struct {
    const Model *m;
    const Plan *plan;
    const PromptRuns *r;
    const int *positions;
    RunCache acts, grads;  /* an interpolated run and its gradients */
    double *delta;         /* [T, d]: u^S - u^B */
    float *g, *row;        /* [T, d]: g_v; [d] */
    MetricWork work;
} EapWork;

/* g[T, d] = d metric / d x_v at the run `acts`, from the gradients `grads` of its activations. */
static void input_gradient(EapWork *w, const EdgeEnd *v, const RunCache *acts, const RunCache *grads) {
    const Model *m = w->m;
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, L = c->n_layer, dh = c->d_head, T = w->r->T;
    float *g = w->g, *row = w->row;
    memset(g, 0, sizeof(float) * (size_t)T * d);
    if (v->kind == DOWN_LOGITS) { /* the metric reads the last row alone */
        memcpy(g + (size_t)(T - 1) * d, grads->layer[L - 1].resid_post + (size_t)(T - 1) * d, sizeof(float) * d);
        return;
    }
    size_t l = (size_t)v->layer;
    const LayerActs *a = &acts->layer[l], *da = &grads->layer[l];
    for (int t = 0; t < T; t++) {
        if (v->kind == DOWN_MLP_IN) {
            const float *x = c->parallel_residual ? a->resid_pre : a->resid_mid;
            norm_backward(c->norm, g + (size_t)t * d, NULL, NULL, da->ln2 + (size_t)t * d, x + (size_t)t * d,
                          m->w.ln2_w + l * d, a->ln2_mean ? a->ln2_mean + t : NULL, a->ln2_rstd + t, 1, d);
            continue;
        }
        /* the normed row's gradient through this head's rows of the projection ([out, in]) */
        int width = v->kind == DOWN_Q ? cfg_q_dim(c) : cfg_kv_dim(c);
        const float *dout = (v->kind == DOWN_Q ? da->q : v->kind == DOWN_K ? da->k : da->v) + (size_t)t * width + (size_t)v->index * dh;
        MatrixView wt = model_view(m, v->kind == DOWN_Q ? PARAM_WQ : v->kind == DOWN_K ? PARAM_WK : PARAM_WV, (int)l);
        for (int i = 0; i < d; i++) {
            double s = 0.0;
            for (int j = 0; j < dh; j++) s += (double)dout[j] * view_value(wt, v->index * dh + j, i);
            row[i] = (float)s;
        }
        norm_backward(c->norm, g + (size_t)t * d, NULL, NULL, row, a->resid_pre + (size_t)t * d, m->w.ln1_w + l * d,
                      a->ln1_mean ? a->ln1_mean + t : NULL, a->ln1_rstd + t, 1, d);
    }
}

/* The component EAP-IG ("activations") interpolates for edges out of u: 0 = embed, 1 + 2l = the
 * attention layer l (all its heads), 2 + 2l = the MLP of layer l. */
static int component_of(const EdgeEnd *u) {
    return u->kind == UP_EMBED ? 0 : u->kind == UP_HEAD ? 1 + 2 * u->layer : 2 + 2 * u->layer;
}

static int same_input(const EdgeEnd *a, const EdgeEnd *b) {
    return a->kind == b->kind && a->layer == b->layer && a->index == b->index;
}

/* sum[(k*S + j)*M + metric] += weight * sum over column j's rows of (u^S - u^B) . g_v for every
 * edge k (only those out of `component` when it is >= 0), g_v at the run acts with gradients grads. */
static void add_estimates(EapWork *w, int s, int metric, const RunCache *acts, const RunCache *grads, int component,
                          double weight, double *sum) {
    const Plan *plan = w->plan;
    const PromptRuns *r = w->r;
    int S = plan->n_positions, M = r->n_metrics, T = r->T, d = w->m->cfg.d_model;
    const EdgeEnd *have = NULL;
    for (int k = 0; k < plan->n_edges; k++) {
        const Edge *e = &plan->edges[k];
        if (component >= 0 && component_of(&e->up) != component) continue;
        if (!have || !same_input(have, &e->down)) {
            input_gradient(w, &e->down, acts, grads);
            have = &e->down;
        }
        edge_upstream_delta(w->m, &e->up, r->base[s], r->source[s], 0, T - 1, w->delta);
        for (int j = 0; j < S; j++) {
            int pos = w->positions[j];
            if (pos >= T) continue;
            int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? T - 1 : pos;
            double dot = 0.0;
            for (int t = lo; t <= hi; t++)
                for (int x = 0; x < d; x++) dot += w->delta[(size_t)t * d + x] * w->g[(size_t)t * d + x];
            sum[((size_t)k * S + j) * M + metric] += weight * dot;
        }
    }
}

/* The gradients of metric `metric` at the run acts (of the prompt's base tokens) into w->grads. */
static void backward(EapWork *w, const RunCache *acts, int metric) {
    const Model *m = w->m;
    int L = m->cfg.n_layer, d = m->cfg.d_model, T = w->r->T;
    LayerActs *top = &w->grads.layer[L - 1];
    memset(top->resid_post, 0, sizeof(float) * (size_t)T * d); /* the metric reads the last row only */
    metric_grad(m, &w->r->spec, metric, acts->layer[L - 1].resid_post + (size_t)(T - 1) * d, top->resid_post + (size_t)(T - 1) * d,
                &w->work);
    run_backward(m, w->r->base_tokens, acts, &w->grads, NULL, L - 1, -1);
}

/* One component's output set to u^S + alpha (u^B - u^S) on every row, in B's run. */
typedef struct {
    const ModelConfig *c;
    const RunCache *base, *source; /* source NULL: zeros */
    int component, T;
    double alpha;
} Interpolation;

static void interpolate(float *x, const float *b, const float *s, size_t n, double alpha) {
    for (size_t i = 0; i < n; i++) {
        double src = s ? s[i] : 0.0;
        x[i] = (float)(src + alpha * ((double)b[i] - src));
    }
}

static void interpolation_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const Interpolation *h = ctx;
    (void)run;
    size_t T = (size_t)h->T, d = (size_t)h->c->d_model;
    const RunCache *S = h->source;
    if (h->component == 0 && stage == ST_RESID_PRE && layer == 0)
        interpolate(a->resid_pre, h->base->layer[0].resid_pre, S ? S->layer[0].resid_pre : NULL, T * d, h->alpha);
    else if (h->component == 1 + 2 * layer && stage == ST_Z) /* head outputs are linear in z (no bias) */
        interpolate(a->z, h->base->layer[layer].z, S ? S->layer[layer].z : NULL, T * (size_t)cfg_q_dim(h->c), h->alpha);
    else if (h->component == 2 + 2 * layer && stage == ST_MLP_OUT)
        interpolate(a->mlp_out, h->base->layer[layer].mlp_out, S ? S->layer[layer].mlp_out : NULL, T * d, h->alpha);
}

/* B's run of sample s with the component interpolated, into w->acts. */
static void interpolated_run(EapWork *w, int s, int component, double alpha) {
    const Model *m = w->m;
    int T = w->r->T, d = m->cfg.d_model;
    Interpolation h = {&m->cfg, w->r->base[s], w->r->source[s], component, T, alpha};
    BlockRun run = {.B = 1, .R = T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    memcpy(w->acts.layer[0].resid_pre, w->r->base[s]->layer[0].resid_pre, sizeof(float) * (size_t)T * d);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        if (l > 0) memcpy(w->acts.layer[l].resid_pre, w->acts.layer[l - 1].resid_post, sizeof(float) * (size_t)T * d);
        block_forward(m, l, &w->acts.layer[l], &run, interpolation_hook, &h);
    }
}


static void estimates_of(const Model *m, const Job *job, const Plan *plan, const PromptRuns *r,
                         float *out[N_EDGE_ESTIMATES]) {
    const ModelConfig *c = &m->cfg;
    int E = plan->n_edges, S = plan->n_positions, M = r->n_metrics, T = r->T, d = c->d_model, steps = job->ig_steps;
    EapWork w = {.m = m, .plan = plan, .r = r, .positions = plan_prompt_positions(plan, r->prompt)};
    run_cache_init(&w.acts, c, T, 0);
    run_cache_init(&w.grads, c, T, 0);
    w.delta = alloc_doubles((size_t)T * d);
    w.g = alloc_floats((size_t)T * d);
    w.row = alloc_floats((size_t)d);
    double *sum[N_EDGE_ESTIMATES];
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) sum[e] = out[e] ? alloc_doubles((size_t)E * S * M) : NULL;
    int components = 1 + 2 * c->n_layer;
    for (int s = 0; s < r->n_samples; s++)
        for (int i = 0; i < M; i++) {
            if (sum[EST_EAP]) {
                backward(&w, r->base[s], i);
                add_estimates(&w, s, i, r->base[s], &w.grads, -1, 1.0, sum[EST_EAP]);
            }
            /* k = 1..m, the paper-era code's steps: the base point included, the source point not */
            for (int comp = 0; comp < components && (sum[EST_EAP_IG] || sum[EST_EAP_IG_ACT]); comp++) {
                if (comp > 0 && !sum[EST_EAP_IG_ACT]) break; /* "inputs" interpolates the embeddings alone */
                for (int k = 1; k <= steps; k++) {
                    interpolated_run(&w, s, comp, (double)k / steps);
                    backward(&w, &w.acts, i);
                    if (comp == 0 && sum[EST_EAP_IG]) add_estimates(&w, s, i, &w.acts, &w.grads, -1, 1.0 / steps, sum[EST_EAP_IG]);
                    if (sum[EST_EAP_IG_ACT]) add_estimates(&w, s, i, &w.acts, &w.grads, comp, 1.0 / steps, sum[EST_EAP_IG_ACT]);
                }
            }
        }
    for (int e = 0; e < N_EDGE_ESTIMATES; e++) {
        if (!sum[e]) continue;
        for (int k = 0; k < E; k++)
            for (int j = 0; j < S; j++)
                for (int i = 0; i < M; i++)
                    out[e][((size_t)k * S + j) * M + i] =
                        w.positions[j] >= T ? NAN : (float)(sum[e][((size_t)k * S + j) * M + i] / r->n_samples);
        free(sum[e]);
    }
    metric_work_free(&w.work);
    run_cache_free(&w.acts);
    run_cache_free(&w.grads);
    free(w.delta), free(w.g), free(w.row);
}

/* The estimators read every activation of every layer: the unit expands the prompt's lean runs
 * for its own duration (plan counts it). */
void edge_estimates(const Model *m, const Job *job, const Plan *plan, const PromptRuns *r, float *out[N_EDGE_ESTIMATES]) {
    PromptRuns full;
    prompt_runs_expand(r, m, &full);
    estimates_of(m, job, plan, &full, out);
    prompt_runs_expanded_free(&full);
}
